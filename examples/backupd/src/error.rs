//! API errors: an HTTP status, a stable machine-readable code and a
//! one-line message, as `{"success": false, "error": {"code", "message"}}`.
//! The library's errors map to specific codes, so a caller can tell a
//! refused password from a corrupt backup without parsing messages.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use backup_core::Error;
use serde_json::json;

/// An API error: status, code and message.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`not_found`, `upstream_auth_failed`, ...).
    pub code: &'static str,
    /// One line saying what went wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 404: the thing does not exist or is not visible to the caller.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("not found: {what}"),
        )
    }

    /// 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 403 with a specific code.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = status_and_code(&e);
        ApiError::new(status, code, e.to_string())
    }
}

/// The status and code of a library error.
pub fn status_and_code(e: &Error) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match e {
        Error::NotFound { .. } => (S::NOT_FOUND, "not_found"),
        Error::InvalidKey { .. } => (S::BAD_REQUEST, "invalid_id"),
        Error::Config(_) | Error::Incompatible { .. } => (S::BAD_REQUEST, "bad_request"),
        Error::TooLarge { .. } => (S::UNPROCESSABLE_ENTITY, "too_large"),
        Error::AlreadyExists { .. } => (S::CONFLICT, "conflict"),
        Error::Integrity { .. } => (S::UNPROCESSABLE_ENTITY, "integrity"),
        Error::Manifest { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_manifest"),
        Error::Decryption { .. } => (S::UNPROCESSABLE_ENTITY, "decryption_failed"),
        Error::Unsupported { .. } => (S::NOT_IMPLEMENTED, "unsupported"),
        Error::Authentication { .. } => (S::BAD_GATEWAY, "upstream_auth_failed"),
        Error::Connection { .. } => (S::BAD_GATEWAY, "upstream_unreachable"),
        Error::DatabaseMissing { .. } => (S::BAD_GATEWAY, "upstream_database_missing"),
        Error::Dump { .. } => (S::BAD_GATEWAY, "dump_failed"),
        Error::Restore { .. } => (S::BAD_GATEWAY, "restore_failed"),
        Error::Stalled { .. } => (S::GATEWAY_TIMEOUT, "upstream_stalled"),
        Error::AccessDenied { .. } => (S::BAD_GATEWAY, "storage_access_denied"),
        Error::StorageFull { .. } => (S::INSUFFICIENT_STORAGE, "storage_full"),
        Error::Store {
            retryable: true, ..
        } => (S::SERVICE_UNAVAILABLE, "storage_unavailable"),
        Error::Store { .. } => (S::BAD_GATEWAY, "storage_error"),
        Error::Busy { .. } => (S::CONFLICT, "busy"),
        Error::HasDependents { .. } => (S::CONFLICT, "has_dependents"),
        Error::Cancelled => (S::SERVICE_UNAVAILABLE, "cancelled"),
        Error::ToolNotFound { .. } => (S::INTERNAL_SERVER_ERROR, "tool_not_found"),
        Error::ToolTooOld { .. } => (S::INTERNAL_SERVER_ERROR, "tool_too_old"),
        Error::Codec { .. } => (S::UNPROCESSABLE_ENTITY, "codec"),
        Error::Io { .. } => (S::INTERNAL_SERVER_ERROR, "io"),
        _ => (S::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"success": false, "error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_are_not_internal() {
        let cases = [
            (
                Error::Authentication {
                    engine: "mongodb",
                    detail: "bad".into(),
                },
                "upstream_auth_failed",
            ),
            (
                Error::AccessDenied {
                    store: "s3".into(),
                    detail: "403".into(),
                },
                "storage_access_denied",
            ),
            (
                Error::Connection {
                    engine: "postgres",
                    detail: "refused".into(),
                },
                "upstream_unreachable",
            ),
            (
                Error::Decryption {
                    what: "x".into(),
                    detail: "no identity".into(),
                },
                "decryption_failed",
            ),
        ];
        for (e, code) in cases {
            let api = ApiError::from(e);
            assert_eq!(api.code, code);
            assert_ne!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
}
