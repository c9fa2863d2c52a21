//! The charts: per N, Databases Ready over time and the DBaaS's call and 429 rates over
//! time, for ours, the oracle and the naive operator, drawn as one SVG.
#![allow(
    clippy::cast_precision_loss,
    reason = "counts and sizes far below 2^52, drawn as coordinates"
)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use plotters::prelude::*;

use super::{report::Sized, run::Outcome};

/// Where the charts go: `KUBE_RECONCILE_BENCH_PLOTS`, else `target/convergence` in the
/// workspace.
pub(crate) fn directory() -> PathBuf {
    std::env::var_os("KUBE_RECONCILE_BENCH_PLOTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/convergence"),
        PathBuf::from,
    )
}

/// Draws `convergence-n<N>.svg` for one size; returns its path.
pub(crate) fn draw(sized: &Sized, dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let n = sized.ours.n;
    let path = dir.join(format!("convergence-n{n}.svg"));
    let runs = [
        (&sized.ours, BLUE),
        (&sized.oracle, RGBColor(0, 140, 0)),
        (&sized.naive, RED),
    ];
    draw_into(sized, &runs, &path)?;
    Ok(path)
}

/// Draws the two panels of one size into `path`.
fn draw_into(
    sized: &Sized,
    runs: &[(&Outcome, RGBColor); 3],
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let n = sized.ours.n;
    let end = runs
        .iter()
        .map(|(run, _)| run.ready_at.last().copied().unwrap_or_default())
        .chain(
            runs.iter()
                .filter_map(|(run, _)| run.dbaas_over_time.last().map(|s| s.at)),
        )
        .max()
        .unwrap_or_default()
        .as_secs_f64()
        .max(1.0)
        * 1.02;
    let root = SVGBackend::new(path, (1000, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(400);

    let mut ready = ChartBuilder::on(&upper)
        .caption(
            format!("{n} Databases: Ready over time"),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, 0.0..n as f64 * 1.02)?;
    ready
        .configure_mesh()
        .x_desc("seconds since the operator started")
        .y_desc("Databases Ready")
        .draw()?;
    for &(run, colour) in runs {
        let steps = ready_steps(&run.ready_at);
        ready
            .draw_series(LineSeries::new(steps, colour.stroke_width(2)))?
            .label(run.operator.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    ready
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;

    let rates: Vec<Rates<'_>> = runs
        .iter()
        .map(|(run, colour)| (*run, *colour, rates(&run.dbaas_over_time)))
        .collect();
    // A log scale: the naive operator calls ten times the DBaaS's capacity. Rates under
    // one a second (no 429s at all) sit on the bottom line.
    let top = rates
        .iter()
        .flat_map(|(_, _, r)| r.iter().map(|&(_, calls, _)| calls))
        .fold(10.0_f64, f64::max)
        * 1.5;
    let mut dbaas = ChartBuilder::on(&lower)
        .caption(
            "DBaaS calls a second (solid) and 429s a second (thin, pale); log scale",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, (1.0..top).log_scale())?;
    dbaas
        .configure_mesh()
        .x_desc("seconds since the operator started")
        .y_desc("per second")
        .draw()?;
    for (run, colour, series) in &rates {
        let colour = *colour;
        dbaas
            .draw_series(LineSeries::new(
                series.iter().map(|&(t, calls, _)| (t, calls.max(1.0))),
                colour.stroke_width(2),
            ))?
            .label(format!("{} calls", run.operator.name()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        dbaas
            .draw_series(LineSeries::new(
                series.iter().map(|&(t, _, refused)| (t, refused.max(1.0))),
                colour.mix(0.45).stroke_width(1),
            ))?
            .label(format!("{} 429s", run.operator.name()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.mix(0.45)));
    }
    dbaas
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One run's colour and its DBaaS rates: (seconds, calls a second, 429s a second).
type Rates<'a> = (&'a Outcome, RGBColor, Vec<(f64, f64, f64)>);

/// The Ready count as a step line: up by one at each Database's time.
fn ready_steps(ready_at: &[Duration]) -> Vec<(f64, f64)> {
    let mut steps = Vec::with_capacity(ready_at.len() * 2 + 1);
    steps.push((0.0, 0.0));
    for (i, at) in ready_at.iter().enumerate() {
        let t = at.as_secs_f64();
        steps.push((t, i as f64));
        steps.push((t, (i + 1) as f64));
    }
    steps
}

/// Calls and 429s a second between consecutive samples of the DBaaS's counters.
fn rates(samples: &[DbaasSample]) -> Vec<(f64, f64, f64)> {
    samples
        .windows(2)
        .filter_map(|pair| {
            let span = pair[1].at.checked_sub(pair[0].at)?.as_secs_f64();
            (span > 0.0).then(|| {
                (
                    pair[1].at.as_secs_f64(),
                    pair[1].calls.saturating_sub(pair[0].calls) as f64 / span,
                    pair[1].throttled.saturating_sub(pair[0].throttled) as f64 / span,
                )
            })
        })
        .collect()
}

/// The DBaaS's counters at one moment of a run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DbaasSample {
    /// Since the operator started.
    pub(crate) at: Duration,
    /// Calls received so far.
    pub(crate) calls: u64,
    /// Calls refused with 429 so far.
    pub(crate) throttled: u64,
}
