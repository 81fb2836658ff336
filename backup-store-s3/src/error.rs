//! Mapping `object_store` failures into `backup_core::Error`: not found,
//! already exists, access denied (with a hint about credentials), bucket
//! missing, unsupported, and retryable versus permanent store errors.
//!
//! Messages are one line, name the operation and the key, and are scrubbed
//! of the secret access key and session token (the S3 client never puts
//! them in an error, but a server echoing a request must not leak them
//! either).

use std::fmt;

use backup_core::{Error, Secret};
use object_store::client::{HttpError, HttpErrorKind};

/// What the error mapping needs to know about the store.
#[derive(Debug)]
pub(crate) struct ErrorContext {
    /// `s3://bucket/prefix`, the store name in errors.
    pub(crate) name: String,
    /// The bucket, for the "bucket does not exist" message.
    pub(crate) bucket: String,
    /// Where requests go, for the same message.
    pub(crate) endpoint: String,
    /// Values that must never appear in a message.
    pub(crate) secrets: Vec<Secret>,
}

/// The S3 operation that failed, for messages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Put,
    PutCreate,
    CreateUpload,
    UploadPart,
    CompleteUpload,
    AbortUpload,
    Get,
    Head,
    List,
    Delete,
    Preflight,
}

impl Op {
    fn describe(self) -> &'static str {
        match self {
            Op::Put => "PUT",
            Op::PutCreate => "PUT (create-only)",
            Op::CreateUpload => "starting multipart upload of",
            Op::UploadPart => "uploading a part of",
            Op::CompleteUpload => "completing multipart upload of",
            Op::AbortUpload => "aborting multipart upload of",
            Op::Get => "GET",
            Op::Head => "HEAD",
            Op::List => "listing",
            Op::Delete => "DELETE",
            Op::Preflight => "checking access to",
        }
    }
}

/// A one-line description of an S3 failure that keeps the original
/// `object_store` error as its source.
#[derive(Debug)]
struct S3Failure {
    message: String,
    source: object_store::Error,
}

impl fmt::Display for S3Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for S3Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// What an HTTP failure looked like on the wire.
#[derive(Debug, Default)]
struct Wire {
    status: Option<u16>,
    /// S3's `<Code>` from the error body.
    code: Option<String>,
    /// S3's `<Message>` from the error body.
    message: Option<String>,
    /// The transport failure, when no response came back.
    transport: Option<HttpErrorKind>,
}

/// `object_store` keeps the HTTP status and the response body of a failed
/// request in a private error type whose `Display` is its only view: read
/// them from the cause chain's text ("…non-2xx status code: 503 Service
/// Unavailable: <Error><Code>SlowDown</Code>…"). The transport failure kind
/// is public.
fn wire(err: &object_store::Error) -> Wire {
    let mut wire = Wire::default();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            wire.transport = Some(http.kind());
        }
        let text = e.to_string();
        if wire.status.is_none() {
            wire.status = status_in(&text);
        }
        if wire.code.is_none() {
            wire.code = xml_field(&text, "Code");
            wire.message = xml_field(&text, "Message");
        }
        cause = e.source();
    }
    wire
}

/// The HTTP status in "…status code: 503 Service Unavailable…".
fn status_in(text: &str) -> Option<u16> {
    const MARK: &str = "status code: ";
    let start = text.find(MARK)? + MARK.len();
    let digits = text.get(start..start + 3)?;
    digits.parse().ok().filter(|s| (100..600).contains(s))
}

/// The text of the first `<tag>…</tag>` in an S3 error body.
fn xml_field(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let len = body[start..].find(&format!("</{tag}>"))?;
    let text = body[start..start + len].trim();
    (!text.is_empty()).then(|| text.to_string())
}

impl ErrorContext {
    /// Maps a failure of `op` on `key` (a key relative to the store, or a
    /// prefix for listings).
    pub(crate) fn map(&self, op: Op, key: &str, err: object_store::Error) -> Error {
        use object_store::Error as OsError;
        let wire = wire(&err);
        if wire.code.as_deref() == Some("NoSuchBucket") {
            return self.store_error(
                false,
                format!(
                    "bucket {:?} does not exist at {}: create it, or check the bucket name, endpoint and region",
                    self.bucket, self.endpoint
                ),
                err,
            );
        }
        // Some S3 calls (listings, bulk deletes, multipart steps) report
        // every HTTP failure as `Generic`: classify those by status too.
        match err {
            OsError::NotFound { .. } => Error::not_found(key),
            _ if wire.status == Some(404) => Error::not_found(key),
            OsError::AlreadyExists { .. }
            | OsError::Precondition { .. }
            | OsError::NotModified { .. } => Error::AlreadyExists {
                key: key.to_string(),
            },
            _ if wire.status == Some(412) => Error::AlreadyExists {
                key: key.to_string(),
            },
            OsError::PermissionDenied { .. } | OsError::Unauthenticated { .. } => {
                self.access_denied(op, key, &wire, &err)
            }
            _ if matches!(wire.status, Some(401 | 403)) => self.access_denied(op, key, &wire, &err),
            OsError::NotImplemented { .. } | OsError::NotSupported { .. } => self.unsupported(op),
            _ if wire.status == Some(501) => self.unsupported(op),
            _ => {
                let retryable = match (wire.status, wire.transport) {
                    // 409 on a conditional PUT: AWS saw a concurrent
                    // conditional write of the key and asks for a retry.
                    (Some(status), _) => {
                        status >= 500
                            || status == 408
                            || status == 429
                            || (status == 409 && matches!(op, Op::PutCreate))
                    }
                    (None, Some(kind)) => matches!(
                        kind,
                        HttpErrorKind::Connect
                            | HttpErrorKind::Request
                            | HttpErrorKind::Timeout
                            | HttpErrorKind::Interrupted
                    ),
                    (None, None) => false,
                };
                let message = format!("{} {key}: {}", op.describe(), summary(&wire, &err));
                self.store_error(retryable, message, err)
            }
        }
    }

