//! The comparison as a grouped bar chart: for each workload, every engine's
//! time relative to larch's (above 1: slower than larch), on a log scale.

use std::path::Path;

use plotters::prelude::*;

const COLORS: [RGBColor; 5] = [
    RGBColor(46, 125, 50),
    RGBColor(21, 101, 192),
    RGBColor(239, 108, 0),
    RGBColor(106, 27, 154),
    RGBColor(198, 40, 40),
];

/// Writes the chart to `path`; `ms(engine, workload)` gives the times.
pub fn comparison(
    path: &Path,
    engines: &[String],
    workloads: &[&str],
    ms: &dyn Fn(&str, &str) -> Option<f64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let reference = engines
        .iter()
        .find(|e| *e == "larch")
        .unwrap_or(&engines[0]);
    // Workloads under a millisecond (len() for most engines) have no
    // meaningful ratio.
    let shown: Vec<&str> = workloads
        .iter()
        .copied()
        .filter(|w| ms(reference, w).is_some_and(|v| v >= 1.0))
        .collect();
    let root = SVGBackend::new(path, (1400, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("time relative to {reference} (log scale; above 1 = slower than {reference})"),
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..shown.len() as f64, (0.05f64..200f64).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(shown.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 && i < shown.len() {
                shown[i].replace('_', " ")
            } else {
                String::new()
            }
        })
        .x_label_style(("sans-serif", 12))
        .y_desc("engine time / reference time")
        .draw()?;
    let width = 0.8 / engines.len() as f64;
    for (ei, engine) in engines.iter().enumerate() {
        let color = COLORS[ei % COLORS.len()];
        let bars: Vec<Rectangle<(f64, f64)>> = shown
            .iter()
            .enumerate()
            .filter_map(|(wi, w)| {
                let r = ms(engine, w)? / ms(reference, w)?;
                let x0 = wi as f64 + 0.1 + ei as f64 * width;
                Some(Rectangle::new(
                    [(x0, 0.05), (x0 + width, r.clamp(0.05, 200.0))],
                    color.filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(engine.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
