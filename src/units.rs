//! Sizes as the tool prints them: IEC units (KiB, MiB) everywhere the tool
//! speaks for itself.

/// Bytes as people read them: `512 B`, `1.5 KiB`, `74.2 GiB`.
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
