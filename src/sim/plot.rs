//! `ringsync sim --plot FILE.svg`: cycles to convergence against N for the
//! three schedules, drawn as a hand-written SVG (no plotting crate).
//!
//! Both axes are logarithmic: successor grows like N and the others like
//! log N, so on a linear axis everything but successor would sit on the
//! floor. Two reference lines: ceil(log2 N), the fewest cycles any schedule
//! can take when each node makes one push a cycle (the informed set at most
//! doubles), and log3 N, where push-pull starts (Karp et al. 2000: log3 N +
//! O(log log N) rounds), since a pull lets the set grow faster than doubling.

use std::fmt::Write as _;

use super::cli::{apply_realism, crashed_positions, cycle_limit, SimOptions};
use super::report::{self, Summary};
use super::{run as run_one, Scenario};
use crate::core::schedule::log2_ceil;
use crate::core::Schedule;

/// The ring sizes a sweep up to `max` visits: powers of two from 2, and
/// `max` itself.
pub fn sweep_sizes(max: u32) -> Vec<u32> {
    let mut out: Vec<u32> = std::iter::successors(Some(2u32), |n| n.checked_mul(2))
        .take_while(|&n| n < max)
        .collect();
    out.push(max.max(2));
    out
}

/// Runs every schedule (or the chosen one) at each size of
/// [`sweep_sizes`]`(opts.nodes)`, `opts.runs` runs each, seeds as `sim`.
pub fn sweep(opts: &SimOptions) -> Vec<Summary> {
    let schedules: Vec<Schedule> = match opts.schedule {
        Some(s) => vec![s],
        None => Schedule::ALL.to_vec(),
    };
    let mut out = Vec::new();
    for n in sweep_sizes(opts.nodes) {
        let crash = opts.crash.min(n.saturating_sub(2));
        let crashed = crashed_positions(n, crash);
        for &schedule in &schedules {
            let mut sc = Scenario::new(n, schedule);
            sc.writes = opts.writes;
            sc.writers = opts.writers.min(n - crash);
            sc.loss = opts.loss;
            sc.crashed = crashed.clone();
            sc.max_cycles = cycle_limit(schedule, n, opts.loss);
            apply_realism(opts, &mut sc);
            let outcomes: Vec<_> = (0..u64::from(opts.runs))
                .map(|k| run_one(&sc, opts.seed.wrapping_add(k)))
                .collect();
            out.push(report::summarize(schedule, n, &outcomes));
        }
    }
    out
}

/// Runs the sweep, writes the chart to `path`, and returns the table to print.
pub fn run(opts: &SimOptions, path: &std::path::Path) -> Result<String, String> {
    if opts.runs == 0 || opts.writes == 0 || opts.writers == 0 {
        return Err("--plot needs at least one run, one write and one writer".into());
    }
    if opts.nodes > 4096 {
        return Err(format!(
            "--plot sweeps up to --nodes {}: successor alone would take hours; use at most 4096",
            opts.nodes
        ));
    }
    let rows = sweep(opts);
    let title = format!(
        "Cycles to convergence (simulator: {} writes from {} writers, mean of {} runs)",
        opts.writes, opts.writers, opts.runs
    );
    std::fs::write(path, svg(&title, &rows))
        .map_err(|e| format!("cannot write the chart to {}: {e}", path.display()))?;
    let mut s = report::table(&rows);
    s.push_str(&format!("chart written to {}\n", path.display()));
    Ok(s)
}

/// Colour of each schedule's line: a colour-blind-safe trio (Okabe and Ito
/// 2008), as in most journals' guidelines.
fn colour(schedule: &str) -> &'static str {
    match schedule {
        "successor" => "#0072B2",
        "doubling" => "#009E73",
        "random" => "#D55E00",
        _ => "#555555",
    }
}

/// Chart geometry, in SVG user units.
const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 56.0;

/// Maps log-scaled data onto the plot area.
struct Axes {
    x: (f64, f64),
    y: (f64, f64),
}

impl Axes {
    fn px(&self, n: f64) -> f64 {
        let t = (n.ln() - self.x.0.ln()) / (self.x.1.ln() - self.x.0.ln());
        LEFT + t * (WIDTH - LEFT - RIGHT)
    }
    fn py(&self, c: f64) -> f64 {
        let t = (c.ln() - self.y.0.ln()) / (self.y.1.ln() - self.y.0.ln());
        HEIGHT - BOTTOM - t * (HEIGHT - TOP - BOTTOM)
    }
}

