//! The lookup-time curve as an SVG plot.

use std::fmt::Write as _;

use crate::out::human;

/// Nanoseconds per lookup of each table at one table size.
pub type Curve = (usize, Vec<(String, f64)>);

/// Lookup time against table size, one line per table, log-log axes.
pub fn svg(curve: &[Curve], names: &[&str]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 440.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 190.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 50.0;
    const COLORS: [&str; 8] = [
        "#444444", "#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
    ];
    let sizes: Vec<f64> = curve.iter().map(|(s, _)| (*s as f64).log10()).collect();
    let all: Vec<f64> = curve
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, ns)| ns.log10()))
        .collect();
    let (x0, x1) = (sizes[0], sizes[sizes.len() - 1].max(sizes[0] + 1.0));
    let y0 = all.iter().copied().fold(f64::MAX, f64::min).floor();
    let y1 = all
        .iter()
        .copied()
        .fold(f64::MIN, f64::max)
        .ceil()
        .max(y0 + 1.0);
    let x = |v: f64| LEFT + (v - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let y = |v: f64| H - BOTTOM - (v - y0) / (y1 - y0) * (H - TOP - BOTTOM);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="14">pcbhash: exact-hit lookup time against table size (1 thread, random order)</text>"#
    );
    for (size, log) in curve.iter().map(|(s, _)| *s).zip(&sizes) {
        let px = x(*log);
        let _ = writeln!(
            out,
            r##"<line x1="{px}" y1="{TOP}" x2="{px}" y2="{}" stroke="#ddd"/><text x="{px}" y="{}" text-anchor="middle">{}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 18.0,
            human(size)
        );
    }
    let mut decade = y0;
    while decade <= y1 {
        let py = y(decade);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py}" x2="{}" y2="{py}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{} ns</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            10f64.powf(decade)
        );
        decade += 1.0;
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">entries (log scale)</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 12.0
    );
    for (i, name) in names.iter().enumerate() {
        let points: Vec<String> = curve
            .iter()
            .zip(&sizes)
            .filter_map(|((_, p), sx)| {
                p.iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, ns)| format!("{:.1},{:.1}", x(*sx), y(ns.log10())))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let color = COLORS[i % COLORS.len()];
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            points.join(" ")
        );
        let ly = TOP + 10.0 + i as f64 * 18.0;
        let _ = writeln!(
            out,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            W - RIGHT + 12.0,
            W - RIGHT + 32.0,
            W - RIGHT + 38.0,
            ly + 4.0,
            name.replace('<', "&lt;").replace('>', "&gt;")
        );
    }
    out.push_str("</svg>\n");
    out
}
