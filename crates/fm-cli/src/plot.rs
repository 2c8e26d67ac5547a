//! PNG plots with plotters (bitmap backend, embedded DejaVu Sans font): samples against the
//! target, trajectories from source to target, the loss curve.

use anyhow::{Context, Result, bail};
use ndarray::{Array2, ArrayView2};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// DejaVu Sans (Bitstream Vera licence, see `assets/LICENSE-DejaVuSans.txt`), embedded so plots
/// need no system fonts or libraries.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

const WIDTH: u32 = 800;
const HEIGHT: u32 = 800;
const SAMPLE_COLOR: RGBColor = RGBColor(31, 119, 180);
const TARGET_COLOR: RGBColor = RGBColor(255, 127, 14);
const SOURCE_COLOR: RGBColor = RGBColor(60, 60, 60);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font compiled into the binary; failure is impossible
        // in practice and would only lose the labels.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Checks that the output ends in `.png` and its directory exists; returns the temporary file
/// (a random name created exclusively next to the file `out` replaces, removed when dropped)
/// the picture is drawn to before it is renamed into place, and the file it replaces (`out`, or
/// the target of a symlink `out`).
fn temp_png(out: &Path) -> Result<(tempfile::NamedTempFile, PathBuf)> {
    if out
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        != Some("png".into())
    {
        bail!(crate::input(format!(
            "{}: plots are written as PNG: give an output path ending in .png",
            out.display()
        )));
    }
    crate::check_out_dir(out)?;
    let target = crate::safety::write_target(out)?;
    if let Ok(m) = std::fs::metadata(&target)
        && !m.is_file()
    {
        bail!(crate::input(format!(
            "{}: is not a regular file and is never replaced: choose another output path",
            out.display()
        )));
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp.png")
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot write the plot", out.display()))?;
    Ok((tmp, target))
}

/// The square window (with a 5 % margin) around the finite points of `sets`, computed without
/// overflow. Points whose spread a plot cannot show (the window's width overflows f64, e.g.
/// coordinates near ±1e308) are an input error: plotters' axis ticks would loop forever on an
/// infinite range. The window is at least `1e-9` of its centre's magnitude wide, so ticks never
/// fall below the resolution of f64.
fn bounds<'a>(sets: impl Iterator<Item = ArrayView2<'a, f64>>) -> Result<((f64, f64), (f64, f64))> {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for s in sets {
        for r in s.rows() {
            if r[0].is_finite() && r[1].is_finite() {
                x0 = x0.min(r[0]);
                x1 = x1.max(r[0]);
                y0 = y0.min(r[1]);
                y1 = y1.max(r[1]);
            }
        }
    }
    if !x0.is_finite() {
        return Ok(((-1.0, 1.0), (-1.0, 1.0)));
    }
    // A square window with a 5 % margin, so shapes are not distorted; halves first, so
    // nothing overflows on the way.
    let (cx, cy) = (x0 / 2.0 + x1 / 2.0, y0 / 2.0 + y1 / 2.0);
    let scale = cx.abs().max(cy.abs());
    let half = (x1 / 2.0 - x0 / 2.0)
        .max(y1 / 2.0 - y0 / 2.0)
        .max(1e-6)
        .max(scale * 1e-9)
        * 1.05;
    let window = ((cx - half, cx + half), (cy - half, cy + half));
    let (xr, yr) = window;
    if ![xr.0, xr.1, yr.0, yr.1, xr.1 - xr.0, yr.1 - yr.0]
        .iter()
        .all(|v| v.is_finite())
    {
        bail!(crate::input(format!(
            "cannot plot points spanning x from {x0:e} to {x1:e} and y from {y0:e} to {y1:e}: the axis range overflows f64; rescale the data or drop the outliers"
        )));
    }
    Ok(window)
}

