//! `fm plot density`: the model's log-density on a regular 2-D grid as a heat map, for every
//! model kind — a normalizing flow's own `log_density` (coupling, residual: exact
//! log-determinants; CNF-MLE: its evaluation solver), a flow-matching model's instantaneous
//! change of variables (dopri5 on `[x, ℓ]`, exact divergence, as `fm likelihood` computes it).
//!
//! Only 2-D models are drawn: a model of another dimension is an input error (exit 2) that
//! says so, rather than a slice whose fixed coordinates would have to be guessed.

use crate::commands::{Report, count};
use crate::flows;
use crate::safety::{Kind, check_outputs, out as output};
use crate::{input, plot};
use anyhow::{Context, Result, bail};
use flow_matching::data::write_points;
use flow_matching::metrics;
use flow_matching::train::SampleOptions;
use ndarray::{Array1, Array2, ArrayView2, Axis, Slice};
use plotters::prelude::*;
use serde_json::json;
use std::path::Path;

/// The settings of `fm plot density`.
pub struct DensityArgs<'a> {
    /// The model file.
    pub model: &'a Path,
    /// `--range`: `LO,HI` (both axes) or `X0,X1,Y0,Y1`; `None`: from the model's samples.
    pub range: Option<&'a str>,
    /// `--grid`: cells per axis.
    pub grid: i64,
    /// `--seed`: the samples that choose the default window.
    pub seed: u64,
    /// `--rtol`/`--atol` of the dopri5 solve of a flow-matching model or a CNF-MLE.
    pub rtol: Option<f64>,
    /// See `rtol`.
    pub atol: Option<f64>,
    /// `--values`: also write the grid's `(x0, x1, log p)` rows.
    pub values: Option<&'a Path>,
    /// The PNG.
    pub out: &'a Path,
}

/// A model whose log-density the plot draws.
enum Model {
    Flow(Box<flows::Flow>),
    Fm(Box<flow_matching::train::TrainedModel>),
}

impl Model {
    fn kind(&self) -> String {
        match self {
            Model::Flow(f) => f.kind().to_string(),
            Model::Fm(m) => format!("flow matching ({})", m.config.matcher.kind.name()),
        }
    }

    fn dim(&self) -> usize {
        match self {
            Model::Flow(f) => f.dim(),
            Model::Fm(m) => m.config.architecture.dim,
        }
    }

    /// 2,000 samples, for the default window.
    fn samples(&self, seed: u64) -> Result<Array2<f64>> {
        match self {
            Model::Flow(f) => f.sample(2000, &mut flow_matching::core::rng::seeded(seed)),
            Model::Fm(m) => {
                let opts = SampleOptions {
                    n: 2000,
                    seed,
                    ..Default::default()
                };
                Ok(flow_matching::train::sample(m, &opts)?.1.x)
            }
        }
    }

    /// `log p` of the rows of `x`.
    fn log_density(&self, x: ArrayView2<f64>, tol: (f64, f64)) -> Result<Array1<f64>> {
        match self {
            Model::Flow(f) => f.log_density(x),
            Model::Fm(m) => {
                let opts = metrics::LikelihoodOptions {
                    rtol: tol.0,
                    atol: tol.1,
                    ..Default::default()
                };
                let field = m.field(true)?;
                let mut rng = flow_matching::core::rng::seeded(0);
                Ok(metrics::log_likelihood(field.as_ref(), x, &opts, &mut rng)?.log_p)
            }
        }
    }
}

/// `--range`: `LO,HI` or `X0,X1,Y0,Y1`, finite, each low end below its high end.
fn parse_range(spec: &str) -> Result<((f64, f64), (f64, f64))> {
    let bad = |why: &str| {
        input(format!(
            "invalid --range {spec}: {why}; give LO,HI (both axes) or X0,X1,Y0,Y1, e.g. -3,3"
        ))
    };
    let v: Vec<f64> = spec
        .split(',')
        .map(|s| s.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("not a list of numbers"))?;
    let (x, y) = match v[..] {
        [a, b] => ((a, b), (a, b)),
        [a, b, c, d] => ((a, b), (c, d)),
        _ => return Err(bad("two or four numbers are needed")),
    };
    for (lo, hi) in [x, y] {
        if !(lo.is_finite() && hi.is_finite() && lo < hi && (hi - lo).is_finite()) {
            return Err(bad(
                "each range must be finite with its low end below its high end",
            ));
        }
        if hi - lo < 1e-9 * lo.abs().max(hi.abs()) {
            return Err(bad("a range is too narrow to draw in f64"));
        }
    }
    Ok((x, y))
}

