//! Sizes as people read them, chosen once for the whole tool.
//!
//! The tool's own output uses IEC units (powers of 1024: KiB, MiB, GiB), as `df -h` and
//! `du -h` do, because disk space and page sizes are counted in them. [`si_bytes`] exists only
//! for output that mirrors etcdutl's (`snapshot status -w table|simple`), which prints sizes
//! with go-humanize in SI units (powers of 1000: kB, MB); nothing else should use it.

/// A size in IEC units, with at least ten of a unit before the next one (four significant
/// digits): `512 B`, `1.5 KiB`, `3072.0 KiB`, `20.0 MiB`, `74.4 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n;
    let mut unit = 0;
    while v >= 1024 * 10 && unit < UNITS.len() - 1 {
        v /= 1024;
        unit += 1;
    }
    if unit == 0 && n >= 1024 {
        return format!(
            "{:.1} KiB",
            f64::from(u32::try_from(n).unwrap_or(u32::MAX)) / 1024.0
        );
    }
    if unit == 0 {
        return format!("{n} B");
    }
    let exact = n >> (10 * unit);
    let frac = (n >> (10 * (unit - 1))) & 1023;
    format!("{exact}.{} {}", frac * 10 / 1024, UNITS[unit])
}

/// A size in SI units exactly as go-humanize's `Bytes` prints it (powers of 1000, one decimal
/// below ten: `5 B`, `2.6 kB`, `20 kB`, `1.4 GB`). Only for tables that mirror etcdutl's.
#[allow(clippy::cast_precision_loss)] // sizes below 2^53 bytes are exact; above, a rounding is fine
pub fn si_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    let sizes = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let (mut e, mut m) = (0, n);
    while m >= 1000 && e + 1 < sizes.len() {
        (e, m) = (e + 1, m / 1000);
    }
    let scaled = n as f64 / 1000f64.powi(i32::try_from(e).unwrap_or(0));
    let val = (scaled * 10.0 + 0.5).floor() / 10.0;
    let suffix = sizes[e];
    if val < 10.0 {
        format!("{val:.1} {suffix}")
    } else {
        format!("{val:.0} {suffix}")
    }
}

/// The longest duration any flag takes: 100 years (`36500d`). Anything
/// longer is a typo, and would overflow a clock's arithmetic.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(36_500 * 86_400);

/// Parses a Go-style duration such as `2s`, `500ms`, `1m30s`; refuses one
/// longer than [`MAX_DURATION`] rather than overflowing.
pub fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    let mut total = std::time::Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        anyhow::bail!("empty duration");
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(n);
        let u = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(u);
        let v: f64 = num.parse().map_err(|_| anyhow::anyhow!("bad duration {s:?}"))?;
        let secs = match unit {
            "ms" => v / 1000.0,
            "s" | "" => v,
            "m" => v * 60.0,
            "h" => v * 3600.0,
            "d" => v * 86_400.0,
            _ => anyhow::bail!("bad duration unit {unit:?} in {s:?} (use ms, s, m, h or d)"),
        };
        let max = MAX_DURATION.as_secs_f64();
        if !secs.is_finite() || secs > max || total.as_secs_f64() + secs > max {
            anyhow::bail!("duration {s:?} is too long: at most 36500d (100 years)");
        }
        total += std::time::Duration::from_secs_f64(secs);
        rest = tail;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A duration too long for a clock is an error, never a panic.
    #[test]
    fn huge_durations_are_refused() {
        for s in [
            "18446744073709551615s",
            "99999999999999999999999999999h",
            "36501d",
            "36500d1s",
        ] {
            let e = parse_duration(s).expect_err(s);
            assert!(e.to_string().contains("too long"), "{s}: {e}");
        }
        assert_eq!(parse_duration("36500d").unwrap(), MAX_DURATION);
    }

    /// IEC sizes keep four significant digits and never round up into a wrong unit.
    #[test]
    fn iec_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3072.0 KiB");
        assert_eq!(human_bytes(20 * 1024 * 1024), "20.0 MiB");
        assert_eq!(human_bytes(3_751_936), "3664.0 KiB");
        assert_eq!(human_bytes(79_963_996_160), "74.4 GiB");
    }

    /// SI sizes are go-humanize's, as etcdutl's status table prints them.
    #[test]
    fn si_sizes_like_go_humanize() {
        assert_eq!(si_bytes(5), "5 B");
        assert_eq!(si_bytes(999), "999 B");
        assert_eq!(si_bytes(2560), "2.6 kB");
        assert_eq!(si_bytes(20480), "20 kB");
        assert_eq!(si_bytes(1_234_567), "1.2 MB");
        assert_eq!(si_bytes(1_362_006_016), "1.4 GB");
    }
}
