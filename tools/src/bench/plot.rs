//! The peak-shaving plot: from the burst's timeline, registrations accepted and mails delivered
//! per second against the queue depth, so the flat delivery line under the accept spike shows.

use std::path::Path;

/// One sample of the burst timeline, taken every 100 ms while it runs.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the burst started.
    pub t: f64,
    /// Registrations answered 201 so far.
    pub accepted: usize,
    /// Welcome jobs not done yet (-1 when the count failed).
    pub depth: i64,
    /// Welcome mails the sink accepted so far.
    pub delivered: usize,
}

/// Writes the SVG to `path`; the caption names the SMTP latency and session cap it ran under.
pub fn draw_burst(
    path: &Path,
    samples: &[Sample],
    latency_ms: u64,
    cap: usize,
) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let rate = |f: fn(&Sample) -> usize| -> Vec<(f64, f64)> {
        samples
            .windows(2)
            .map(|w| {
                (
                    w[1].t,
                    (f(&w[1]) as f64 - f(&w[0]) as f64) / (w[1].t - w[0].t).max(1e-3),
                )
            })
            .collect()
    };
    let accepted = rate(|s| s.accepted);
    let delivered = rate(|s| s.delivered);
    let depth: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| (s.t, s.depth.max(0) as f64))
        .collect();
    let t_max = samples.last().map(|s| s.t).unwrap_or(1.0).max(1.0);
    let y_max = accepted
        .iter()
        .chain(&delivered)
        .chain(&depth)
        .map(|p| p.1)
        .fold(1.0, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Peak shaving: burst of registrations, SMTP +{latency_ms} ms, at most {cap} sessions"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the burst started")
        .y_desc("per second / jobs")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (name, points, color) in [
        ("registrations accepted per second", accepted, BLUE),
        ("queue depth (welcome jobs not done)", depth, RED),
        ("welcome mails delivered per second", delivered, GREEN),
    ] {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