fn need_2d(what: &str, x: ArrayView2<f64>) -> Result<()> {
    if x.ncols() < 2 {
        bail!(crate::input(format!(
            "{what} has {} column(s): scatter and trajectory plots need at least 2 dimensions (the first two are drawn)",
            x.ncols()
        )));
    }
    Ok(())
}

/// Draws a `size` picture with `draw` into a temporary PNG next to `out` (after
/// [`temp_png`]'s checks), then renames it into place; on failure the temporary file is removed.
pub(crate) fn render(
    out: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    register_font();
    let (tmp, target) = temp_png(out)?;
    let result = (|| -> Result<()> {
        let root = BitMapBackend::new(tmp.path(), size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
        Ok(())
    })();
    // On an error `tmp` is dropped, which removes the temporary file.
    result.map_err(|e| e.context(format!("{}: cannot draw the plot", out.display())))?;
    #[cfg(unix)]
    {
        // Temporary files are created private (0600); a plot is an ordinary file.
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(&target)
        .map_err(|e| anyhow::Error::new(e.error))
        .with_context(|| format!("{}: cannot write the plot", out.display()))?;
    Ok(())
}

/// A chart builder with the title and the margins every plot uses.
fn framed<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    title: &str,
    x_label_area: u32,
    y_label_area: u32,
) -> ChartBuilder<'a, 'static, BitMapBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(x_label_area)
        .y_label_area_size(y_label_area);
    builder
}

/// A chart in the first two coordinates.
type Scatter<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// `x` with the subscript `i` (`x₀`, `x₁₂`).
fn coordinate(i: usize) -> String {
    let sub = |c: char| char::from_u32('₀' as u32 + c.to_digit(10).unwrap_or(0)).unwrap_or(c);
    format!("x{}", i.to_string().chars().map(sub).collect::<String>())
}

/// The title of a scatter of the first two of `dim` coordinates: for `dim > 2` it says which two
/// are shown (`… (x₀ vs x₁ of 6)`).
fn scatter_title(title: &str, dim: usize) -> String {
    if dim > 2 {
        format!("{title} ({} vs {} of {dim})", coordinate(0), coordinate(1))
    } else {
        title.to_string()
    }
}

/// The square scatter chart of the samples and trajectory plots, mesh and axis labels drawn.
fn scatter_chart<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    title: &str,
    (xr, yr): ((f64, f64), (f64, f64)),
) -> Result<Scatter<'a, 'b>> {
    let mut chart = framed(root, title, 50, 65).build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
    chart
        .configure_mesh()
        .x_desc(coordinate(0))
        .y_desc(coordinate(1))
        .axis_desc_style(("sans-serif", 18))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    Ok(chart)
}

/// The corner of `window` whose box (a third of the width, a fifth of the height: room for
/// the legend) holds the fewest of the points of `sets` (first two coordinates), so the legend
/// covers as little of the picture as possible; ties go to the upper right, then upper left,
/// lower right, lower left.
fn emptiest_corner<'a>(
    sets: impl Iterator<Item = ArrayView2<'a, f64>>,
    ((x0, x1), (y0, y1)): ((f64, f64), (f64, f64)),
) -> SeriesLabelPosition {
    let (w, h) = ((x1 - x0) / 3.0, (y1 - y0) / 5.0);
    // (right, upper) of each corner, in the order of preference.
    let corners = [(true, true), (false, true), (true, false), (false, false)];
    let mut counts = [0usize; 4];
    for s in sets {
        for r in s.rows() {
            let (x, y) = (r[0], r[1]);
            for (k, &(right, upper)) in corners.iter().enumerate() {
                let in_x = if right { x >= x1 - w } else { x <= x0 + w };
                let in_y = if upper { y >= y1 - h } else { y <= y0 + h };
                if in_x && in_y {
                    counts[k] += 1;
                }
            }
        }
    }
    let best = (0..4).min_by_key(|&k| counts[k]).unwrap_or(0);
    match corners[best] {
        (true, true) => SeriesLabelPosition::UpperRight,
        (false, true) => SeriesLabelPosition::UpperLeft,
        (true, false) => SeriesLabelPosition::LowerRight,
        (false, false) => SeriesLabelPosition::LowerLeft,
    }
}

