//! Mapping driver errors into [`backup_core::Error`], with credentials
//! scrubbed and long messages shortened.

use backup_core::Error;
/// Which side of the adapter failed (shared with every engine).
pub(crate) use backup_core::Side;
use mongodb::error::{Error as DriverError, ErrorKind};

use crate::conn::MongoConnection;

/// MongoDB's `AuthenticationFailed`.
const AUTHENTICATION_FAILED: i32 = 18;
/// MongoDB's `NamespaceNotFound`.
pub(crate) const NAMESPACE_NOT_FOUND: i32 = 26;

/// The longest error detail kept (a failed insert of a large batch can
/// report thousands of write errors).
const MAX_DETAIL: usize = 2000;

/// A driver error raised while connecting or checking the server.
pub(crate) fn connect_error(err: &DriverError, conn: &MongoConnection) -> Error {
    classify(err, Side::Dump, "connecting", conn)
}

/// Maps a driver error: unreachable server → [`Error::Connection`],
/// rejected credentials → [`Error::Authentication`], anything else →
/// [`Error::Dump`] / [`Error::Restore`] with `context` in front.
pub(crate) fn classify(
    err: &DriverError,
    side: Side,
    context: &str,
    conn: &MongoConnection,
) -> Error {
    let detail = shorten(conn.redact(&describe(err)));
    match err.kind.as_ref() {
        ErrorKind::Authentication { .. } => Error::Authentication {
            engine: "mongodb",
            detail,
        },
        ErrorKind::Command(c) if c.code == AUTHENTICATION_FAILED => Error::Authentication {
            engine: "mongodb",
            detail,
        },
        ErrorKind::ServerSelection { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::InvalidTlsConfig { .. } => Error::Connection {
            engine: "mongodb",
            detail: format!("{} ({detail})", conn.redacted_uri()),
        },
        _ => side.error("mongodb", format!("{context}: {detail}")),
    }
}

/// The server's error code, if the error carries one.
pub(crate) fn code(err: &DriverError) -> Option<i32> {
    match err.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

/// One line for an error; bulk insert failures are summarised rather than
/// listing every failed document.
fn describe(err: &DriverError) -> String {
    match err.kind.as_ref() {
        ErrorKind::InsertMany(failure) => {
            let mut parts = Vec::new();
            if let Some(errors) = &failure.write_errors {
                let shown: Vec<String> = errors
                    .iter()
                    .take(3)
                    .map(|w| format!("code {}: {}", w.code, w.message))
                    .collect();
                parts.push(format!(
                    "{} document(s) rejected ({}{})",
                    errors.len(),
                    shown.join("; "),
                    if errors.len() > 3 { "; ..." } else { "" }
                ));
            }
            if let Some(wc) = &failure.write_concern_error {
                parts.push(format!("write concern error {}: {}", wc.code, wc.message));
            }
            parts.join("; ")
        }
        ErrorKind::Command(c) => format!("{} ({} {})", c.message, c.code, c.code_name),
        _ => err.to_string(),
    }
}

fn shorten(mut text: String) -> String {
    if text.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}
