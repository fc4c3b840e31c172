//! SVG charts from the JSON records: the ones the scenarios ask for
//! ([`Chart`]), each drawn when its scenario has records: a metric
//! against a parameter (one line per engine), one value per engine (and
//! mode) with the min-max range of the runs where recorded, or latency
//! percentiles.

use std::io;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::{Catalog, Record, Stat};

/// A chart a scenario asks for, written to `file`.
#[derive(Debug, Clone, Copy)]
pub enum Chart {
    /// `metric` against the numeric parameter `param`, one line per
    /// engine, log-log.
    ByParam {
        file: &'static str,
        scenario: &'static str,
        param: &'static str,
        metric: &'static str,
        caption: &'static str,
        axes: (&'static str, &'static str),
    },
    /// `metric`, one bar per engine and mode.
    PerEngine {
        file: &'static str,
        scenario: &'static str,
        metric: &'static str,
        caption: &'static str,
        axis: &'static str,
    },
    /// p50, p99 and p99.9 (`p50_us`...), one line per engine.
    Percentiles {
        file: &'static str,
        scenario: &'static str,
        caption: &'static str,
        axis: &'static str,
    },
}

/// One colour per table column (column order: ringpipe's modes in warm
/// colours, the peers in cool ones, the ceiling grey).
const COLORS: [RGBColor; 12] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0xf7, 0xb6, 0xd2),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xff, 0xbb, 0x78),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// What every chart is drawn with: the records, and the engines in
/// column order.
struct Sheet<'a> {
    records: &'a [Record],
    columns: Vec<&'static str>,
}

impl Sheet<'_> {
    fn color(&self, engine: &str) -> RGBColor {
        let k = self.columns.iter().position(|c| *c == engine).unwrap_or(0);
        COLORS[k % COLORS.len()]
    }
}

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Reads the records of `inputs` and writes each of `charts` that has
/// records into `out`.
pub fn render(
    inputs: &[PathBuf],
    out: &Path,
    catalog: &Catalog,
    charts: &[Chart],
) -> io::Result<()> {
    let records = crate::report::read(inputs)?;
    let sheet = Sheet {
        records: &records,
        columns: catalog.columns(),
    };
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for chart in charts {
        let (file, drawn) = match *chart {
            Chart::ByParam {
                file,
                scenario,
                param,
                metric,
                caption,
                axes,
            } => (
                file,
                by_param(
                    &sheet,
                    &out.join(file),
                    (scenario, param, metric),
                    caption,
                    axes,
                )?,
            ),
            Chart::PerEngine {
                file,
                scenario,
                metric,
                caption,
                axis,
            } => (
                file,
                per_engine(&sheet, &out.join(file), (scenario, metric), caption, axis)?,
            ),
            Chart::Percentiles {
                file,
                scenario,
                caption,
                axis,
            } => (
                file,
                percentiles(&sheet, &out.join(file), scenario, caption, axis)?,
            ),
        };
        if drawn {
            written.push(out.join(file).display().to_string());
        }
    }
    println!("wrote {}", written.join(", "));
    Ok(())
}

fn canvas(path: &Path) -> io::Result<DrawingArea<SVGBackend<'_>, Shift>> {
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    Ok(root)
}

/// `metric` against the numeric parameter `param`, one line per engine,
/// log-log. Returns whether there was anything to draw.
fn by_param(
    sheet: &Sheet<'_>,
    path: &Path,
    (scenario, param, metric): (&str, &str, &str),
    caption: &str,
    (x_desc, y_desc): (&str, &str),
) -> io::Result<bool> {
    let mut series: Vec<(&str, Vec<(f64, f64)>)> = Vec::new();
    for &engine in &sheet.columns {
        let mut pts: Vec<(f64, f64)> = sheet
            .records
            .iter()
            .filter(|r| r.scenario == scenario && r.engine == engine)
            .filter_map(|r| Some((r.params.get(param)?.as_f64()?, *r.metrics.get(metric)?)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !pts.is_empty() {
            series.push((engine, pts));
        }
    }
    if series.is_empty() {
        return Ok(false);
    }
    let xs = || series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0));
    let ys = || series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1));
    let (max_x, max_y) = (xs().fold(1.0, f64::max), ys().fold(1e-3, f64::max));
    let min_x = xs().fold(max_x, f64::min).max(1e-3);
    let min_y = ys().fold(max_y, f64::min).max(1e-6);
    let root = canvas(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (min_x / 1.5..max_x * 1.5).log_scale(),
            (min_y * 0.8..max_y * 1.25).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    draw_lines(sheet, &mut chart, series)?;
    root.present().map_err(err)?;
    Ok(true)
}

