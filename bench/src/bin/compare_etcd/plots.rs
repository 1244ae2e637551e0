//! SVG plots: write latency across a failover (throughput against clients is
//! [`ha_bench::throughput_vs_clients`], which the `compare` harness also draws).

use std::path::Path;

use plotters::prelude::*;

use super::failover::Attempt;

const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];

fn plot_error<E: std::fmt::Display>(error: E) -> String {
    format!("plot: {error}")
}

/// Write latency of every attempt (ms) against its start time relative to the kill (ms), one
/// line per series; failed attempts are included at the time they took to fail.
pub fn failover_latency(path: &Path, series: &[(String, Vec<Attempt>)]) -> Result<(), String> {
    let x_min = series
        .iter()
        .flat_map(|(_, attempts)| attempts.iter().map(|a| a.start_ms))
        .fold(-200.0f64, f64::min)
        .max(-1000.0);
    let x_max = series
        .iter()
        .flat_map(|(_, attempts)| attempts.iter().map(|a| a.start_ms + a.latency_ms))
        .fold(500.0f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|(_, attempts)| attempts.iter().map(|a| a.latency_ms))
        .fold(10.0f64, f64::max)
        * 1.05;
    let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Write latency across a leader SIGKILL at t=0 (one trial each)",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_min..x_max, 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("time since the kill (ms)")
        .y_desc("attempt latency (ms)")
        .draw()
        .map_err(plot_error)?;
    for (index, (name, attempts)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                attempts.iter().map(|a| (a.start_ms, a.latency_ms)),
                color.stroke_width(1),
            ))
            .map_err(plot_error)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, 0.0), (0.0, y_max)],
            BLACK.stroke_width(1),
        ))
        .map_err(plot_error)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}
