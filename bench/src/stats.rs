// SPDX-License-Identifier: Apache-2.0
//! Medians, ranges, ratios and the two report formats (markdown table, JSON).

use std::fmt::Write as _;

/// Median, minimum and maximum of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// Summarises `samples` (NaNs dropped); `None` if nothing is left.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// `a / b` of two medians, if both exist and `b` is not zero.
pub fn ratio(a: Option<Summary>, b: Option<Summary>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.median != 0.0 => Some(a.median / b.median),
        _ => None,
    }
}

/// One measured figure with its three peers.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Stable identifier for the JSON (`boot_first_instruction_ms`, ...).
    pub key: &'static str,
    /// What the table says.
    pub label: &'static str,
    pub unit: &'static str,
    pub polyvisor: Vec<f64>,
    /// The floor with the kernel objects polyvisor creates.
    pub floor_same: Vec<f64>,
    /// The floor with the in-kernel irqchip only.
    pub floor: Vec<f64>,
    /// The floor with no irqchip.
    pub floor_bare: Vec<f64>,
    pub qemu: Vec<f64>,
    /// Why a peer has no samples, if it has none.
    pub note: Option<String>,
}

impl Figure {
    pub fn new(key: &'static str, label: &'static str, unit: &'static str) -> Self {
        Self {
            key,
            label,
            unit,
            polyvisor: Vec::new(),
            floor_same: Vec::new(),
            floor: Vec::new(),
            floor_bare: Vec::new(),
            qemu: Vec::new(),
            note: None,
        }
    }
}

fn cell(s: Option<Summary>) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{} ({}–{})", num(s.median), num(s.min), num(s.max)),
        Some(s) => num(s.median),
        None => "n/a".to_string(),
    }
}

fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}×"))
}

/// The markdown table: figure, polyvisor median (min–max), then each peer's median
/// (min–max) and polyvisor's ratio to it (floor with polyvisor's objects, irqchip-only
/// floor, bare floor, qemu); then the figures' notes and `footnote`.
pub fn markdown(figures: &[Figure], footnote: Option<&str>) -> String {
    let mut out = String::new();
    out.push_str(
        "| figure | polyvisor median (min–max) | floor, same objects | polyvisor/same | floor, irqchip only | polyvisor/irqchip | bare floor | polyvisor/bare | qemu microvm | polyvisor/qemu |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for f in figures {
        let p = summarize(&f.polyvisor);
        let _ = write!(out, "| {} [{}] | {} |", f.label, f.unit, cell(p));
        for peer in [&f.floor_same, &f.floor, &f.floor_bare, &f.qemu] {
            let s = summarize(peer);
            let _ = write!(out, " {} | {} |", cell(s), ratio_cell(ratio(p, s)));
        }
        out.push('\n');
    }
    let mut notes: Vec<String> = figures
        .iter()
        .filter_map(|f| f.note.as_ref().map(|n| format!("- {}: {n}", f.label)))
        .collect();
    notes.extend(footnote.map(|n| format!("- {n}")));
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes.join("\n"));
        out.push('\n');
    }
    out
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".to_string()
    }
}

fn json_peer(samples: &[f64]) -> String {
    let s = summarize(samples);
    let list: Vec<String> = samples.iter().map(|x| json_num(*x)).collect();
    match s {
        Some(s) => format!(
            "{{\"median\": {}, \"min\": {}, \"max\": {}, \"n\": {}, \"samples\": [{}]}}",
            json_num(s.median),
            json_num(s.min),
            json_num(s.max),
            s.n,
            list.join(", ")
        ),
        None => "null".to_string(),
    }
}

fn json_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "null".to_string(), json_num)
}

/// The whole report as JSON; `meta` is a list of (key, already-encoded JSON value).
pub fn json(figures: &[Figure], meta: &[(&str, String)]) -> String {
    let mut out = String::from("{\n");
    for (k, v) in meta {
        let _ = writeln!(out, "  {}: {},", json_str(k), v);
    }
    out.push_str("  \"figures\": [\n");
    for (i, f) in figures.iter().enumerate() {
        let p = summarize(&f.polyvisor);
        let (fs, fl, fb, q) = (
            summarize(&f.floor_same),
            summarize(&f.floor),
            summarize(&f.floor_bare),
            summarize(&f.qemu),
        );
        let _ = write!(
            out,
            "    {{\"key\": {}, \"label\": {}, \"unit\": {}, \"polyvisor\": {}, \"floor_same\": {}, \"floor\": {}, \"floor_bare\": {}, \"qemu\": {}, \"ratio_polyvisor_floor_same\": {}, \"ratio_polyvisor_floor\": {}, \"ratio_polyvisor_floor_bare\": {}, \"ratio_polyvisor_qemu\": {}, \"note\": {}}}",
            json_str(f.key),
            json_str(f.label),
            json_str(f.unit),
            json_peer(&f.polyvisor),
            json_peer(&f.floor_same),
            json_peer(&f.floor),
            json_peer(&f.floor_bare),
            json_peer(&f.qemu),
            json_opt(ratio(p, fs)),
            json_opt(ratio(p, fl)),
            json_opt(ratio(p, fb)),
            json_opt(ratio(p, q)),
            f.note.as_deref().map_or_else(|| "null".to_string(), json_str),
        );
        out.push_str(if i + 1 < figures.len() { ",\n" } else { "\n" });
    }
    out.push_str("  ]\n}\n");
    out
}

/// A JSON string literal (for `meta` values).
pub fn json_string(s: &str) -> String {
    json_str(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(summarize(&[]).is_none());
        assert!(summarize(&[f64::NAN]).is_none());
    }

    #[test]
    fn ratio_needs_both_and_a_nonzero_divisor() {
        let a = summarize(&[2.0]);
        let b = summarize(&[4.0]);
        assert_eq!(ratio(a, b), Some(0.5));
        assert_eq!(ratio(a, None), None);
        assert_eq!(ratio(a, summarize(&[0.0])), None);
    }

    #[test]
    fn table_has_one_row_per_figure_and_marks_missing_peers() {
        let mut f = Figure::new("k", "boot", "ms");
        f.polyvisor = vec![2.0, 4.0, 3.0];
        f.floor = vec![1.0];
        f.note = Some("qemu did not run".into());
        let t = markdown(&[f], Some("qemu: absent"));
        assert!(t.contains("- qemu: absent"));
        assert!(t.contains(
            "| boot [ms] | 3.00 (2.00–4.00) | n/a | n/a | 1.00 | 3.00× | n/a | n/a | n/a | n/a |"
        ));
        assert!(t.contains("- boot: qemu did not run"));
    }

    #[test]
    fn json_is_well_formed_enough() {
        let mut f = Figure::new("k", "a \"b\"", "ms");
        f.polyvisor = vec![1.0, 3.0];
        let j = json(&[f], &[("runs", "2".to_string())]);
        assert!(j.contains("\"runs\": 2,"));
        assert!(j.contains("\"label\": \"a \\\"b\\\"\""));
        assert!(j.contains("\"median\": 2,"));
        assert!(j.contains("\"floor\": null"));
        assert_eq!(j.matches('{').count(), j.matches('}').count());
    }
}
