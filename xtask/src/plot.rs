//! The flow-matching vs score-matching figure of `cargo xtask reproduce`.

use anyhow::Result;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// The fm CLI's embedded DejaVu Sans: plots need no system fonts.
static FONT: &[u8] = include_bytes!("../../crates/fm-cli/assets/DejaVuSans.ttf");

const COLORS: [RGBColor; 2] = [RGBColor(31, 119, 180), RGBColor(214, 39, 40)];

/// Two rows (one per target), two columns: W2 against steps, and the training loss (seed 0 of
/// the longest run) against steps, each objective in its own colour.
pub(crate) fn fm_vs_score(
    out: &Path,
    budgets: &[usize],
    targets: &[(&str, &str)],
    objectives: &[&str],
    w2: &BTreeMap<(usize, usize, usize), Vec<f64>>,
    curves: &BTreeMap<(usize, usize), Vec<(usize, f64)>>,
) -> Result<()> {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let tmp = out.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (1200, 450 * targets.len() as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let rows = root.split_evenly((targets.len(), 2));
        let xmax = *budgets.last().unwrap_or(&1) as f64;
        for (ti, (name, _)) in targets.iter().enumerate() {
            // W2 against steps (mean over seeds).
            let mean = |oi: usize, b: usize| {
                let v = &w2[&(ti, oi, b)];
                v.iter().sum::<f64>() / v.len() as f64
            };
            let ymax = (0..objectives.len())
                .flat_map(|oi| budgets.iter().map(move |&b| (oi, b)))
                .map(|(oi, b)| mean(oi, b))
                .fold(0.0, f64::max)
                * 1.1;
            let mut chart = ChartBuilder::on(&rows[2 * ti])
                .caption(format!("{name}: W2 against steps"), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(0.0..xmax * 1.05, 0.0..ymax.max(1e-3))?;
            chart
                .configure_mesh()
                .x_desc("training steps")
                .y_desc("W2")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            for (oi, obj) in objectives.iter().enumerate() {
                let pts: Vec<(f64, f64)> =
                    budgets.iter().map(|&b| (b as f64, mean(oi, b))).collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), COLORS[oi].stroke_width(2)))?
                    .label(format!("{obj} matching"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], COLORS[oi].stroke_width(2))
                    });
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, COLORS[oi].filled())))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;

            // Loss against steps, log scale (the two objectives regress different targets, so
            // compare shapes, not levels).
            let all: Vec<f64> = (0..objectives.len())
                .filter_map(|oi| curves.get(&(ti, oi)))
                .flatten()
                .map(|p| p.1)
                .filter(|l| l.is_finite() && *l > 0.0)
                .collect();
            let lo = all.iter().copied().fold(f64::INFINITY, f64::min).min(1.0) * 0.8;
            let hi = all.iter().copied().fold(0.0, f64::max).max(lo * 10.0) * 1.2;
            let mut chart = ChartBuilder::on(&rows[2 * ti + 1])
                .caption(format!("{name}: training loss"), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(35)
                .y_label_area_size(65)
                .build_cartesian_2d(0.0..xmax * 1.05, (lo..hi).log_scale())?;
            chart
                .configure_mesh()
                .x_desc("training steps")
                .y_desc("loss (log scale)")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.1e}"))
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            for (oi, obj) in objectives.iter().enumerate() {
                if let Some(c) = curves.get(&(ti, oi)) {
                    chart
                        .draw_series(LineSeries::new(
                            c.iter().filter(|p| p.1 > 0.0).map(|&(s, l)| (s as f64, l)),
                            COLORS[oi].stroke_width(1),
                        ))?
                        .label(format!("{obj} matching"))
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], COLORS[oi].stroke_width(2))
                        });
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
    }
    std::fs::rename(&tmp, out)?;
    Ok(())
}
