//! Which pushes of a [`WalArchive`](super::WalArchive) look for the data
//! objects of earlier, interrupted pushes of the same file.
//!
//! Leftovers come from a push that stopped between its data object and
//! its record. In a running archive a failed push removes its own data,
//! so what remains comes from a push that was cut off (a process killed,
//! a future dropped) or failed without knowing whether its record is
//! stored. Those files are pushed again, and first: PostgreSQL runs
//! `archive_command` for one file at a time, retrying it until it
//! succeeds, and a [`WalArchiver`](crate::WalArchiver) hands its spool
//! over in name order and stops at the first failure. So only the first
//! push of an archive instance and the retry of a push that did not
//! settle in it list the file's data directory; every other push lists
//! nothing.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The state shared by an archive and its clones.
#[derive(Debug, Default)]
pub(super) struct Leftovers {
    /// A push of this instance has looked already.
    looked_once: AtomicBool,
    /// Files whose push started and did not settle (may have left data).
    unsettled: Mutex<BTreeSet<String>>,
}

impl Leftovers {
    /// A push of `name` is about to write its data: marks it unsettled
    /// and says whether, once its record is stored, it should look for
    /// leftovers (the first push of this instance, or `name` did not
    /// settle before).
    pub(super) fn start(&self, name: &str) -> bool {
        let first = !self.looked_once.swap(true, Ordering::SeqCst);
        let again = !self
            .unsettled
            .lock()
            .expect("leftovers lock")
            .insert(name.to_string());
        first || again
    }

    /// The push of `name` left nothing behind: its data is its record's,
    /// or removed.
    pub(super) fn settled(&self, name: &str) {
        self.unsettled.lock().expect("leftovers lock").remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_push_and_retries_of_unsettled_ones_look() {
        let l = Leftovers::default();
        assert!(l.start("A"), "the first push of an instance");
        l.settled("A");
        assert!(!l.start("B"));
        l.settled("B");
        assert!(!l.start("C"));
        assert!(l.start("C"), "C did not settle");
        l.settled("C");
        assert!(!l.start("C"));
    }
}
