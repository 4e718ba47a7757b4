//! Plain-text rendering shared by the reports: aligned label/value lines and column grids, for an
//! operator reading a terminal (no colour, no box drawing, stable for diffs and logs).

use std::fmt::Write as _;

/// A byte count with its human form in IEC units (the tool's own output): `3751936 (3664.0 KiB)`.
pub(crate) fn bytes(n: u64) -> String {
    if n < 1024 {
        return format!("{n} B");
    }
    format!("{n} ({})", crate::units::human_bytes(n))
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

    /// Byte counts carry their IEC form from 1 KiB on.
    #[test]
    fn byte_counts_in_iec_units() {
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(3_751_936), "3751936 (3664.0 KiB)");
        assert_eq!(bytes(1_362_006_016), "1362006016 (1298.9 MiB)");
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