/// The window around the 1 % to 99 % quantiles of `x` in each coordinate, widened by 30 % of
/// their spread on every side (tails of a few outliers do not shrink the picture).
fn window_of(x: ArrayView2<f64>) -> Result<((f64, f64), (f64, f64))> {
    let q = |j: usize| -> Result<(f64, f64)> {
        let mut c: Vec<f64> = x
            .column(j)
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if c.len() < 10 {
            bail!("the model's samples are not finite: give --range LO,HI");
        }
        c.sort_by(f64::total_cmp);
        let at = |p: f64| c[((c.len() - 1) as f64 * p).round() as usize];
        let (lo, hi) = (at(0.01), at(0.99));
        let pad = ((hi - lo) * 0.3).max(1e-3);
        Ok((lo - pad, hi + pad))
    };
    Ok((q(0)?, q(1)?))
}

/// Viridis through five of its colours (#440154, #3b528b, #21918c, #5ec962, #fde725), linear
/// in between; `u` in `[0, 1]`.
fn viridis(u: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [
        (68, 1, 84),
        (59, 82, 139),
        (33, 145, 140),
        (94, 201, 98),
        (253, 231, 37),
    ];
    let u = u.clamp(0.0, 1.0) * 4.0;
    let i = (u.floor() as usize).min(3);
    let f = u - i as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + f * (f64::from(b) - f64::from(a))).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Grid points per log-density evaluation.
const CHUNK_ROWS: usize = 4096;

/// How many nats below the maximum the colour scale reaches (lower values get its floor).
const DYNAMIC_RANGE: f64 = 12.0;

