//! Presentation helpers: sizes and names as people and file names want them.

/// A size in bytes in human form, with binary units: `1.5 MiB`.
///
/// ```
/// assert_eq!(backup_core::format::human_bytes(1536 * 1024), "1.5 MiB");
/// assert_eq!(backup_core::format::human_bytes(512), "512 B");
/// ```
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Replaces anything outside `[A-Za-z0-9_-]` with `_`, so database names
/// can appear in file names (`shop.eu` becomes `shop_eu`).
pub fn sanitize_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            // `.` is not kept: the first dot of a file name starts its
            // extensions, which is how ids are found in keys.
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "db".to_string()
    } else {
        cleaned.chars().take(64).collect()
    }
}
