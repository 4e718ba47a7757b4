//! Plain-text rendering shared by the reports: aligned label/value lines and column grids, for an
//! operator reading a terminal (no colour, no box drawing, stable for diffs and logs).

use std::fmt::Write as _;

/// Formats a size like go-humanize's `Bytes` (powers of 1000), as etcdutl's table shows it.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn human_bytes(n: i64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    let sizes = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let f = n as f64;
    let (mut e, mut m) = (0, n);
    while m >= 1000 && e + 1 < sizes.len() {
        (e, m) = (e + 1, m / 1000);
    }
    let val = (f / 1000f64.powi(i32::try_from(e).unwrap_or(0)) * 10.0 + 0.5).floor() / 10.0;
    let suffix = sizes[e];
    if val < 10.0 {
        format!("{val:.1} {suffix}")
    } else {
        format!("{val:.0} {suffix}")
    }
}

/// A byte count with its human form: `3751936 (3.8 MB)`.
pub(crate) fn bytes(n: u64) -> String {
    if n < 1000 {
        return format!("{n} B");
    }
    format!("{n} ({})", human_bytes(i64::try_from(n).unwrap_or(i64::MAX)))
}

/// Label/value lines with the labels padded to one width.
pub(crate) fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (label, value) in rows {
        let _ = writeln!(out, "{label:<width$}  {value}");
    }
    out
}

/// A grid of columns separated by two spaces; columns marked in `right` are right-aligned.
pub(crate) fn grid(head: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = head.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                let _ = write!(line, "{cell:>w$}");
            } else {
                let _ = write!(line, "{cell:<w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes are printed like go-humanize does for etcdutl's table.
    #[test]
    fn humanizes_sizes_like_go() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(1_362_006_016), "1.4 GB");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(bytes(3_751_936), "3751936 (3.8 MB)");
    }

    /// Grids align columns, numbers to the right, with no trailing spaces.
    #[test]
    fn grid_aligns_columns() {
        let rows = vec![
            vec!["pods".to_string(), "12".to_string()],
            vec!["configmaps".to_string(), "3".to_string()],
        ];
        assert_eq!(
            grid(&["RESOURCE", "KEYS"], &rows, &[false, true]),
            "RESOURCE    KEYS\npods          12\nconfigmaps     3\n"
        );
        assert_eq!(
            fields(&[("A", "1".into()), ("LONGER", "2".into())]),
            "A       1\nLONGER  2\n"
        );
    }
}