/// `fm plot density`.
pub fn run(a: &DensityArgs<'_>) -> Result<Report> {
    let mut outs = vec![output("--out", a.out, Kind::Png)];
    if let Some(v) = a.values {
        outs.push(output("--values", v, Kind::Points));
    }
    check_outputs(&[("--model", Some(a.model))], &outs)?;
    let grid = count("grid", a.grid, 2000)?;
    if grid < 2 {
        bail!(input("invalid --grid 1: give at least 2 cells per axis"));
    }
    let range = a.range.map(parse_range).transpose()?;
    let model = match flows::load(a.model)? {
        Some(f) => {
            if a.rtol.is_some() || a.atol.is_some() {
                match f {
                    flows::Flow::Cnf(mut c) => {
                        let (r0, a0) = match c.config().eval {
                            flow_matching::nf::CnfEval::Dopri5 { rtol, atol } => (rtol, atol),
                            flow_matching::nf::CnfEval::Fixed => (1e-5, 1e-5),
                        };
                        let eval = flow_matching::nf::CnfEval::Dopri5 {
                            rtol: a.rtol.unwrap_or(r0),
                            atol: a.atol.unwrap_or(a0),
                        };
                        c.set_evaluation(eval, None, None)
                            .map_err(|e| input(format!("--rtol/--atol: {e}")))?;
                        Model::Flow(Box::new(flows::Flow::Cnf(c)))
                    }
                    other => bail!(input(format!(
                        "--rtol/--atol do not apply to a {} model (its log-density is exact): leave them out",
                        other.kind()
                    ))),
                }
            } else {
                Model::Flow(Box::new(f))
            }
        }
        None => {
            let m = crate::commands::load_model(a.model)?;
            if !m.config.source.starts_with("gaussian") {
                bail!(input(format!(
                    "{}: a density needs a model trained from --source gaussian (this one's source is {})",
                    a.model.display(),
                    m.config.source
                )));
            }
            Model::Fm(Box::new(m))
        }
    };
    let d = model.dim();
    if d != 2 {
        bail!(input(format!(
            "{}: a {d}-dimensional model; fm plot density draws 2-D models only (no slicing): \
             use fm likelihood for its log-density, or fm plot samples for two of its coordinates",
            a.model.display()
        )));
    }
    let tol = (a.rtol.unwrap_or(1e-5), a.atol.unwrap_or(1e-5));
    let (xr, yr) = match range {
        Some(r) => r,
        None => window_of(model.samples(a.seed)?.view())?,
    };
    let (hx, hy) = ((xr.1 - xr.0) / grid as f64, (yr.1 - yr.0) / grid as f64);
    // Cell centres, x0 fastest.
    let pts = Array2::from_shape_fn((grid * grid, 2), |(k, j)| {
        if j == 0 {
            xr.0 + ((k % grid) as f64 + 0.5) * hx
        } else {
            yr.0 + ((k / grid) as f64 + 0.5) * hy
        }
    });
    // In chunks of rows, so memory does not grow with --grid (an adaptive solve's steps are
    // chosen per chunk).
    let mut lp = Array1::zeros(pts.nrows());
    for (i, chunk) in pts.axis_chunks_iter(Axis(0), CHUNK_ROWS).enumerate() {
        let v = model
            .log_density(chunk, tol)
            .with_context(|| format!("the log-density of {} on the grid", a.model.display()))?;
        lp.slice_axis_mut(
            Axis(0),
            Slice::from(i * CHUNK_ROWS..i * CHUNK_ROWS + v.len()),
        )
        .assign(&v);
    }
    let finite: Vec<f64> = lp.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        bail!(
            "the model's log-density is not finite anywhere on the grid: check the model or the --range"
        );
    }
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let non_finite = lp.len() - finite.len();
    let mass: f64 = finite.iter().map(|v| v.exp()).sum::<f64>() * hx * hy;
    let floor = max - DYNAMIC_RANGE;
    let kind = model.kind();
    let name = a.model.file_name().map_or_else(
        || a.model.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let title = format!("log p(x): {kind}, {name}");
    plot::render(a.out, (800, 800), |root| {
        let (main, bar) = root.split_horizontally(700);
        let mut chart = ChartBuilder::on(&main)
            .caption(&title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("x0")
            .y_desc("x1")
            .draw()?;
        chart.draw_series(pts.rows().into_iter().zip(lp.iter()).map(|(p, &l)| {
            let (cx, cy) = (p[0], p[1]);
            let color = if l.is_finite() {
                viridis((l - floor) / DYNAMIC_RANGE)
            } else {
                RGBColor(160, 160, 160)
            };
            Rectangle::new(
                [
                    (cx - hx / 2.0, cy - hy / 2.0),
                    (cx + hx / 2.0, cy + hy / 2.0),
                ],
                color.filled(),
            )
        }))?;
        // The colour bar: log p from max − 12 to max.
        let mut scale = ChartBuilder::on(&bar)
            .caption("log p", ("sans-serif", 14))
            .margin_top(30)
            .margin_bottom(50)
            .margin_left(2)
            .margin_right(20)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..1.0, floor..max)?;
        scale
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(7)
            .y_label_style(("sans-serif", 12))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .draw()?;
        let steps = 120;
        scale.draw_series((0..steps).map(|i| {
            let lo = floor + DYNAMIC_RANGE * i as f64 / steps as f64;
            let hi = floor + DYNAMIC_RANGE * (i + 1) as f64 / steps as f64;
            Rectangle::new(
                [(0.0, lo), (1.0, hi)],
                viridis((i as f64 + 0.5) / steps as f64).filled(),
            )
        }))?;
        Ok(())
    })?;
    if let Some(v) = a.values {
        let mut rows = Array2::zeros((pts.nrows(), 3));
        rows.column_mut(0).assign(&pts.column(0));
        rows.column_mut(1).assign(&pts.column(1));
        rows.column_mut(2).assign(&lp);
        write_points(v, rows.view())?;
        println!("grid values (x0, x1, log p) written to {}", v.display());
    }
    println!(
        "log p of the {kind} model on a {grid} × {grid} grid over [{}, {}] × [{}, {}]: max {max:.3}, \
         mass in the window {mass:.4}{}",
        xr.0,
        xr.1,
        yr.0,
        yr.1,
        if non_finite > 0 {
            format!(", {non_finite} cells not finite (grey)")
        } else {
            String::new()
        }
    );
    println!("plot written to {}", a.out.display());
    let mut r = Report::new();
    r.insert("command".into(), json!("plot"));
    r.insert("kind".into(), json!("density"));
    r.insert("model_kind".into(), json!(kind));
    r.insert("out".into(), json!(a.out.display().to_string()));
    r.insert("grid".into(), json!(grid));
    r.insert("range".into(), json!([[xr.0, xr.1], [yr.0, yr.1]]));
    r.insert("max_log_p".into(), json!(max));
    r.insert("min_log_p".into(), json!(min));
    r.insert("mass_in_window".into(), json!(mass));
    r.insert("non_finite".into(), json!(non_finite));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_bad_ones_name_the_flag() {
        assert_eq!(parse_range("-3,3").unwrap(), ((-3.0, 3.0), (-3.0, 3.0)));
        assert_eq!(parse_range("-1, 2,0,5").unwrap(), ((-1.0, 2.0), (0.0, 5.0)));
        for bad in ["3,-3", "1", "a,b", "0,inf", "1,2,3", "1,1"] {
            let e = parse_range(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("--range {bad}")), "{e}");
        }
    }

    #[test]
    fn viridis_runs_from_purple_to_yellow() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(0.5), RGBColor(33, 145, 140));
        assert_eq!(viridis(-3.0), viridis(0.0));
    }

    #[test]
    fn the_default_window_covers_the_bulk_with_a_margin() {
        let x = Array2::from_shape_fn((1000, 2), |(i, j)| {
            if i == 0 {
                1e6
            } else {
                (i % 100) as f64 / 99.0 + j as f64
            }
        });
        let ((x0, x1), (y0, y1)) = window_of(x.view()).unwrap();
        assert!(x0 < 0.0 && x1 > 1.0 && x1 < 2.0, "{x0} {x1}");
        assert!(y0 < 1.0 && y1 > 2.0 && y1 < 3.0, "{y0} {y1}");
    }
}
