//! The progress bar `backup`, `restore`, `verify`, `check` and `gc` show on
//! a terminal: bytes read (and, for a backup, stored), the average rate and
//! the elapsed time, read from the [`Meter`] the command's store and
//! source count into. Nothing is drawn when stderr is not a terminal, with
//! `--json` or with `--quiet`.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use backup_core::format::human_bytes;
use backup_core::meter::Meter;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often the bar redraws, on its own thread: the counters are polled,
/// never pushed, so the hot path only adds to an atomic.
const TICK: Duration = Duration::from_millis(100);

/// What the bar reports: a backup reads a database and writes the store;
/// the other commands read the store (gc may write repacked packs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// Source bytes read and store bytes written.
    Backup,
    /// Store bytes read (and written, when there are any).
    Read,
}

/// A running progress bar, or nothing (not a terminal, `--json`,
/// `--quiet`). Dropped without [`Bar::finish`] (the command failed), it
/// leaves its last state on the terminal above the error line.
#[derive(Debug)]
pub(crate) struct Bar(Option<ProgressBar>);

impl Bar {
    /// A bar labelled `label` over `meter`, drawn on stderr when `show`
    /// and stderr is a terminal.
    pub(crate) fn start(show: bool, label: &'static str, work: Work, meter: &Arc<Meter>) -> Bar {
        if !show || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let meter = Arc::clone(meter);
        let style = ProgressStyle::with_template("{spinner} {prefix}: {status}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key(
                "status",
                move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&status(work, &meter, state.elapsed()));
                },
            );
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10))
            .with_style(style)
            .with_prefix(label);
        bar.enable_steady_tick(TICK);
        Bar(Some(bar))
    }

    /// Stops the bar, leaving its final line (the totals) on the terminal.
    pub(crate) fn finish(self) {
        if let Some(bar) = &self.0 {
            bar.finish();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = &self.0
            && !bar.is_finished()
        {
            bar.abandon();
        }
    }
}

/// The bar's text: `1.2 MiB read, 300.0 KiB stored, 4.0 MiB/s, 0:00:03`.
fn status(work: Work, meter: &Meter, elapsed: Duration) -> String {
    let (read, written) = match work {
        Work::Backup => (meter.source_read(), meter.store_written()),
        Work::Read => (meter.store_read(), meter.store_written()),
    };
    let mut out = format!("{} read", human_bytes(read));
    if work == Work::Backup || written > 0 {
        let _ = write!(out, ", {} stored", human_bytes(written));
    }
    let _ = write!(out, ", {}", rate(read, elapsed));
    let secs = elapsed.as_secs();
    let _ = write!(
        out,
        ", {}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    out
}

/// Average bytes per second over `elapsed`, `- B/s` before there is a
/// meaningful interval.
fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 0.05 {
        return "- B/s".into();
    }
    // Saturating float-to-int conversion: u64::MAX bytes in 0.05 s is
    // still a finite, printable rate.
    format!("{}/s", human_bytes((bytes as f64 / secs) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_what_each_kind_of_work_moves() {
        let meter = Meter::default();
        let s = status(Work::Backup, &meter, Duration::from_secs(3725));
        assert_eq!(s, "0 B read, 0 B stored, 0 B/s, 1:02:05");
        let s = status(Work::Read, &meter, Duration::ZERO);
        assert_eq!(s, "0 B read, - B/s, 0:00:00");
    }

    #[test]
    fn rate_is_an_average_and_never_divides_by_zero() {
        assert_eq!(rate(0, Duration::ZERO), "- B/s");
        assert_eq!(rate(u64::MAX, Duration::ZERO), "- B/s");
        assert_eq!(rate(2048, Duration::from_secs(2)), "1.0 KiB/s");
        assert_eq!(rate(u64::MAX, Duration::from_millis(50)), "16.0 EiB/s");
    }
}
