//! `rendezvous bench --plot FILE.svg` (docs/PROTOCOL.md §10, "Latency plot"): the run's
//! latency percentile curve as an SVG image, HDR-style. The x axis is the percentile on a
//! log scale of 1/(1-p) (so 90 %, 99 %, 99.9 %, 99.99 % are evenly spaced), the y axis the
//! latency in microseconds; p50, p99 and p99.9 are marked.
//!
//! Drawn with `plotters` (SVG backend only, text left to the viewer's fonts). Reads a
//! [`Histogram`]; writes one file and nothing else.

use super::stats::Histogram;
use plotters::prelude::*;
use std::path::Path;

/// Image size in pixels (width, height).
const SIZE: (u32, u32) = (800, 480);
/// Points per decade of 1/(1-p) on the curve.
const STEPS_PER_DECADE: u32 = 20;
/// Most decades drawn: up to p99.9999.
const MAX_DECADES: u32 = 6;

/// Why the plot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The file name does not end in `.svg` (the one format written).
    #[error("--plot {0}: the plot is written as SVG, name the file FILE.svg")]
    NotSvg(String),
    /// The workload measures no latencies (askforupdate, listall), or nothing was answered.
    #[error("no latencies to plot (nothing answered, or a workload without latencies)")]
    Empty,
    /// The file could not be drawn or written (plotters' message).
    #[error("cannot write the plot {path}: {why}")]
    Draw {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
}

/// Refuses a `--plot` file that is not `*.svg`, before the run.
///
/// # Errors
/// [`PlotError::NotSvg`].
pub fn check_path(path: &Path) -> Result<(), PlotError> {
    let svg = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if svg {
        Ok(())
    } else {
        Err(PlotError::NotSvg(path.display().to_string()))
    }
}

/// The title of a plot of `r`: workload, loop, rate and target.
pub fn title(r: &super::Report) -> String {
    let word = |k: &str| match r.get(k) {
        Some(super::Value::Text(t)) => t.clone(),
        _ => String::from("?"),
    };
    let open = r.number("open_loop") == Some(1.0);
    let rate = r.number("rate_limit").unwrap_or(0.0);
    let pace = match (open, rate > 0.0) {
        (true, true) => format!("open loop at {rate:.0}/s"),
        (true, false) => String::from("open loop"),
        (false, _) => String::from("closed loop"),
    };
    format!(
        "rendezvous bench: {}, {pace}, {} answers, target {}",
        word("workload"),
        r.number("received").unwrap_or(0.0),
        word("target")
    )
}

/// The percentile curve of `h`: (log10(1/(1-p)), latency in µs) pairs, from p = 0 to the
/// highest percentile the count resolves (1 - 1/count, at most [`MAX_DECADES`] decades),
/// then the maximum.
pub fn curve(h: &Histogram) -> Vec<(f64, f64)> {
    let decades = (h.count().max(1) as f64)
        .log10()
        .min(f64::from(MAX_DECADES));
    let steps = (decades * f64::from(STEPS_PER_DECADE)).floor() as u32;
    let mut pts: Vec<(f64, f64)> = (0..=steps)
        .map(|k| {
            let x = f64::from(k) / f64::from(STEPS_PER_DECADE);
            (x, h.quantile_us(1.0 - 10f64.powf(-x)))
        })
        .collect();
    pts.push((decades.max(pts.last().map_or(0.0, |p| p.0)), h.max_us()));
    pts
}

/// The label of x = log10(1/(1-p)): `0%`, `90%`, `99%`, `99.9%`...
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let digits = (x.round() as usize).saturating_sub(2);
    format!("{p:.digits$}%")
}

/// Writes the percentile curve of `h` to `path` as SVG, titled `title`.
///
/// # Errors
/// [`PlotError::Empty`] when `h` holds nothing; [`PlotError::Draw`] when the file cannot
/// be written.
pub fn write_svg(path: &Path, h: &Histogram, title: &str) -> Result<(), PlotError> {
    if h.count() == 0 {
        return Err(PlotError::Empty);
    }
    let draw_err = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: path.display().to_string(),
        why: e.to_string(),
    };
    let pts = curve(h);
    let x_max = pts.last().map_or(1.0, |p| p.0).ceil().max(1.0);
    let y_max = (h.max_us() * 1.05).max(1.0);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| draw_err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile (log scale of 1/(1-p))")
        .y_desc("latency (us)")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(|e| draw_err(&e))?;
    chart
        .draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))
        .map_err(|e| draw_err(&e))?;
    let marks = [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")];
    let marks = marks
        .iter()
        .filter(|(q, _)| h.count() as f64 * (1.0 - q) >= 1.0);
    chart
        .draw_series(marks.map(|&(q, name)| {
            let (x, y) = (-(1.0 - q).log10(), h.quantile_us(q));
            EmptyElement::at((x, y))
                + Circle::new((0, 0), 4, RED.filled())
                + Text::new(format!("{name} {y:.1} us"), (-70, -16), ("sans-serif", 13))
        }))
        .map_err(|e| draw_err(&e))?;
    root.present().map_err(|e| draw_err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn curve_rises_to_the_max_and_labels_read_as_percentiles() {
        let mut h = Histogram::new();
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        let pts = curve(&h);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(pts.last().map(|p| p.1), Some(10_000.0));
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
    }
}
