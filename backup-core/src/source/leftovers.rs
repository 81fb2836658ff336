//! What restores that did not finish leave behind ([`Leftover`]) and how
//! an engine's clean-up decides what to remove ([`LeftoverReport`]).

use std::future::Future;
use std::time::Duration;

/// Something a restore that did not finish left on the server (a staging
/// database `<target>__restore_<8 hex>`), found by
/// [`RestoreTarget::leftovers`](crate::source::RestoreTarget::leftovers).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leftover {
    /// Its name on the server.
    pub name: String,
    /// The database the restore was for, when the marker says.
    pub target: Option<String>,
    /// Time since the restore that made it last showed a sign of life (its
    /// creation or its last heartbeat), by the server's clock; `None` when
    /// the clocks cannot tell (counted as alive).
    pub idle: Option<Duration>,
}

impl Leftover {
    /// A leftover named `name`, for `target`, idle for `idle`.
    pub fn new(name: impl Into<String>, target: Option<String>, idle: Option<Duration>) -> Self {
        Leftover {
            name: name.into(),
            target,
            idle,
        }
    }
}

/// What [`RestoreTarget::remove_leftovers`](crate::source::RestoreTarget::remove_leftovers) found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeftoverReport {
    /// Removed: leftovers of restores that died.
    pub removed: Vec<Leftover>,
    /// Idle for less than the grace: possibly a restore still running.
    pub too_recent: Vec<Leftover>,
    /// Could not be removed, and why (in use, or an error).
    pub not_removed: Vec<(Leftover, String)>,
    /// Named like leftovers but without this library's marker (another
    /// tool's, an older version's): reported, never removed.
    pub unmarked: Vec<String>,
}

/// One thing named like a leftover, as an engine's scan found it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Candidate {
    /// With this library's marker.
    Marked(Leftover),
    /// Named like one, without the marker: never removed.
    Unmarked(String),
}

impl Candidate {
    /// The marked leftovers among `found`, in order: what
    /// [`RestoreTarget::leftovers`](crate::source::RestoreTarget::leftovers) lists.
    pub fn marked(found: Vec<Candidate>) -> Vec<Leftover> {
        found
            .into_iter()
            .filter_map(|c| match c {
                Candidate::Marked(leftover) => Some(leftover),
                Candidate::Unmarked(_) => None,
            })
            .collect()
    }
}

/// What removing one leftover came to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Removal {
    /// Removed now.
    Removed,
    /// Gone already (removed meanwhile by someone else): not reported.
    Vanished,
    /// Still there, and why (in use by a running restore, an error).
    Refused(String),
}

impl LeftoverReport {
    /// The policy every engine applies: among `found`, the marked ones
    /// (of `target` only, when given) idle for `older_than` or more are
    /// passed to `remove`; younger ones (and those whose idle time is
    /// unknown) are reported as too recent; unmarked ones are reported
    /// (when no `target` narrows the scan) and never touched.
    pub async fn apply<F, Fut>(
        found: Vec<Candidate>,
        older_than: Duration,
        target: Option<&str>,
        mut remove: F,
    ) -> Self
    where
        F: FnMut(Leftover) -> Fut + Send,
        Fut: Future<Output = Removal> + Send,
    {
        let mut report = LeftoverReport::default();
        for candidate in found {
            let leftover = match candidate {
                Candidate::Marked(leftover) => leftover,
                Candidate::Unmarked(name) => {
                    if target.is_none() {
                        report.unmarked.push(name);
                    }
                    continue;
                }
            };
            if target.is_some_and(|t| leftover.target.as_deref() != Some(t)) {
                continue;
            }
            if leftover.idle.is_none_or(|idle| idle < older_than) {
                report.too_recent.push(leftover);
                continue;
            }
            match remove(leftover.clone()).await {
                Removal::Removed => {
                    tracing::warn!(leftover = %leftover.name, target = ?leftover.target, "removed what an interrupted restore left");
                    report.removed.push(leftover);
                }
                Removal::Vanished => {}
                Removal::Refused(why) => {
                    tracing::warn!(leftover = %leftover.name, reason = %why, "leftover of an interrupted restore not removed");
                    report.not_removed.push((leftover, why));
                }
            }
        }
        report
    }