/// The chart of `rows` (one [`Summary`] per schedule and size) as SVG.
pub fn svg(title: &str, rows: &[Summary]) -> String {
    let max_n = rows.iter().map(|r| r.nodes).max().unwrap_or(2).max(4);
    let max_c = rows
        .iter()
        .map(|r| r.cycles_mean)
        .fold(f64::from(log2_ceil(max_n)), f64::max);
    // x from 2 to the next power of two at or above the largest N; y from 1
    // to the next 1-2-5 step above the largest mean.
    let x_hi = f64::from(max_n.next_power_of_two());
    let y_ticks = one_two_five(max_c);
    let y_hi = y_ticks.last().copied().unwrap_or(10.0);
    let ax = Axes {
        x: (2.0, x_hi),
        y: (1.0, y_hi),
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Grid and ticks.
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
    let mut n = 2u32;
    while f64::from(n) <= x_hi {
        let x = ax.px(f64::from(n));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#e4e4e4"/><line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{:.1}" stroke="black"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{n}</text>"##,
            y1 + 5.0,
            y1 + 20.0
        );
        n *= 2;
    }
    for &c in &y_ticks {
        let y = ax.py(c);
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#e4e4e4"/><line x1="{:.1}" y1="{y:.1}" x2="{x0}" y2="{y:.1}" stroke="black"/><text x="{:.1}" y="{:.1}" text-anchor="end">{c}</text>"##,
            x0 - 5.0,
            x0 - 8.0,
            y + 4.5
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        x1 - x0,
        y1 - y0
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">nodes N (log scale)</text>"#,
        (x0 + x1) / 2.0,
        HEIGHT - 14.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">cycles to convergence (log scale)</text>"#,
        (y0 + y1) / 2.0
    );
    // Reference lines, over every N on the axis (ceil(log2 N) is a staircase).
    let mut bound = String::new();
    let mut log3 = String::new();
    let mut prev: Option<f64> = None;
    let steps = 400;
    for i in 0..=steps {
        let n = 2f64 * (x_hi / 2.0).powf(f64::from(i) / f64::from(steps));
        let b = f64::from(log2_ceil(n.ceil() as u32));
        let (x, y) = (ax.px(n), ax.py(b));
        if let Some(py) = prev.filter(|&p| (p - y).abs() > 0.01) {
            let _ = write!(bound, " L{x:.1},{py:.1}");
        }
        let _ = write!(bound, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" });
        prev = Some(y);
        let l3 = n.ln() / 3f64.ln();
        if l3 >= 1.0 {
            let cmd = if log3.is_empty() { "M" } else { " L" };
            let _ = write!(log3, "{cmd}{x:.1},{:.1}", ax.py(l3));
        }
    }
    let _ = writeln!(
        s,
        r#"<path d="{bound}" fill="none" stroke="black" stroke-width="1.5" stroke-dasharray="6 4"/>"#
    );
    let _ = writeln!(
        s,
        r##"<path d="{log3}" fill="none" stroke="#777777" stroke-width="1.2" stroke-dasharray="2 3"/>"##
    );
    // One line and markers per schedule.
    let mut names: Vec<&str> = Vec::new();
    for r in rows {
        if !names.contains(&r.schedule.as_str()) {
            names.push(&r.schedule);
        }
    }
    for name in &names {
        let mut pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.schedule == *name && r.cycles_mean > 0.0)
            .map(|r| (ax.px(f64::from(r.nodes)), ax.py(r.cycles_mean.max(1.0))))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let d: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let col = colour(name);
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{col}" stroke-width="2.2"/>"#,
            d.join(" ")
        );
        for (x, y) in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.6" fill="{col}"/>"#
            );
        }
    }
    // Legend, top left: the corner the curves leave empty.
    let (lx, mut ly) = (x0 + 14.0, y0 + 16.0);
    let entries: Vec<(String, &str, &str)> = names
        .iter()
        .map(|n| (legend_name(n).to_string(), colour(n), ""))
        .chain([
            (
                "ceil(log\u{2082} N): fewest cycles with one push per node".to_string(),
                "black",
                "6 4",
            ),
            (
                "log\u{2083} N: push-pull (Karp et al. 2000)".to_string(),
                "#777777",
                "2 3",
            ),
        ])
        .collect();
    let box_h = 20.0 * entries.len() as f64 + 8.0;
    let _ = writeln!(
        s,
        r##"<rect x="{:.1}" y="{:.1}" width="352" height="{box_h:.1}" fill="white" fill-opacity="0.9" stroke="#bbbbbb"/>"##,
        lx - 8.0,
        ly - 12.0
    );
    for (label, col, dash) in entries {
        let dash_attr = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{col}" stroke-width="2"{dash_attr}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 28.0,
            lx + 36.0,
            ly + 4.5,
            escape(&label)
        );
        ly += 20.0;
    }
    s.push_str("</svg>\n");
    s
}

fn legend_name(schedule: &str) -> &str {
    match schedule {
        "successor" => "successor (bound N-1)",
        "doubling" => "doubling (bound ceil(log\u{2082} N))",
        "random" => "random push-pull",
        other => other,
    }
}

/// Ticks 1, 2, 5, 10, 20, 50, ... up to the first at or above `max`.
fn one_two_five(max: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut decade = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            let t = m * decade;
            out.push(t);
            if t >= max {
                return out;
            }
        }
        decade *= 10.0;
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_powers_of_two_then_the_maximum() {
        assert_eq!(sweep_sizes(16), vec![2, 4, 8, 16]);
        assert_eq!(sweep_sizes(1000)[..3], [2, 4, 8]);
        assert_eq!(sweep_sizes(1000).last(), Some(&1000));
        assert_eq!(sweep_sizes(2), vec![2]);
    }

    #[test]
    fn the_chart_is_one_svg_with_a_line_per_schedule() {
        let opts = SimOptions {
            runs: 1,
            writes: 4,
            writers: 4,
            ..SimOptions::new(8)
        };
        let rows = sweep(&opts);
        assert_eq!(rows.len(), 9);
        let s = svg("t <&>", &rows);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 3);
        assert!(s.contains("t &lt;&amp;&gt;"));
    }
}