/// The first two coordinates of every row of `x` as dots of radius 2 in `style`, with a legend
/// entry `label` (a dot of radius 4 in `legend`).
fn draw_points(
    chart: &mut Scatter<'_, '_>,
    x: ArrayView2<f64>,
    style: ShapeStyle,
    label: String,
    legend: RGBColor,
) -> Result<()> {
    chart
        .draw_series(
            x.rows()
                .into_iter()
                .map(|r| Circle::new((r[0], r[1]), 2, style)),
        )?
        .label(label)
        .legend(move |(x, y)| Circle::new((x, y), 4, legend.filled()));
    Ok(())
}

/// The legend box at `position` (see [`emptiest_corner`]).
fn draw_legend<'a, 'b: 'a>(
    chart: &mut Scatter<'a, 'b>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(position)
        .draw()?;
    Ok(())
}

/// Scatter plot of `samples` (blue) over `target` (orange) in the first two coordinates.
pub fn samples(
    out: &Path,
    samples: ArrayView2<f64>,
    target: Option<ArrayView2<f64>>,
    title: &str,
) -> Result<()> {
    need_2d("the samples", samples)?;
    if let Some(t) = target {
        need_2d("the target", t)?;
    }
    let window = bounds(std::iter::once(samples).chain(target))?;
    let corner = emptiest_corner(std::iter::once(samples).chain(target), window);
    let title = scatter_title(title, samples.ncols());
    render(out, (WIDTH, HEIGHT), |root| {
        let mut chart = scatter_chart(root, &title, window)?;
        if let Some(t) = target {
            let style = TARGET_COLOR.mix(0.5).filled();
            draw_points(&mut chart, t, style, "target".into(), TARGET_COLOR)?;
        }
        let style = SAMPLE_COLOR.mix(0.5).filled();
        draw_points(&mut chart, samples, style, "samples".into(), SAMPLE_COLOR)?;
        draw_legend(&mut chart, corner)
    })
}

/// Trajectories: one grey line per point from its start (black) to its end (blue), over the
/// target (orange) if given. `trajectory` holds the states at increasing times.
pub fn trajectories(
    out: &Path,
    trajectory: &[(f64, Array2<f64>)],
    target: Option<ArrayView2<f64>>,
    title: &str,
) -> Result<()> {
    let (Some(first), Some(last)) = (trajectory.first(), trajectory.last()) else {
        bail!(crate::input(
            "the trajectory is empty: record at least two time points"
        ));
    };
    need_2d("the trajectory", first.1.view())?;
    let xy = bounds(trajectory.iter().map(|(_, x)| x.view()).chain(target))?;
    let corner = emptiest_corner(trajectory.iter().map(|(_, x)| x.view()).chain(target), xy);
    let title = scatter_title(title, first.1.ncols());
    render(out, (WIDTH, HEIGHT), |root| {
        let mut chart = scatter_chart(root, &title, xy)?;
        if let Some(t) = target {
            let style = TARGET_COLOR.mix(0.3).filled();
            draw_points(&mut chart, t, style, "target".into(), TARGET_COLOR)?;
        }
        let n = first.1.nrows();
        for i in 0..n {
            let line: Vec<(f64, f64)> = trajectory
                .iter()
                .map(|(_, x)| (x[[i, 0]], x[[i, 1]]))
                .collect();
            chart.draw_series(LineSeries::new(line, RGBColor(120, 120, 120).mix(0.35)))?;
        }
        for ((t, x), color) in [(first, SOURCE_COLOR), (last, SAMPLE_COLOR)] {
            let label = format!("t = {t:.2}");
            draw_points(&mut chart, x.view(), color.filled(), label, color)?;
        }
        draw_legend(&mut chart, corner)
    })
}

