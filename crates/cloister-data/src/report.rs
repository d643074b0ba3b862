//! A profile shown two ways: a plain-text table for the terminal, and a self-contained HTML
//! page (inline CSS and SVG bar charts; no script, no fonts or images fetched). Every piece of
//! data in the page is escaped as HTML text.

use std::fmt::Write as _;

use crate::profile::{ColumnProfile, Profile, TopValue};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() >= 1e6 || (value != 0.0 && value.abs() < 1e-3) {
        format!("{value:.3e}")
    } else {
        format!("{value:.4}")
    }
}

fn distinct(column: &ColumnProfile) -> String {
    if column.distinct_exact {
        column.distinct.to_string()
    } else {
        format!("≈{}", column.distinct)
    }
}

fn flags(column: &ColumnProfile) -> String {
    let mut flags: Vec<String> = Vec::new();
    if column.identifier {
        flags.push("identifier".into());
    }
    for finding in &column.pii {
        flags.push(format!("{} ({})", finding.kind.label(), finding.values));
    }
    flags.join(", ")
}

/// Shortens a value for a table cell, with control characters shown as spaces.
fn cell(text: &str, width: usize) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut chars = clean.chars();
    let head: String = chars.by_ref().take(width).collect();
    if chars.next().is_some() { format!("{head}…") } else { head }
}

/// The profile as a terminal table, then each column's most frequent values.
pub fn render_table(profile: &Profile) -> String {
    let header = ["column", "type", "missing", "distinct", "min", "max", "mean", "stddev", "flags"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for column in &profile.columns {
        let stats = |f: fn(&crate::profile::Numbers) -> f64| {
            column.numbers.as_ref().map_or_else(String::new, |numbers| number(f(numbers)))
        };
        rows.push(vec![
            cell(&column.name, 24),
            column.ty.to_string(),
            column.missing.to_string(),
            distinct(column),
            stats(|n| n.min),
            stats(|n| n.max),
            stats(|n| n.mean),
            stats(|n| n.stddev),
            flags(column),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|index| {
            rows.iter()
                .map(|row| row.get(index).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!(
        "{:?} data set: {} rows, {} rejected at ingest\n\n",
        profile.kind, profile.rows, profile.rejected
    );
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(text, width)| format!("{text}{}", " ".repeat(width - text.chars().count())))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for column in &profile.columns {
        if column.top.is_empty() {
            continue;
        }
        let values: Vec<String> = column
            .top
            .iter()
            .take(5)
            .map(|top| format!("{} ({})", cell(&top.value, 24), top.count))
            .collect();
        let exact = if column.top_exact { "" } else { " (approximate)" };
        let _ =
            writeln!(out, "\n{}: top values{exact}: {}", cell(&column.name, 24), values.join(", "));
    }
    out
}

const CHART_WIDTH: f64 = 420.0;
const BAR_HEIGHT: f64 = 16.0;

/// A horizontal bar chart of labelled counts, as inline SVG.
fn bar_chart(bars: &[(String, u64)]) -> String {
    let label_width = 160.0;
    let most = bars.iter().map(|(_, count)| *count).max().unwrap_or(0).max(1) as f64;
    let height = BAR_HEIGHT * bars.len() as f64 + 4.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\">",
        label_width + CHART_WIDTH + 60.0
    );
    for (index, (label, count)) in bars.iter().enumerate() {
        let y = index as f64 * BAR_HEIGHT + 2.0;
        let width = (*count as f64 / most * CHART_WIDTH).max(if *count > 0 { 1.0 } else { 0.0 });
        let _ = write!(
            svg,
            "<text x=\"{x}\" y=\"{ty}\" text-anchor=\"end\">{label}</text>\
             <rect x=\"{bx}\" y=\"{y}\" width=\"{width:.1}\" height=\"{h}\"/>\
             <text x=\"{cx:.1}\" y=\"{ty}\">{count}</text>",
            x = label_width - 4.0,
            ty = y + BAR_HEIGHT - 4.0,
            label = escape_html(&cell(label, 22)),
            bx = label_width,
            h = BAR_HEIGHT - 3.0,
            cx = label_width + width + 4.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

fn top_bars(top: &[TopValue]) -> Vec<(String, u64)> {
    top.iter().map(|top| (top.value.clone(), top.count)).collect()
}

/// The profile as a self-contained HTML page.
pub fn render_html(profile: &Profile, title: &str) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
    );
    let _ = write!(
        html,
        "<title>Profile of {}</title><style>\
         body{{font-family:sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}\
         th{{background:#eee}}.flag{{color:#a40000;font-weight:bold}}\
         svg text{{font-size:11px;fill:#222}}svg rect{{fill:#4a78b5}}section{{margin:1.5em 0}}\
         </style></head><body><h1>Profile of {}</h1><p>{:?} data set: {} rows, {} rejected at ingest.</p>",
        escape_html(title),
        escape_html(title),
        profile.kind,
        profile.rows,
        profile.rejected
    );
    html.push_str(
        "<table><tr><th>column</th><th>type</th><th>missing</th><th>distinct</th><th>min</th>\
         <th>max</th><th>mean</th><th>stddev</th><th>flags</th></tr>",
    );
    for column in &profile.columns {
        let stat = |f: fn(&crate::profile::Numbers) -> f64| {
            column.numbers.as_ref().map_or_else(String::new, |numbers| number(f(numbers)))
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td class=\"flag\">{}</td></tr>",
            escape_html(&column.name),
            column.ty,
            column.missing,
            escape_html(&distinct(column)),
            stat(|n| n.min),
            stat(|n| n.max),
            stat(|n| n.mean),
            stat(|n| n.stddev),
            escape_html(&flags(column)),
        );
    }
    html.push_str("</table>");
    for column in &profile.columns {
        let _ = write!(html, "<section><h2>{}</h2>", escape_html(&column.name));
        if let Some(numbers) = &column.numbers {
            html.push_str("<p>Histogram</p>");
            let bars: Vec<(String, u64)> = numbers
                .histogram
                .iter()
                .map(|bucket| {
                    (format!("{} – {}", number(bucket.low), number(bucket.high)), bucket.count)
                })
                .collect();
            html.push_str(&bar_chart(&bars));
        }
        if !column.top.is_empty() {
            let exact = if column.top_exact { "" } else { " (approximate counts)" };
            let _ = write!(html, "<p>Most frequent values{exact}</p>");
            html.push_str(&bar_chart(&top_bars(&column.top)));
        }
        html.push_str("</section>");
    }
    html.push_str("</body></html>\n");
    html
}
