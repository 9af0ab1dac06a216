//! Reports of recorded runs: one self-contained HTML file with SVG charts
//! drawn by plotters (no scripts, no network needed to view it), as
//! `tessera report` writes it.

use crate::record::{ProcessorRow, RunDb, TaskRow, TransferRow};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;

type Chart = Result<String, Box<dyn std::error::Error>>;

/// Section ids of the charts, in order (the tests look for them).
pub const CHARTS: [&str; 8] = [
    "gantt",
    "queues",
    "memory",
    "transfers",
    "utilisation",
    "ops",
    "roofline",
    "decisions",
];

const WIDTH: u32 = 1000;
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A task that ran: (task, processor, start µs, end µs).
type Ran<'a> = (&'a TaskRow, usize, f64, f64);

/// Draws into an SVG string of `height` pixels.
fn svg(
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), Box<dyn std::error::Error>>,
) -> Chart {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(buf)
}

fn color_of(ops: &[String], op: &str) -> RGBColor {
    let i = ops.iter().position(|o| o == op).unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

/// A Gantt row's bars: start and end (µs) and the op.
type Bars = Vec<(f64, f64, String)>;

/// A Gantt chart: a row per processor and stream, a bar per task.
fn gantt(ran: &[Ran<'_>], processors: &[ProcessorRow], ops: &[String], t1: f64) -> Chart {
    // A row per processor and stream, as the trace has them.
    let mut rows: Vec<(String, Bars)> = Vec::new();
    let mut by_proc: BTreeMap<usize, BTreeMap<u32, Bars>> = BTreeMap::new();
    for (t, p, s, e) in ran {
        by_proc
            .entry(*p)
            .or_default()
            .entry(t.stream.unwrap_or(0))
            .or_default()
            .push((*s, *e, t.op.clone()));
    }
    for (p, lanes) in by_proc {
        let name = processors
            .get(p)
            .map_or_else(|| format!("p{p}"), |r| r.name.clone());
        for (i, lane) in lanes {
            let label = if i == 0 {
                name.clone()
            } else {
                format!("{name} s{i}")
            };
            rows.push((label, lane));
        }
    }
    let height = 120 + 22 * rows.len() as u32;
    let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    svg(height, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Tasks per processor and stream (colour: op)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(110)
            .build_cartesian_2d(0f64..t1 / 1e3, 0f64..rows.len() as f64)?;
        chart
            .configure_mesh()
            .x_desc("ms")
            .y_labels(2 * rows.len() + 1)
            .y_label_formatter(&|y| {
                let i = y.floor() as usize;
                if (y - i as f64 - 0.5).abs() < 0.26 {
                    labels.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .disable_y_mesh()
            .draw()?;
        for (row, (_, bars)) in rows.iter().enumerate() {
            let y = row as f64;
            chart.draw_series(bars.iter().map(|(s, e, op)| {
                Rectangle::new(
                    [
                        (s / 1e3, y + 0.1),
                        ((e / 1e3).max(s / 1e3 + t1 / 1e3 * 1e-4), y + 0.9),
                    ],
                    color_of(ops, op).filled(),
                )
            }))?;
        }
        for op in ops {
            let c = color_of(ops, op);
            chart
                .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?
                .label(op.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Lines of (x, y) series on one chart.
fn lines(caption: &str, x_desc: &str, y_desc: &str, series: &[(String, Vec<(f64, f64)>)]) -> Chart {
    let x1 = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(1e-9, f64::max);
    let y1 = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(1e-9, f64::max);
    svg(320, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x1, 0f64..y1 * 1.05)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()?;
        for (i, (name, points)) in series.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 15, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// A bar per (label, value).
fn bars(caption: &str, y_desc: &str, items: &[(String, f64)]) -> Chart {
    let y1 = items.iter().map(|i| i.1).fold(1e-12, f64::max);
    let labels: Vec<String> = items.iter().map(|i| i.0.clone()).collect();
    svg(300, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..items.len().max(1) as f64, 0f64..y1 * 1.1)?;
        chart
            .configure_mesh()
            .y_desc(y_desc)
            .x_labels(items.len().max(1) * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 0.26 {
                    labels.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .disable_x_mesh()
            .draw()?;
        chart.draw_series(items.iter().enumerate().map(|(i, (_, v))| {
            Rectangle::new(
                [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, *v)],
                PALETTE[i % PALETTE.len()].filled(),
            )
        }))?;
        Ok(())
    })
}

/// Rooflines (peak compute, and copy bandwidth into the processor's
/// memory against arithmetic intensity) with each op placed at its
/// achieved rate.
fn roofline(ran: &[Ran<'_>], processors: &[ProcessorRow]) -> Chart {
    // Per (processor, op): flops, bytes, seconds.
    let mut points: BTreeMap<(usize, String), (f64, f64, f64)> = BTreeMap::new();
    for (t, p, s, e) in ran {
        if t.flops <= 0.0 {
            continue;
        }
        let entry = points.entry((*p, t.op.clone())).or_default();
        entry.0 += t.flops;
        entry.1 += (t.bytes_read + t.bytes_written) as f64;
        entry.2 += (e - s) / 1e6;
    }
    let peak = processors
        .iter()
        .map(|p| p.gflops_f64.max(p.gflops_f32))
        .fold(1.0, f64::max);
    svg(400, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Roofline per processor kind (points: ops at their achieved GFLOP/s)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (0.01f64..1e4).log_scale(),
                (0.01f64..peak * 4.0).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("flops per byte moved")
            .y_desc("GFLOP/s")
            .draw()?;
        // One roof per processor kind (processors of a kind share it).
        let mut kinds: BTreeMap<String, &ProcessorRow> = BTreeMap::new();
        for p in processors {
            kinds.entry(p.kind.clone()).or_insert(p);
        }
        for (i, (kind, p)) in kinds.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            let top = p.gflops_f64.max(p.gflops_f32);
            // Host memory has no copy: use 20 GB/s for the slope there.
            let bw = if p.bandwidth > 0.0 {
                p.bandwidth / 1e9
            } else {
                20.0
            };
            let roof: Vec<(f64, f64)> = (0..=60)
                .map(|k| 10f64.powf(-2.0 + k as f64 / 10.0))
                .map(|ai| (ai, (bw * ai).min(top)))
                .collect();
            chart
                .draw_series(LineSeries::new(roof, c.stroke_width(2)))?
                .label(format!("{kind} ({top:.0} GFLOP/s, {bw:.0} GB/s)"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 15, y)], c.stroke_width(2))
                });
            let kind_points: Vec<(f64, f64, String)> = points
                .iter()
                .filter(|((proc_id, _), _)| {
                    processors.get(*proc_id).is_some_and(|q| q.kind == *kind)
                })
                .filter(|(_, (_, bytes, secs))| *bytes > 0.0 && *secs > 0.0)
                .map(|((_, op), (f, b, secs))| {
                    (
                        (f / b).clamp(0.011, 9e3),
                        (f / secs / 1e9).max(0.011),
                        op.clone(),
                    )
                })
                .collect();
            chart.draw_series(kind_points.iter().map(|(x, y, op)| {
                EmptyElement::at((*x, *y))
                    + Circle::new((0, 0), 4, c.filled())
                    + Text::new(op.clone(), (6, -6), ("sans-serif", 12))
            }))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Bytes copied per link over time, in buckets.
fn transfer_series(transfers: &[TransferRow], t1: f64) -> Vec<(String, Vec<(f64, f64)>)> {
    let buckets = 60usize;
    let width = t1.max(1.0) / buckets as f64;
    let mut by_link: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for c in transfers {
        let b = ((c.start_us / width) as usize).min(buckets - 1);
        by_link
            .entry(format!("{} → {}", c.src, c.dst))
            .or_insert_with(|| vec![0.0; buckets])[b] += c.bytes as f64 / 1e6;
    }
    by_link
        .into_iter()
        .map(|(k, v)| {
            let pts = v
                .into_iter()
                .enumerate()
                .map(|(i, mb)| ((i as f64 + 0.5) * width / 1e3, mb))
                .collect();
            (k, pts)
        })
        .collect()
}

/// The report's HTML; an error for a run with no completed task.
pub fn render(db: &RunDb) -> Result<String, Box<dyn std::error::Error>> {
    let processors = db.processors()?;
    let tasks = db.tasks()?;
    let ran: Vec<Ran<'_>> = tasks
        .iter()
        .filter(|t| t.status == "done")
        .filter_map(|t| Some((t, t.processor?, t.started_us?, t.finished_us?)))
        .collect();
    if ran.is_empty() {
        return Err("the run has no completed tasks: nothing to report".into());
    }
    let t1 = ran.iter().map(|r| r.3).fold(0.0, f64::max);
    let span = t1 - ran.iter().map(|r| r.2).fold(f64::INFINITY, f64::min);
    let mut ops: Vec<String> = ran.iter().map(|r| r.0.op.clone()).collect();
    ops.sort();
    ops.dedup();
    let transfers = db.transfers()?;
    let mut memory: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (t, space, used, _) in db.memory()? {
        memory
            .entry(space)
            .or_default()
            .push((t / 1e3, used as f64 / 1e6));
    }
    let memory: Vec<(String, Vec<(f64, f64)>)> = memory.into_iter().collect();
    let mut busy = vec![0.0f64; processors.len()];
    for (_, p, s, e) in &ran {
        if let Some(b) = busy.get_mut(*p) {
            *b += e - s;
        }
    }
    let utilisation: Vec<(String, f64)> = processors
        .iter()
        .zip(&busy)
        .map(|(p, b)| (p.name.clone(), b / span.max(1e-9)))
        .collect();
    let mut per_op: BTreeMap<String, f64> = BTreeMap::new();
    for (t, _, s, e) in &ran {
        *per_op.entry(t.op.clone()).or_default() += (e - s) / 1e6;
    }
    let per_op: Vec<(String, f64)> = per_op.into_iter().collect();
    let decisions = db.decisions()?;
    let mut modes: BTreeMap<String, (f64, f64, u64)> = BTreeMap::new();
    for (_, mode, _, secs, fell_back) in &decisions {
        let m = modes.entry(mode.clone()).or_default();
        m.0 += 1.0;
        m.1 += secs;
        m.2 += u64::from(*fell_back);
    }

    // Ready tasks, and tasks queued on all processors together.
    let mut queued: BTreeMap<u64, (f64, f64, f64)> = BTreeMap::new();
    for (t, name, n) in db.queues()? {
        let e = queued.entry(t.to_bits()).or_insert((t / 1e3, 0.0, 0.0));
        if name == "ready" {
            e.1 = n as f64;
        } else {
            e.2 += n as f64;
        }
    }
    let mut queue_points: Vec<(f64, f64, f64)> = queued.into_values().collect();
    queue_points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let queue_series = vec![
        (
            "ready".to_string(),
            queue_points.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
        ),
        (
            "queued on processors".to_string(),
            queue_points.iter().map(|p| (p.0, p.2)).collect(),
        ),
    ];
    let mut charts: Vec<(&str, String, String)> = vec![
        ("gantt", "Gantt".into(), gantt(&ran, &processors, &ops, t1)?),
        (
            "queues",
            "Queues".into(),
            if queue_points.is_empty() {
                String::new()
            } else {
                lines(
                    "Ready tasks and tasks queued on processors",
                    "ms",
                    "tasks",
                    &queue_series,
                )?
            },
        ),
        (
            "memory",
            "Memory per tier".into(),
            if memory.is_empty() {
                String::new()
            } else {
                lines("Memory in use per space", "ms", "MB", &memory)?
            },
        ),
        (
            "transfers",
            "Transfers".into(),
            if transfers.is_empty() {
                String::new()
            } else {
                lines(
                    "Bytes copied per link (MB per bucket)",
                    "ms",
                    "MB",
                    &transfer_series(&transfers, t1),
                )?
            },
        ),
        (
            "utilisation",
            "Utilisation".into(),
            bars(
                "Busy share of the run per processor",
                "busy / span",
                &utilisation,
            )?,
        ),
        (
            "ops",
            "Time per op".into(),
            bars("Time per op (seconds, all processors)", "s", &per_op)?,
        ),
        ("roofline", "Roofline".into(), roofline(&ran, &processors)?),
    ];
    let latency: Vec<(String, f64)> = modes
        .iter()
        .map(|(m, (n, secs, _))| (m.clone(), secs / n * 1e3))
        .collect();
    charts.push((
        "decisions",
        "Scheduler decisions".into(),
        if latency.is_empty() {
            String::new()
        } else {
            bars("Mean time per window decision by mode (ms)", "ms", &latency)?
        },
    ));
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Tessera run report</title>\
         <style>body{font-family:sans-serif;margin:24px;max-width:1040px}table{border-collapse:collapse}\
         td,th{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}\
         td:first-child,th:first-child{text-align:left}section{margin:28px 0}</style></head><body>\n",
    );
    let _ = writeln!(html, "<h1>Tessera run report</h1>");
    let _ = writeln!(
        html,
        "<p>{} tasks completed, {} failed, over {:.3} ms on {} processors; {} copies ({:.1} MB); {} window decisions. Tessera {}.</p>",
        ran.len(),
        tasks.iter().filter(|t| t.status != "done").count(),
        span / 1e3,
        processors.len(),
        transfers.len(),
        transfers.iter().map(|c| c.bytes).sum::<u64>() as f64 / 1e6,
        decisions.len(),
        db.meta("tessera_version").unwrap_or_default(),
    );
    let _ = writeln!(
        html,
        "<table><tr><th>op</th><th>tasks</th><th>seconds</th><th>GFLOP/s</th></tr>"
    );
    for (op, secs) in &per_op {
        let (n, flops) = ran
            .iter()
            .filter(|r| r.0.op == *op)
            .fold((0, 0.0), |(n, f), r| (n + 1, f + r.0.flops));
        let _ = writeln!(
            html,
            "<tr><td>{op}</td><td>{n}</td><td>{secs:.4}</td><td>{:.1}</td></tr>",
            flops / secs.max(1e-12) / 1e9
        );
    }
    let _ = writeln!(html, "</table>");
    if !modes.is_empty() {
        let _ = writeln!(
            html,
            "<table><tr><th>mode</th><th>windows</th><th>mean ms</th><th>fell back</th></tr>"
        );
        for (m, (n, secs, fb)) in &modes {
            let _ = writeln!(
                html,
                "<tr><td>{m}</td><td>{n}</td><td>{:.3}</td><td>{fb}</td></tr>",
                secs / n * 1e3
            );
        }
        let _ = writeln!(html, "</table>");
    }
    for (id, title, svg) in charts {
        let body = if svg.is_empty() {
            "<p>None recorded in this run (window decisions come from the milp and metaheuristic policies).</p>".to_string()
        } else {
            svg
        };
        let _ = writeln!(
            html,
            "<section id=\"{id}\" class=\"chart\"><h2>{title}</h2>\n{body}</section>"
        );
    }
    html.push_str("</body></html>\n");
    Ok(html)
}
