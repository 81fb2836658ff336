//! Formatting of sizes, durations and throughput.

use std::time::Duration;

/// `1.5 GiB`, `12.0 MiB`, `512 B` (binary units).
pub fn human_bytes(bytes: u64) -> String {
    backup_core::format::human_bytes(bytes)
}

/// `1.234 s`, `56.7 ms`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.3} s")
    } else {
        format!("{:.1} ms", s * 1000.0)
    }
}

/// Throughput in MB/s (10⁶ bytes per second), as `zstd` and `dd` count.
pub fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.500 s");
        assert_eq!(human_duration(Duration::from_micros(2500)), "2.5 ms");
        assert_eq!(mb_per_s(10_000_000, Duration::from_secs(2)), 5.0);
    }
}
