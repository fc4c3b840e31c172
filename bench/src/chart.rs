//! SVG charts from the JSON records: fan-in CPU per message against the
//! number of FIFOs, and ping-pong latency percentiles, per engine.

use std::io;
use std::path::Path;

use plotters::prelude::*;

use crate::engine::Engine;
use crate::report::Record;

/// One colour per engine, in [`Engine::ALL`] order (ringpipe's modes in
/// warm colours).
const COLORS: [RGBColor; Engine::ALL.len()] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x94, 0x67, 0xbd),
];

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Reads the records of `inputs` and writes `fanin_cpu.svg` and
/// `pingpong_latency.svg` into `out`.
pub fn render(inputs: &[std::path::PathBuf], out: &Path) -> io::Result<()> {
    let mut records: Vec<Record> = Vec::new();
    for input in inputs {
        let mut more: Vec<Record> =
            serde_json::from_str(&std::fs::read_to_string(input)?).map_err(err)?;
        records.append(&mut more);
    }
    std::fs::create_dir_all(out)?;
    fanin_cpu(&records, &out.join("fanin_cpu.svg"))?;
    pingpong(&records, &out.join("pingpong_latency.svg"))?;
    println!(
        "wrote {} and {}",
        out.join("fanin_cpu.svg").display(),
        out.join("pingpong_latency.svg").display()
    );
    Ok(())
}

fn fanin_cpu(records: &[Record], path: &Path) -> io::Result<()> {
    let mut series: Vec<(usize, Vec<(f64, f64)>)> = Vec::new();
    for (k, engine) in Engine::ALL.iter().enumerate() {
        let mut pts: Vec<(f64, f64)> = records
            .iter()
            .filter(|r| r.scenario == "fanin" && r.engine == engine.name())
            .filter_map(|r| {
                let n = r.params.get("fifos")?.as_f64()?;
                Some((n, *r.metrics.get("cpu_s_per_million_msgs")?))
            })
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !pts.is_empty() {
            series.push((k, pts));
        }
    }
    let max_x = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(1.0, f64::max);
    let ys = || series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1));
    let max_y = ys().fold(0.1, f64::max);
    let min_y = ys().fold(max_y, f64::min);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "fan-in: consumer CPU-seconds per million 64-byte messages",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (1f64..max_x * 1.5).log_scale(),
            (min_y * 0.8..max_y * 1.25).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("FIFOs (log scale)")
        .y_desc("CPU s per million messages (log scale)")
        .draw()
        .map_err(err)?;
    draw_lines(&mut chart, series)?;
    root.present().map_err(err)?;
    Ok(())
}

fn pingpong(records: &[Record], path: &Path) -> io::Result<()> {
    let quantiles = [("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")];
    let mut series: Vec<(usize, Vec<(f64, f64)>)> = Vec::new();
    for (k, engine) in Engine::ALL.iter().enumerate() {
        let Some(r) = records
            .iter()
            .find(|r| r.scenario == "pingpong" && r.engine == engine.name())
        else {
            continue;
        };
        let pts: Vec<(f64, f64)> = quantiles
            .iter()
            .enumerate()
            .filter_map(|(i, (m, _))| Some((i as f64, *r.metrics.get(*m)?)))
            .collect();
        series.push((k, pts));
    }
    let max_y = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "ping-pong: 64-byte round trip over two FIFOs",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.2f64..2.2, (1f64..max_y * 2.0).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(3)
        .x_label_formatter(&|x| {
            quantiles
                .get(x.round() as usize)
                .map(|q| q.1.to_string())
                .unwrap_or_default()
        })
        .y_desc("round trip, us (log scale)")
        .draw()
        .map_err(err)?;
    draw_lines(&mut chart, series)?;
    root.present().map_err(err)?;
    Ok(())
}

/// One line with dots per engine, and the legend.
fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: Vec<(usize, Vec<(f64, f64)>)>,
) -> io::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (k, pts) in series {
        let color = COLORS[k];
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(Engine::ALL[k].name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(err)?;
    Ok(())
}
