//! Charts as inline SVG (plotters' SVG backend writes `<text>` elements, so no font files
//! are needed and the report stays one self-contained file). Each run keeps one colour in
//! every chart so a reader can follow it across sections.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::data::{EpsCurve, TradeoffPoint, TrainingCurves};

/// Colour-blind-friendly palette (Okabe–Ito, darkest first); runs beyond it reuse colours.
const PALETTE: [(u8, u8, u8); 8] = [
    (0, 114, 178),
    (213, 94, 0),
    (0, 158, 115),
    (204, 121, 167),
    (86, 180, 233),
    (230, 159, 0),
    (0, 0, 0),
    (150, 150, 150),
];

/// The colour of run `i` in every chart.
pub fn run_colour(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// The colour of run `i` as CSS, for swatches in tables.
pub fn run_colour_css(i: usize) -> String {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The colour of a monitor event kind's marker.
pub fn event_colour(kind: &str) -> RGBColor {
    match kind {
        "alarm" => RGBColor(230, 120, 0),
        "rollback" => RGBColor(128, 0, 160),
        "stop" => RGBColor(200, 0, 0),
        "ignore" => RGBColor(120, 120, 120),
        _ => RGBColor(60, 60, 60),
    }
}

/// The most points a line chart draws per series: a 600-pixel-wide chart shows no more,
/// and a 200,000-epoch `metrics.jsonl` drawn point by point made a 93 MB report.
pub const MAX_CHART_POINTS: usize = 2000;

/// Series longer than this are drawn as a line without a marker per point.
const MAX_MARKERS: usize = 100;

/// The most monitor-event lines a chart draws (the first ones; the report says so).
pub const MAX_EVENT_LINES: usize = 200;

/// At most `max` of `points` (at least 4 are kept), in order: evenly spaced ones plus the
/// first, the last, the lowest and the highest value, so the line keeps its ends and its
/// extremes (a spike or a collapse is never thinned away).
pub fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    let max = max.max(4);
    if points.len() <= max {
        return points.to_vec();
    }
    let by_value = |a: &(usize, &(f64, f64)), b: &(usize, &(f64, f64))| a.1 .1.total_cmp(&b.1 .1);
    let lowest = points
        .iter()
        .enumerate()
        .min_by(by_value)
        .map_or(0, |p| p.0);
    let highest = points
        .iter()
        .enumerate()
        .max_by(by_value)
        .map_or(0, |p| p.0);
    let last = points.len() - 1;
    let mut keep = vec![0, last, lowest, highest];
    let spaced = max - 4;
    keep.extend((1..=spaced).map(|i| i * last / (spaced + 1)));
    keep.sort_unstable();
    keep.dedup();
    keep.into_iter().map(|i| points[i]).collect()
}

const FONT: &str = "sans-serif";
const WIDTH: u32 = 620;
const HEIGHT: u32 = 400;

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("chart could not be drawn: {e}")
}

/// Draws into a fresh SVG string.
fn svg(
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// Clean (x) vs robust (y) accuracy, one labelled point per run.
pub fn tradeoff_chart(points: &[TradeoffPoint]) -> Result<String, String> {
    svg(WIDTH, HEIGHT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Robustness vs accuracy", (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..100f64, 0f64..100f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("clean accuracy (%)")
            .y_desc("robust accuracy (%)")
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        for (k, p) in points.iter().enumerate() {
            let c = run_colour(p.run);
            chart
                .draw_series(std::iter::once(Circle::new(
                    (p.clean_pct, p.robust_pct),
                    6,
                    c.filled(),
                )))
                .map_err(err)?
                .label(format!(
                    "{}: clean {:.1}%, robust {:.1}%",
                    p.name, p.clean_pct, p.robust_pct
                ))
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, c.filled()));
            // Points close to earlier ones get their name lower down so labels do not overlap.
            let crowd = points[..k]
                .iter()
                .filter(|q| {
                    (q.clean_pct - p.clean_pct).abs() < 15.0
                        && (q.robust_pct - p.robust_pct).abs() < 6.0
                })
                .count();
            let style = TextStyle::from((FONT, 13)).color(&c);
            let (x, anchor) = if p.clean_pct > 65.0 {
                (p.clean_pct - 1.5, HPos::Right)
            } else {
                (p.clean_pct + 1.5, HPos::Left)
            };
            // Near the top edge the name goes under the point, elsewhere above it.
            let (dy, v_anchor) = if p.robust_pct > 90.0 {
                (-2.0, VPos::Top)
            } else {
                (2.0, VPos::Bottom)
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    p.name.clone(),
                    (x, p.robust_pct + dy - 6.0 * crowd as f64),
                    style.pos(Pos::new(anchor, v_anchor)),
                )))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 13))
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

