//! CPU time of this process and of the children it has waited for.

use std::io;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// User + system CPU time of this process (all its threads, including
/// exited ones) plus that of its waited-for children (`utime + stime +
/// cutime + cstime` of `/proc/self/stat`), at clock-tick resolution
/// (usually 10 ms). Take the difference around a phase: for a backup of a
/// database it covers the pipeline's threads *and* the `pg_dump` child, as
/// `/usr/bin/time` covers a whole shell pipeline.
pub fn cpu_time() -> io::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name (field 2) may contain spaces; it ends at the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("unexpected /proc/self/stat"))?;
    // `rest` starts at field 3 (state); utime..cstime are fields 14..=17.
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

/// `sysconf(_SC_CLK_TCK)` without `unsafe`: asked of `getconf` once.
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_busy_time() {
        // No timing assertion: spin until the counter moves (one tick),
        // however loaded the machine is.
        let before = cpu_time().unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_time().unwrap() <= before {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "CPU time never moved"
            );
        }
    }
}