/// A bar of [`per_engine`]: label, engine, median, and the runs' min-max.
type Bar<'a> = (String, &'a str, f64, Option<(f64, f64)>);

/// One value per engine and mode (a stem, the value, a whisker for the
/// runs' range), for scenarios with one configuration.
fn per_engine(
    sheet: &Sheet<'_>,
    path: &Path,
    (scenario, metric): (&str, &str),
    caption: &str,
    y_desc: &str,
) -> io::Result<bool> {
    let mut bars: Vec<Bar<'_>> = Vec::new();
    for &e in &sheet.columns {
        for r in sheet
            .records
            .iter()
            .filter(|r| r.scenario == scenario && r.engine == e)
        {
            let Some(st) = Stat::of(r, metric) else {
                continue;
            };
            let label = match r.params.get("mode").and_then(|m| m.as_str()) {
                Some(m) => format!("{e} {m}"),
                None => e.to_string(),
            };
            if bars.iter().any(|b| b.0 == label) {
                continue;
            }
            let spread = (st.hi > st.lo).then_some((st.lo, st.hi));
            bars.push((label, e, st.med, spread));
        }
    }
    if bars.is_empty() {
        return Ok(false);
    }
    let max_y = bars
        .iter()
        .map(|b| b.3.map_or(b.2, |s| s.1))
        .fold(1e-3, f64::max);
    let n = bars.len();
    let root = canvas(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..max_y * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let k = x.round();
            if (x - k).abs() > 0.01 || k < 0.0 {
                return String::new();
            }
            bars.get(k as usize)
                .map(|b| b.0.clone())
                .unwrap_or_default()
        })
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    for (k, (_, engine, v, spread)) in bars.iter().enumerate() {
        let (x, c) = (k as f64, sheet.color(engine));
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, *v)],
                c.stroke_width(12),
            )))
            .map_err(err)?;
        // The min-max range of the runs, a thin black whisker.
        if let Some((lo, hi)) = spread {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x + 0.12, *lo), (x + 0.12, *hi)],
                    BLACK.stroke_width(2),
                )))
                .map_err(err)?;
        }
        chart
            .draw_series(std::iter::once(Text::new(
                crate::report::fmt(*v),
                (x - 0.15, *v + max_y * 0.05),
                ("sans-serif", 14),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(true)
}

/// p50, p99 and p99.9 of `scenario`'s records, one line per engine.
fn percentiles(
    sheet: &Sheet<'_>,
    path: &Path,
    scenario: &str,
    caption: &str,
    y_desc: &str,
) -> io::Result<bool> {
    let quantiles = [("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")];
    let mut series: Vec<(&str, Vec<(f64, f64)>)> = Vec::new();
    for &engine in &sheet.columns {
        let Some(r) = sheet
            .records
            .iter()
            .find(|r| r.scenario == scenario && r.engine == engine)
        else {
            continue;
        };
        let pts: Vec<(f64, f64)> = quantiles
            .iter()
            .enumerate()
            .filter_map(|(i, (m, _))| Some((i as f64, *r.metrics.get(*m)?)))
            .collect();
        series.push((engine, pts));
    }
    if series.is_empty() {
        return Ok(false);
    }
    let max_y = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(1.0, f64::max);
    let root = canvas(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
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
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    draw_lines(sheet, &mut chart, series)?;
    root.present().map_err(err)?;
    Ok(true)
}

/// One line with dots per engine, and the legend.
fn draw_lines<'a, X, Y>(
    sheet: &Sheet<'_>,
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: Vec<(&str, Vec<(f64, f64)>)>,
) -> io::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (engine, pts) in series {
        let c = sheet.color(engine);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(engine)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))
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