    /// One line per leftover removed, not removed or too recent, for logs
    /// and restore reports.
    pub fn describe(&self) -> Vec<String> {
        let target = |l: &Leftover| l.target.clone().unwrap_or_else(|| "?".to_string());
        let mut lines = Vec::new();
        for l in &self.removed {
            lines.push(format!(
                "removed {:?}, left by an interrupted restore of {:?}",
                l.name,
                target(l)
            ));
        }
        for (l, why) in &self.not_removed {
            lines.push(format!(
                "{:?}, left by an interrupted restore of {:?}, is still there: {why}",
                l.name,
                target(l)
            ));
        }
        for l in &self.too_recent {
            let idle = l
                .idle
                .map(|d| format!("idle {} s", d.as_secs()))
                .unwrap_or_else(|| "idle time unknown".to_string());
            lines.push(format!(
                "{:?} of another restore of {:?} exists ({idle})",
                l.name,
                target(l)
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn marked(name: &str, target: &str, idle: Option<u64>) -> Candidate {
        Candidate::Marked(Leftover::new(
            name,
            Some(target.to_string()),
            idle.map(Duration::from_secs),
        ))
    }

    /// (scan, grace, target, what `remove` answers, removed, too recent,
    /// not removed, unmarked, names passed to `remove`)
    #[tokio::test]
    async fn the_policy_removes_only_marked_idle_leftovers_of_the_target() {
        type Case = (
            Option<&'static str>,
            &'static [&'static str],
            &'static [&'static str],
            &'static [&'static str],
            &'static [&'static str],
        );
        let scan = || {
            vec![
                marked("a_old", "a", Some(700)),
                marked("a_young", "a", Some(5)),
                marked("a_unknown", "a", None),
                marked("b_old", "b", Some(700)),
                marked("a_busy", "a", Some(900)),
                marked("a_gone", "a", Some(900)),
                Candidate::Unmarked("x__restore_00000000".to_string()),
            ]
        };
        let cases: [Case; 2] = [
            (
                None,
                &["a_old", "b_old"],
                &["a_young", "a_unknown"],
                &["a_busy"],
                &["x__restore_00000000"],
            ),
            (
                Some("a"),
                &["a_old"],
                &["a_young", "a_unknown"],
                &["a_busy"],
                &[],
            ),
        ];
        for (target, removed, young, refused, unmarked) in cases {
            let asked = Mutex::new(Vec::new());
            let report = LeftoverReport::apply(scan(), Duration::from_secs(600), target, |l| {
                asked.lock().unwrap().push(l.name.clone());
                async move {
                    match l.name.as_str() {
                        "a_busy" => Removal::Refused("in use".into()),
                        "a_gone" => Removal::Vanished,
                        _ => Removal::Removed,
                    }
                }
            })
            .await;
            let names = |v: &[Leftover]| v.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
            assert_eq!(names(&report.removed), removed, "{target:?}");
            assert_eq!(names(&report.too_recent), young, "{target:?}");
            let not: Vec<Leftover> = report.not_removed.iter().map(|(l, _)| l.clone()).collect();
            assert_eq!(names(&not), refused, "{target:?}");
            assert_eq!(report.unmarked, unmarked, "{target:?}");
            let mut expected_asks: Vec<&str> = removed.to_vec();
            expected_asks.extend(["a_busy", "a_gone"]);
            let mut asks = asked.into_inner().unwrap();
            asks.sort();
            expected_asks.sort();
            assert_eq!(asks, expected_asks, "{target:?}");
            assert_eq!(
                report.describe().len(),
                removed.len() + young.len() + refused.len()
            );
        }
    }
}
