//! The PNG chart: a panel of the pool scenarios with every peer (a marker
//! per implementation), then one panel per charted sweep, a curve per
//! implementation, both axes logarithmic (plotters, bitmap backend).
//!
//! Text needs a TrueType font, which plotters (built without its
//! font-discovery features, to keep the build light) does not find by
//! itself: the first of a few usual system paths that exists is loaded.

use std::path::Path;

use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;

use crate::report::Row;
use crate::scenarios::Impl;

/// One panel: a sweep's rows.
pub struct Panel<'a> {
    /// Panel title.
    pub title: &'a str,
    /// The parameter on the x axis.
    pub param: &'a str,
    /// The unit on the y axis.
    pub unit: &'a str,
    /// A row per value of the parameter (numeric variants), or per
    /// category.
    pub rows: &'a [Row],
    /// The rows are categories (scenarios), not values of a parameter:
    /// one column of markers per row, named after its scenario, the
    /// implementations side by side; no lines.
    pub categorical: bool,
}

/// Where fonts usually are.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Loads the first font found as plotters' "sans-serif".
fn register_font() -> Result<(), String> {
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            // Drawn once per run: leaking the font's bytes is fine.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Ok(());
            }
        }
    }
    Err(format!(
        "no TrueType font found (looked for {})",
        FONTS.join(", ")
    ))
}

fn color(imp: Impl) -> RGBColor {
    match imp {
        Impl::Multiproc => RGBColor(214, 39, 40),
        Impl::Python => RGBColor(31, 119, 180),
        Impl::Futures => RGBColor(23, 190, 207),
        Impl::Mpire => RGBColor(148, 103, 189),
        Impl::Loky => RGBColor(140, 86, 75),
        Impl::Pebble => RGBColor(227, 119, 194),
        Impl::Joblib => RGBColor(188, 189, 34),
        Impl::Dask => RGBColor(255, 187, 120),
        Impl::Rq => RGBColor(152, 223, 138),
        Impl::Procspawn => RGBColor(44, 160, 44),
        Impl::Rayon => RGBColor(255, 127, 14),
        Impl::Limit => RGBColor(90, 90, 90),
    }
}

/// 16000000 as `16M`, 4000 as `4K`, 0.5 as `0.5`, 0.001 as `0.001`.
fn short(v: f64) -> String {
    let (v, suffix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "K"),
        _ => (v, ""),
    };
    let digits = match v.abs() {
        a if a > 0.0 && a < 1.0 => (-a.log10()).ceil() as usize,
        a if a.fract() == 0.0 => 0,
        _ => 1,
    };
    format!("{v:.digits$}{suffix}")
}

/// Draws `panels` into the PNG file `path`, two panels per line.
///
/// # Errors
///
/// A message if no font is found or the file cannot be written.
pub fn draw(path: &Path, panels: &[Panel<'_>]) -> Result<(), String> {
    register_font()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let cols = panels.len().clamp(1, 2);
    let lines = panels.len().div_ceil(cols).max(1);
    let root =
        BitMapBackend::new(path, (760 * cols as u32, 500 * lines as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    for (panel, area) in panels.iter().zip(root.split_evenly((lines, cols))) {
        if panel.categorical {
            draw_categories(&area, panel)?;
        } else {
            draw_panel(&area, panel)?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: &Panel<'_>,
) -> Result<(), String> {
    let series: Vec<(Impl, Vec<(f64, f64)>)> = Impl::ALL
        .into_iter()
        .filter_map(|imp| {
            let points: Vec<(f64, f64)> = panel
                .rows
                .iter()
                .filter_map(|r| Some((r.variant.parse().ok()?, r.cells.get(&imp)?.value(r.unit)?)))
                .filter(|&(x, y): &(f64, f64)| x > 0.0 && y > 0.0)
                .collect();
            (!points.is_empty()).then_some((imp, points))
        })
        .collect();
    let all = series.iter().flat_map(|(_, p)| p.iter().copied());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if series.is_empty() {
        return Ok(());
    }
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(
            (x0 / 1.3..x1 * 1.3).log_scale(),
            (y0 / 1.5..y1 * 1.5).log_scale(),
        )
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(panel.param)
        .y_desc(panel.unit)
        .x_label_formatter(&|x| short(*x))
        .y_label_formatter(&|y| short(*y))
        .draw()
        .map_err(e)?;
    for (imp, points) in series {
        let c = color(imp);
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(e)?
            .label(imp.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(points.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}

/// A panel of categories: x is the row's index, each implementation's
/// value a marker, shifted a little from the next so that none hides
/// another; y logarithmic.
fn draw_categories(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    panel: &Panel<'_>,
) -> Result<(), String> {
    let impls: Vec<Impl> = Impl::ALL
        .into_iter()
        .filter(|imp| panel.rows.iter().any(|r| value(r, *imp).is_some()))
        .collect();
    let values = panel
        .rows
        .iter()
        .flat_map(|r| impls.iter().filter_map(|imp| value(r, *imp)));
    let (y0, y1) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if impls.is_empty() {
        return Ok(());
    }
    let n = panel.rows.len();
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(-0.5..n as f64 - 0.5, (y0 / 1.5..y1 * 1.5).log_scale())
        .map_err(e)?;
    let names: Vec<&str> = panel.rows.iter().map(|r| r.scenario).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                names.get(i as usize).copied().unwrap_or("").to_string()
            } else {
                String::new()
            }
        })
        .y_desc(panel.unit)
        .y_label_formatter(&|y| short(*y))
        .draw()
        .map_err(e)?;
    let step = 0.7 / impls.len() as f64;
    for (k, imp) in impls.iter().enumerate() {
        let c = color(*imp);
        let dx = (k as f64 - (impls.len() - 1) as f64 / 2.0) * step;
        let points: Vec<(f64, f64)> = panel
            .rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i as f64 + dx, value(r, *imp)?)))
            .collect();
        chart
            .draw_series(points.into_iter().map(|p| Circle::new(p, 5, c.filled())))
            .map_err(e)?
            .label(imp.name())
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}

/// A row's value for `imp` (the best configuration's), if positive.
fn value(row: &Row, imp: Impl) -> Option<f64> {
    row.cells.get(&imp)?.value(row.unit).filter(|v| *v > 0.0)
}