    /// A permanent store error that did not come from `object_store`.
    pub(crate) fn refuse(&self, message: String) -> Error {
        Error::Store {
            store: self.name.clone(),
            retryable: false,
            source: self.redact(&message).into(),
        }
    }

    fn store_error(&self, retryable: bool, message: String, source: object_store::Error) -> Error {
        Error::Store {
            store: self.name.clone(),
            retryable,
            source: Box::new(S3Failure {
                message: self.redact(&message),
                source,
            }),
        }
    }

    fn access_denied(&self, op: Op, key: &str, wire: &Wire, err: &object_store::Error) -> Error {
        Error::AccessDenied {
            store: self.name.clone(),
            detail: self.redact(&format!(
                "{} {key}: {}; {}",
                op.describe(),
                summary(wire, err),
                credentials_hint(wire.code.as_deref())
            )),
        }
    }

    fn unsupported(&self, op: Op) -> Error {
        Error::Unsupported {
            store: self.name.clone(),
            operation: match op {
                Op::PutCreate => "create-only puts (conditional PUT with If-None-Match)",
                Op::Delete => "bulk delete",
                _ => "this request",
            },
        }
    }

    /// Removes every secret value from `text`, and keeps it on one line.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.replace(['\n', '\r'], " ");
        for secret in &self.secrets {
            if !secret.is_empty() {
                out = out.replace(secret.expose(), "***");
            }
        }
        out
    }
}

/// The most useful short description of a failure: S3's code and message
/// when the server answered, the transport failure otherwise.
fn summary(wire: &Wire, err: &object_store::Error) -> String {
    match (&wire.code, &wire.message, wire.status) {
        (Some(code), Some(message), Some(status)) => format!("{code}: {message} (HTTP {status})"),
        (Some(code), None, Some(status)) => format!("{code} (HTTP {status})"),
        (None, _, Some(status)) => format!("HTTP {status}"),
        _ => err.to_string(),
    }
}

fn credentials_hint(code: Option<&str>) -> &'static str {
    match code {
        Some("InvalidAccessKeyId") | Some("NotSignedUp") => {
            "the server does not know this access key id: check AWS_ACCESS_KEY_ID (or the configured key) and the endpoint"
        }
        Some("SignatureDoesNotMatch") => {
            "the secret access key does not match the access key id: check AWS_SECRET_ACCESS_KEY (or the configured secret) and the region"
        }
        Some("ExpiredToken") | Some("InvalidToken") => {
            "the session token is invalid or expired: refresh AWS_SESSION_TOKEN"
        }
        _ => {
            "check the access key id and secret (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), the region, and that the bucket policy allows this key to read, write, list and delete under the prefix"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> ErrorContext {
        ErrorContext {
            name: "s3://b/p".into(),
            bucket: "b".into(),
            endpoint: "http://127.0.0.1:9".into(),
            secrets: vec![Secret::new("TOPSECRET")],
        }
    }

    #[test]
    fn statuses_are_read_from_the_message() {
        let text = "Error performing PUT http://h/b/k in 1ms - Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>";
        assert_eq!(status_in(text), Some(503));
        assert_eq!(status_in("status code: 99"), None);
        assert_eq!(status_in("no status"), None);
    }

    #[test]
    fn xml_fields_are_extracted() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code>\n<Message> The bucket does not exist </Message></Error>";
        assert_eq!(xml_field(body, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(
            xml_field(body, "Message").as_deref(),
            Some("The bucket does not exist")
        );
        assert_eq!(xml_field(body, "Resource"), None);
        assert_eq!(xml_field("<Code></Code>", "Code"), None);
    }

    #[test]
    fn variants_map_onto_core_errors() {
        let ctx = context();
        let boxed = || -> Box<dyn std::error::Error + Send + Sync> { "x".into() };
        type Check = fn(&Error) -> bool;
        let cases: Vec<(object_store::Error, Check)> = vec![
            (
                object_store::Error::NotFound {
                    path: "p/k".into(),
                    source: boxed(),
                },
                |e| matches!(e, Error::NotFound { what } if what == "k"),
            ),
            (
                object_store::Error::AlreadyExists {
                    path: "p/k".into(),
                    source: boxed(),
                },
                |e| matches!(e, Error::AlreadyExists { key } if key == "k"),
            ),
            (
                object_store::Error::PermissionDenied {
                    path: "p/k".into(),
                    source: boxed(),
                },
                |e| matches!(e, Error::AccessDenied { detail, .. } if detail.contains("AWS_ACCESS_KEY_ID")),
            ),
            (
                object_store::Error::NotImplemented {
                    operation: "put".into(),
                    implementer: "s3".into(),
                },
                |e| matches!(e, Error::Unsupported { .. }),
            ),
            (
                object_store::Error::Generic {
                    store: "S3",
                    source: "TOPSECRET went\nwrong".into(),
                },
                |e| {
                    matches!(
                        e,
                        Error::Store {
                            retryable: false,
                            ..
                        }
                    ) && !e.to_string().contains("TOPSECRET")
                        && !e.to_string().contains('\n')
                },
            ),
        ];
        for (err, check) in cases {
            let shown = format!("{err:?}");
            let mapped = ctx.map(Op::PutCreate, "k", err);
            assert!(check(&mapped), "{shown} became {mapped:?}");
        }
    }
}
