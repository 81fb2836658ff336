//! This process's resident memory, from `/proc/self/status`.

use std::io;

/// Peak resident set size of this process (`VmHWM`) in bytes: the
/// high-water mark since the process started or since the last
/// [`reset_peak_rss`].
pub fn peak_rss() -> io::Result<u64> {
    status_field("VmHWM:")
}

/// Current resident set size of this process (`VmRSS`) in bytes.
pub fn current_rss() -> io::Result<u64> {
    status_field("VmRSS:")
}

/// Resets the high-water mark read by [`peak_rss`] to the current RSS, by
/// writing `5` to `/proc/self/clear_refs` (Linux ≥ 4.0). Call it right
/// before the phase to measure.
pub fn reset_peak_rss() -> io::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")
}

fn status_field(name: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(name))
        .ok_or_else(|| io::Error::other(format!("no {name} in /proc/self/status")))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|_| io::Error::other(format!("unexpected line {line:?}")))?;
    Ok(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_lowers_the_high_water_mark() {
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        drop(big);
        let before = peak_rss().unwrap();
        reset_peak_rss().unwrap();
        let after = peak_rss().unwrap();
        assert!(after <= before);
        assert!(current_rss().unwrap() > 0);
    }
}