/// Accuracy (%) against ε, one line per run.
pub fn eps_chart(curves: &[EpsCurve], norm: &str) -> Result<String, String> {
    let max_eps = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .fold(0.0f64, f64::max);
    let x_max = if max_eps > 0.0 { max_eps * 1.05 } else { 1.0 };
    svg(WIDTH, HEIGHT, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Accuracy vs perturbation radius", (FONT, 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..x_max, 0f64..100f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(format!("ε ({norm} radius, pixel scale [0, 1])"))
            .y_desc("accuracy under attack (%)")
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        for c in curves {
            let colour = run_colour(c.run);
            chart
                .draw_series(LineSeries::new(
                    c.points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(err)?
                .label(c.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(c.points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 13))
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

/// One run's line in a chart: `(x, y)` points in drawing order.
#[derive(Clone, Debug, PartialEq)]
pub struct RunLine {
    /// Index of the run in the report (its colour).
    pub run: usize,
    /// The legend entry.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

/// The frame of a line chart: title, axes and their ranges.
struct Frame<'a> {
    caption: &'a str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    x_desc: &'a str,
    y_desc: &'a str,
    /// Whole-number x ticks only (severities), else plotters' own.
    integer_x: bool,
    /// The dashed y = x line of perfect calibration.
    diagonal: bool,
}

/// Height of one legend row under a chart.
const LEGEND_ROW: u32 = 18;

/// One line with a marker per point for each run, in its colour, and a legend under the
/// plot, one row per entry: inside the plot it would hide points, since a reliability
/// diagram's points may lie in any corner, and default run names are long.
fn run_lines_chart(frame: &Frame<'_>, lines: &[RunLine]) -> Result<String, String> {
    let grey = RGBColor(120, 120, 120);
    let mut legend: Vec<(String, ShapeStyle)> = Vec::new();
    if frame.diagonal {
        legend.push(("perfect calibration (dashed)".into(), grey.stroke_width(1)));
    }
    legend.extend(
        lines
            .iter()
            .map(|l| (l.name.clone(), run_colour(l.run).stroke_width(2))),
    );
    let plot_height = HEIGHT - 20;
    let height = plot_height + 8 + LEGEND_ROW * legend.len() as u32;
    svg(WIDTH - 20, height, |root| {
        let (plot, below) = root.split_vertically(plot_height);
        let mut chart = ChartBuilder::on(&plot)
            .caption(frame.caption, (FONT, 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(frame.x.clone(), frame.y.clone())
            .map_err(err)?;
        let mut mesh = chart.configure_mesh();
        if frame.integer_x {
            mesh.x_labels(5).x_label_formatter(&|x| format!("{x:.0}"));
        }
        mesh.x_desc(frame.x_desc)
            .y_desc(frame.y_desc)
            .axis_desc_style((FONT, 14))
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        if frame.diagonal {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(0.0, 0.0), (1.0, 1.0)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(err)?;
        }
        for line in lines {
            let colour = run_colour(line.run);
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    colour.stroke_width(2),
                ))
                .map_err(err)?;
            chart
                .draw_series(
                    line.points
                        .iter()
                        .map(|&p| Circle::new(p, 3, colour.filled())),
                )
                .map_err(err)?;
        }
        legend_rows(&below, &legend)
    })
}

/// The legend as rows of (line sample, name), left-aligned under the plot's y axis.
fn legend_rows(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    entries: &[(String, ShapeStyle)],
) -> Result<(), String> {
    let text = TextStyle::from((FONT, 13)).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (name, style)) in entries.iter().enumerate() {
        let y = (LEGEND_ROW / 2 + LEGEND_ROW * i as u32) as i32;
        area.draw(&PathElement::new(vec![(67, y), (91, y)], *style))
            .map_err(err)?;
        area.draw(&Text::new(name.clone(), (99, y), text.clone()))
            .map_err(err)?;
    }
    Ok(())
}

/// Accuracy (%) against corruption severity 1–5, averaged over the corruptions, one line
/// per run.
pub fn severity_chart(lines: &[RunLine]) -> Result<String, String> {
    let frame = Frame {
        caption: "Accuracy under common corruptions",
        x: 0.8..5.2,
        y: 0.0..100.0,
        x_desc: "severity",
        y_desc: "accuracy, mean over corruptions (%)",
        integer_x: true,
        diagonal: false,
    };
    run_lines_chart(&frame, lines)
}

/// A reliability diagram: accuracy against mean confidence of each non-empty confidence
/// bin, one line per run, with the diagonal a calibrated model lies on.
pub fn reliability_chart(caption: &str, lines: &[RunLine]) -> Result<String, String> {
    let frame = Frame {
        caption,
        // A little room above 1 so that points at accuracy 1 are not cut in half.
        x: 0.0..1.02,
        y: 0.0..1.02,
        x_desc: "confidence (largest probability)",
        y_desc: "accuracy",
        integer_x: false,
        diagonal: true,
    };
    run_lines_chart(&frame, lines)
}

/// Mixes a colour towards white (`t` = 0: unchanged, 1: white), to tell a run's series
/// apart while keeping its colour.
fn tint(c: RGBColor, t: f64) -> RGBColor {
    let m = |v: u8| (f64::from(v) + (255.0 - f64::from(v)) * t).round() as u8;
    RGBColor(m(c.0), m(c.1), m(c.2))
}

/// Where on the epoch axis an event goes: at the epoch's end, or half-way through when it
/// happened inside the epoch.
pub fn event_x(e: &crate::train::MonitorEvent) -> f64 {
    match e.batch {
        Some(_) => e.epoch as f64 - 0.5,
        None => e.epoch as f64,
    }
}

/// Vertical markers: the best epoch (solid green) and monitor events (dashed, by kind).
fn draw_markers<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    curves: &TrainingCurves,
    y_max: f64,
) -> Result<(), String> {
    if let Some(best) = curves.best_epoch {
        let green = RGBColor(0, 140, 60);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(best as f64, 0.0), (best as f64, y_max)],
                green.stroke_width(2),
            )))
            .map_err(err)?
            .label(format!("best epoch ({best})"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], green.stroke_width(2))
            });
    }
    let mut labelled = Vec::new();
    for e in curves.events.iter().take(MAX_EVENT_LINES) {
        let colour = event_colour(&e.kind);
        let x = event_x(e);
        let series = chart
            .draw_series(DashedLineSeries::new(
                vec![(x, 0.0), (x, y_max)],
                6,
                4,
                colour.stroke_width(2),
            ))
            .map_err(err)?;
        if !labelled.contains(&e.kind) {
            labelled.push(e.kind.clone());
            series.label(e.kind.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        }
    }
    Ok(())
}

