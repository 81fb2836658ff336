//! Checks every engine's restore drill tests share.

use tokio::sync::broadcast;

use crate::drill::{DrillRecord, DrillStatus};
use crate::events::Event;

/// Asserts that `record` is a passed drill of `backup_id` over `tables`
/// tables, each with rows and checksum equal to those recorded.
pub fn assert_drill_passed(record: &DrillRecord, backup_id: &str, tables: usize) {
    assert_eq!(record.status, DrillStatus::Passed, "{record:?}");
    assert_eq!(record.backup_id, backup_id, "{record:?}");
    assert_eq!(record.error, None, "{record:?}");
    assert_eq!(record.tables.len(), tables, "{record:?}");
    assert!(
        record
            .tables
            .iter()
            .all(|t| t.matches && t.restored_rows == Some(t.expected_rows)),
        "{record:?}"
    );
}

/// Asserts that `record` is a failed drill of `backup_id` whose error
/// contains `reason`, and returns the error.
pub fn assert_drill_failed(record: &DrillRecord, backup_id: &str, reason: &str) -> String {
    assert_eq!(record.status, DrillStatus::Failed, "{record:?}");
    assert_eq!(record.backup_id, backup_id, "{record:?}");
    let error = record.error.clone().unwrap_or_default();
    assert!(error.contains(reason), "{reason:?} not in {error:?}");
    error
}

/// The next drill event on `events`, skipping the others (a drill's
/// restore emits its own): the backup drilled and, for a failed drill,
/// its error.
pub async fn next_drill_event(events: &mut broadcast::Receiver<Event>) -> (String, Option<String>) {
    loop {
        match events.recv().await {
            Ok(Event::DrillSucceeded { backup_id, .. }) => return (backup_id, None),
            Ok(Event::DrillFailed {
                backup_id, error, ..
            }) => return (backup_id, Some(error)),
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => {
                panic!("events closed before a drill event")
            }
        }
    }
}