/// Losses the loss curve shows: `[1e-150, 1e150]`. Outside it, plotters' logarithmic axis
/// overflows (a range whose end-to-start ratio is infinite makes its tick loop run forever), so
/// such values (only a diverged or crafted history has them) are left out of the picture.
const PLOTTABLE_LOSS: (f64, f64) = (1e-150, 1e150);

/// The loss curve `(step, loss)` on a logarithmic loss axis (losses outside
/// [`PLOTTABLE_LOSS`] are left out).
pub fn loss_curve(out: &Path, history: &[(usize, f64)], title: &str) -> Result<()> {
    let pts: Vec<(usize, f64)> = history
        .iter()
        .filter(|(_, l)| (PLOTTABLE_LOSS.0..=PLOTTABLE_LOSS.1).contains(l))
        .copied()
        .collect();
    if pts.is_empty() {
        bail!(crate::input(
            "the model holds no loss history to plot (train with --log-every N; losses outside [1e-150, 1e150] are not plotted)"
        ));
    }
    render(out, (WIDTH, HEIGHT * 3 / 4), |root| {
        // An integer step axis: its ticks are whole steps.
        let xmax = pts.iter().map(|p| p.0).fold(1, usize::max);
        let ymin = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let ymax = pts.iter().map(|p| p.1).fold(0.0, f64::max);
        // Within [0.9e-150, 1.1e150], so the ratio ymax / ymin (at most 1.4e300) stays finite.
        let (ymin, ymax) = (ymin * 0.9, (ymax * 1.1).max(ymin * 1.01));
        let line = || LineSeries::new(pts.iter().copied(), SAMPLE_COLOR.stroke_width(2));
        if ymax / ymin > 20.0 {
            let mut chart = framed(root, title, 40, 70)
                .build_cartesian_2d(0..xmax, (ymin..ymax).log_scale())?;
            chart
                .configure_mesh()
                .x_desc("training step")
                .x_label_formatter(&|s| s.to_string())
                .y_desc("loss (log scale)")
                .y_label_formatter(&|v| format!("{v:.2e}"))
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            chart.draw_series(line())?;
        } else {
            let mut chart = framed(root, title, 40, 70).build_cartesian_2d(0..xmax, ymin..ymax)?;
            chart
                .configure_mesh()
                .x_desc("training step")
                .x_label_formatter(&|s| s.to_string())
                .y_desc("loss")
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            chart.draw_series(line())?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn coordinates_and_titles_name_the_dimensions_shown() {
        assert_eq!(coordinate(0), "x₀");
        assert_eq!(coordinate(12), "x₁₂");
        assert_eq!(scatter_title("samples", 6), "samples (x₀ vs x₁ of 6)");
        assert_eq!(scatter_title("samples", 2), "samples");
    }

    #[test]
    fn the_legend_goes_to_the_corner_without_points() {
        let window = ((0.0, 1.0), (0.0, 1.0));
        // A cloud in every corner but one: the legend must go to the empty one.
        for (empty, want) in [
            ((1.0, 1.0), SeriesLabelPosition::UpperRight),
            ((0.0, 1.0), SeriesLabelPosition::UpperLeft),
            ((1.0, 0.0), SeriesLabelPosition::LowerRight),
            ((0.0, 0.0), SeriesLabelPosition::LowerLeft),
        ] {
            let mut rows = Vec::new();
            for corner in [(1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.0, 0.0)] {
                if corner != empty {
                    for k in 0..10 {
                        let e = 0.01 * k as f64;
                        rows.push([(corner.0 - e).abs(), (corner.1 - e).abs()]);
                    }
                }
            }
            let x =
                Array2::from_shape_vec((rows.len(), 2), rows.iter().flatten().copied().collect())
                    .unwrap();
            let got = emptiest_corner(std::iter::once(x.view()), window);
            assert_eq!(
                format!("{got:?}"),
                format!("{want:?}"),
                "empty corner {empty:?}"
            );
        }
    }
}