/// The points of a series that get a marker: all of a short one, none of a long one
/// (thousands of markers hide the line they sit on).
fn markers(points: &[(f64, f64)]) -> &[(f64, f64)] {
    if points.len() <= MAX_MARKERS {
        points
    } else {
        &[]
    }
}

/// A named series of (epoch, value) points in one colour.
type Series<'a> = (&'a str, &'a Vec<(f64, f64)>, RGBColor);

/// Two charts for one run: training loss, and validation accuracy (clean, FGSM, PGD) by
/// epoch, both with the best epoch and monitor events marked.
/// Each series is drawn through [`thin`] (at most [`MAX_CHART_POINTS`] points), with a
/// marker per point only when it is short.
pub fn training_charts(curves: &TrainingCurves, run: usize) -> Result<(String, String), String> {
    let colour = run_colour(run);
    let train_loss = thin(&curves.train_loss, MAX_CHART_POINTS);
    let val_clean = thin(&curves.val_clean, MAX_CHART_POINTS);
    let val_fgsm = thin(&curves.val_fgsm, MAX_CHART_POINTS);
    let val_pgd = thin(&curves.val_pgd, MAX_CHART_POINTS);
    let x_max = (curves.epochs.max(1) as f64) + 0.5;
    let loss_max = curves
        .train_loss
        .iter()
        .map(|p| p.1)
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;
    let (w, h) = (WIDTH - 20, HEIGHT - 40);
    // One tick per epoch (whole numbers only) up to a readable count.
    let epoch_labels = curves.epochs.clamp(1, 20) + 1;
    let loss = svg(w, h, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Training loss", (FONT, 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0.5f64..x_max, 0f64..loss_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_labels(epoch_labels)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("loss (cross-entropy, method's objective)")
            .axis_desc_style((FONT, 14))
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                train_loss.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(err)?
            .label("train loss")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                markers(&train_loss)
                    .iter()
                    .map(|&p| Circle::new(p, 3, colour.filled())),
            )
            .map_err(err)?;
        draw_markers(&mut chart, curves, loss_max)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 12))
            .draw()
            .map_err(err)?;
        Ok(())
    })?;
    let acc = svg(w, h, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Validation accuracy", (FONT, 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0.5f64..x_max, 0f64..100f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_labels(epoch_labels)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_desc("validation accuracy (%)")
            .axis_desc_style((FONT, 14))
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        let series: [Series<'_>; 3] = [
            ("clean", &val_clean, colour),
            ("FGSM", &val_fgsm, tint(colour, 0.55)),
            ("PGD", &val_pgd, tint(colour, 0.3)),
        ];
        for (i, (name, points, c)) in series.into_iter().enumerate() {
            if points.is_empty() {
                continue;
            }
            let style = c.stroke_width(if i == 0 { 3 } else { 2 });
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            let points = markers(points);
            match i {
                0 => chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled())))
                    .map(|_| ()),
                1 => chart
                    .draw_series(
                        points
                            .iter()
                            .map(|&p| TriangleMarker::new(p, 5, c.filled())),
                    )
                    .map(|_| ()),
                _ => chart
                    .draw_series(points.iter().map(|&p| Cross::new(p, 4, c.stroke_width(2))))
                    .map(|_| ()),
            }
            .map_err(err)?;
        }
        draw_markers(&mut chart, curves, 100.0)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 12))
            .draw()
            .map_err(err)?;
        Ok(())
    })?;
    Ok((loss, acc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends_and_the_extremes() {
        let mut points: Vec<(f64, f64)> = (0..200_000).map(|i| (i as f64, 1.0)).collect();
        points[12_345].1 = 9.0;
        points[54_321].1 = -3.0;
        let thinned = thin(&points, MAX_CHART_POINTS);
        assert!(thinned.len() <= MAX_CHART_POINTS, "{}", thinned.len());
        assert!(thinned.len() > MAX_CHART_POINTS - 10, "{}", thinned.len());
        assert_eq!(thinned[0], points[0]);
        assert_eq!(*thinned.last().unwrap(), points[199_999]);
        assert!(thinned.contains(&(12_345.0, 9.0)) && thinned.contains(&(54_321.0, -3.0)));
        assert!(thinned.windows(2).all(|w| w[0].0 < w[1].0), "out of order");
        let short = &points[..50];
        assert_eq!(thin(short, MAX_CHART_POINTS), short);
    }
}
