//! The throughput-against-clients plot, shared by `compare_etcd` (HTTP paths) and the
//! `compare` harness (HTTP paths plus ha's native client and etcd's gRPC client).

use std::path::Path;

use plotters::prelude::*;

/// One line per series, in this order: ha HTTP, etcd HTTP, ha native, etcd gRPC.
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One line of the plot: its legend and its `(clients, writes per second)` points.
pub type ThroughputSeries = (String, Vec<(usize, f64)>);

fn plot_error<E: std::fmt::Display>(error: E) -> String {
    format!("plot: {error}")
}

/// Write an SVG of acknowledged writes per second against concurrent clients to `path`, one
/// line per series, under `caption`.
///
/// # Errors
/// The drawing or file error, as text.
pub fn throughput_vs_clients(
    path: &Path,
    caption: &str,
    series: &[ThroughputSeries],
) -> Result<(), String> {
    let x_max = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(clients, _)| *clients as f64))
        .fold(1.0f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(_, rate)| *rate))
        .fold(1.0f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("concurrent clients")
        .y_desc("acknowledged writes per second")
        .draw()
        .map_err(plot_error)?;
    for (index, (name, points)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points
                    .iter()
                    .map(|(clients, rate)| (*clients as f64, *rate)),
                color.stroke_width(2),
            ))
            .map_err(plot_error)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}
