//! [`Turns`]: one turn lock per database entry, shared by the entry's
//! scheduler jobs (full and incremental) and kept across re-registrations,
//! so that a run of the entry as it was registered before a `PATCH` and a
//! run of the entry as registered after it never overlap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// The turn of one entry, shared by its jobs.
pub type Turn = Arc<TurnLock>;

/// A turn lock: held by a run for its whole length; counts the runs
/// waiting for it.
#[derive(Debug, Default)]
pub struct TurnLock {
    lock: Arc<tokio::sync::Mutex<()>>,
    waiting: AtomicUsize,
}

/// Counts one waiter while it lives (a wait given up counts no more).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TurnLock {
    /// Waits for the turn and holds it until the guard is dropped.
    pub async fn take(&self) -> OwnedMutexGuard<()> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        Arc::clone(&self.lock).lock_owned().await
    }

    /// The turn if nobody holds it.
    pub fn try_take(&self) -> Option<OwnedMutexGuard<()>> {
        Arc::clone(&self.lock).try_lock_owned().ok()
    }

    /// Runs waiting for the turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// The turn locks of the registered entries, by entry id.
#[derive(Debug, Default)]
pub struct Turns {
    by_id: Mutex<HashMap<String, Turn>>,
}

impl Turns {
    /// The turn of entry `id`: the one it already has when it was
    /// registered before (a run of the earlier registration may still hold
    /// it), else a new one. Turns that nothing refers to any more (entries
    /// removed, their last run over) are dropped on the way, so the map
    /// stays as large as the registered entries and the runs in flight.
    pub fn of(&self, id: &str) -> Turn {
        let mut by_id = self.by_id.lock().expect("turns lock");
        by_id.retain(|other, turn| other == id || Arc::strong_count(turn) > 1);
        Arc::clone(by_id.entry(id.to_string()).or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of the first registration holds its turn; the entry is
    /// registered again; a run of the new registration has to wait for
    /// it, and gets its turn once the first run ends.
    #[tokio::test]
    async fn a_re_registered_entry_waits_for_the_run_of_its_earlier_registration() {
        let turns = Turns::default();
        let first = turns.of("c");
        let running = first.take().await;
        drop(first); // the earlier registration's job is replaced
        let again = turns.of("c");
        assert!(
            again.try_take().is_none(),
            "the re-registered entry's run would overlap the running one"
        );
        let other = turns.of("d");
        assert!(other.try_take().is_some(), "another entry has its own turn");
        drop(running);
        assert!(again.try_take().is_some());
    }

    #[test]
    fn locks_nothing_holds_are_dropped() {
        let turns = Turns::default();
        let kept = turns.of("kept");
        drop(turns.of("gone"));
        let _ = turns.of("other");
        let ids: Vec<String> = turns.by_id.lock().unwrap().keys().cloned().collect();
        assert!(!ids.contains(&"gone".to_string()), "{ids:?}");
        assert!(Arc::ptr_eq(&kept, &turns.of("kept")));
    }

    /// Through the daemon: a physical entry with incrementals is
    /// registered again, as a `PATCH` does, while a run of its first
    /// registration holds the turn; a manual run of its incremental job
    /// then waits for that turn, and runs once it is released.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_of_the_re_registered_entry_waits_for_the_running_one() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = format!(
            "storage: {{type: fs, path: ./backups}}\naudit_log: ./audit.log\nauth: {{tokens: [{{token_var: ADMIN_TOKEN, role: admin}}]}}\ndatabases:\n  - {{id: c, engine: postgres, host: 127.0.0.1, port: {port}, database_name: postgres, mode: physical, schedule: disabled, incremental: disabled}}\n"
        );
        let lookup = |k: &str| (k == "ADMIN_TOKEN").then(|| "admin-token-0123456789".to_string());
        let config = crate::config::load(&text, dir.path(), &lookup).unwrap();
        let daemon = crate::daemon::Daemon::start(config).await.unwrap();
        let app = Arc::clone(&daemon.app);
        let db = app.database("c", None).unwrap();
        let job = db.incremental_job_id();

        let turn = app.turns.of("c");
        let running = turn.take().await;
        app.register_checked(db.clone(), Some("c")).await.unwrap();
        let run = {
            let (app, job) = (Arc::clone(&app), job.clone());
            tokio::spawn(async move { app.scheduler.run_now(&job).await })
        };
        // The run of the re-registered entry either waits for the turn
        // the running one holds, or (the failure) runs beside it: its
        // source finds no base backup at once and it ends.
        let mut run = std::pin::pin!(run);
        while turn.waiting() == 0 {
            tokio::select! {
                ended = &mut run => panic!("it ran beside the running one: {ended:?}"),
                () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
            }
        }
        drop(running);
        // It runs then (and fails: nothing listens on the entry's port).
        let outcome = run.await.unwrap();
        assert!(outcome.is_err(), "{outcome:?}");
    }
}
