//! [`MongoConnection`]: where a server is and how to log in, with the
//! credentials kept out of sight.

use std::fmt;
use std::time::Duration;

use backup_core::{Error, Result, Secret};
use mongodb::options::ConnectionString;

/// How long the driver looks for a usable server before giving up, unless
/// the URI sets `serverSelectionTimeoutMS`.
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// Connection parameters for a MongoDB deployment.
///
/// Built from a connection string (`mongodb://` or `mongodb+srv://`) and
/// optionally explicit credentials, which override the URI's. The URI is
/// kept as a [`Secret`] because it may contain a password; `Debug`,
/// `Display` and every error show [`MongoConnection::redacted_uri`]
/// instead, and driver messages are scrubbed of the password before they
/// become errors.
///
/// ```
/// use backup_core::Secret;
/// use backup_mongo::MongoConnection;
///
/// let conn = MongoConnection::from_uri("mongodb://app:s3cret@db1:27017,db2:27017/sales?replicaSet=rs0")?;
/// assert_eq!(conn.database(), Some("sales"));
/// assert_eq!(conn.redacted_uri(), "mongodb://app:***@db1:27017,db2:27017/sales?replicaSet=rs0");
/// assert!(!format!("{conn:?} {conn}").contains("s3cret"));
///
/// // Or explicit fields, with a password from a secret store.
/// let conn = MongoConnection::from_uri("mongodb://db1:27017/?authSource=admin")?
///     .with_database("sales")
///     .with_credentials("backup", Secret::new("from-a-vault"));
/// assert_eq!(conn.username(), Some("backup"));
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Clone)]
pub struct MongoConnection {
    uri: Secret,
    redacted: String,
    database: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
    auth_source: Option<String>,
    /// Passwords found in the URI (user-info, proxy), for scrubbing text.
    uri_secrets: Vec<Secret>,
    server_selection_timeout: Option<Duration>,
}

impl MongoConnection {
    /// Parses and validates a connection string (no network access: SRV
    /// records are resolved when connecting). The database is the URI's
    /// path (`/sales`), if any. Errors never echo the password.
    pub fn from_uri(uri: &str) -> Result<Self> {
        let redacted = redact_uri(uri);
        if backup_core::redact::ambiguous_userinfo(uri) {
            return Err(Error::Config(format!(
                "invalid MongoDB connection string {redacted}: '@' after the host part; percent-encode '@', ':', '/', '?' and '#' in the user name and password (e.g. '/' as %2F), or pass the password separately (MongoConnection::with_password; backupctl: MONGODB_PASSWORD or --password-file)"
            )));
        }
        // Whatever in the string may be secret, for scrubbing messages.
        let mut uri_secrets = raw_secrets(uri);
        let parsed = ConnectionString::parse(uri).map_err(|e| {
            let mut secrets = uri_secrets.clone();
            secrets.push(Secret::new(uri));
            Error::Config(format!(
                "invalid MongoDB connection string {redacted}: {}",
                scrub(&e.to_string(), &secrets)
            ))
        })?;
        let mut username = None;
        let mut auth_source = None;
        if let Some(credential) = &parsed.credential {
            if let Some(password) = &credential.password {
                uri_secrets.push(Secret::new(password.as_str()));
            }
            username = credential.username.clone();
            auth_source = credential.source.clone();
        }
        Ok(MongoConnection {
            uri: Secret::new(uri),
            redacted,
            database: parsed.default_database.filter(|d| !d.is_empty()),
            username,
            password: None,
            auth_source,
            uri_secrets,
            server_selection_timeout: None,
        })
    }

    /// The same deployment and credentials, another database.
    pub fn with_database(&self, database: impl Into<String>) -> Self {
        MongoConnection {
            database: Some(database.into()),
            ..self.clone()
        }
    }

    /// Authenticates as `username` with `password`, overriding any
    /// credentials in the URI (the URI's `authSource` and
    /// `authMechanism` still apply).
    pub fn with_credentials(mut self, username: impl Into<String>, password: Secret) -> Self {
        self.username = Some(username.into());
        self.password = Some(password);
        self
    }

    /// Uses `password` with the URI's user name.
    pub fn with_password(mut self, password: Secret) -> Self {
        self.password = Some(password);
        self
    }

    /// Authenticates against `source` (the `authSource`, usually `admin`).
    pub fn with_auth_source(mut self, source: impl Into<String>) -> Self {
        self.auth_source = Some(source.into());
        self
    }

    /// How long to look for a usable server before failing with
    /// [`Error::Connection`]; default
    /// [`DEFAULT_SERVER_SELECTION_TIMEOUT`] unless the URI sets
    /// `serverSelectionTimeoutMS`.
    pub fn with_server_selection_timeout(mut self, timeout: Duration) -> Self {
        self.server_selection_timeout = Some(timeout);
        self
    }

    /// The database to dump or restore into, if configured.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// The user name, from the URI or [`MongoConnection::with_credentials`].
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The connection string with its password replaced by `***`.
    pub fn redacted_uri(&self) -> &str {
        &self.redacted
    }

    /// The connection string as given, password included. Hand it only to
    /// what needs it (the driver, a 0600 tool config file).
    pub(crate) fn uri(&self) -> &Secret {
        &self.uri
    }

    /// The explicit password, if any (the URI's stays inside the URI).
    pub(crate) fn explicit_password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// The authentication database, if set in the URI or explicitly.
    pub(crate) fn auth_source(&self) -> Option<&str> {
        self.auth_source.as_deref()
    }

    /// The database, or a configuration error naming `what` needs it.
    pub(crate) fn require_database(&self, what: &str) -> Result<&str> {
        self.database().ok_or_else(|| {
            Error::Config(format!(
                "{what} needs a database: put it in the connection string ({}/<db>) or set it with with_database",
                self.redacted.split(['/', '?']).take(3).collect::<Vec<_>>().join("/")
            ))
        })
    }

    /// The server selection timeout set with
    /// [`MongoConnection::with_server_selection_timeout`], if any.
    pub(crate) fn server_selection_timeout(&self) -> Option<Duration> {
        self.server_selection_timeout
    }

    /// `text` with every credential of this connection replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut secrets: Vec<Secret> = self.uri_secrets.clone();
        secrets.extend(self.password.iter().cloned());
        secrets.push(self.uri.clone());
        let mut out = text.replace(self.uri.expose(), &self.redacted);
        out = scrub(&out, &secrets);
        out
    }
}

impl fmt::Debug for MongoConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoConnection")
            .field("uri", &self.redacted)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("auth_source", &self.auth_source)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for MongoConnection {
    /// The redacted URI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// Whether a query option may hold a secret: any name mentioning a
/// password, secret or token (`proxyPassword`,
/// `tlsCertificateKeyFilePassword`), and `authMechanismProperties` (which
/// can carry `AWS_SESSION_TOKEN:...`).
fn is_sensitive_key(key: &str) -> bool {
    let key = percent_decode(key)
        .unwrap_or_else(|| key.to_string())
        .to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.contains("token")
        || key == "authmechanismproperties"
}

/// The password of the user-info and the values of sensitive query
/// options, as written and percent-decoded.
fn raw_secrets(uri: &str) -> Vec<Secret> {
    let mut raw: Vec<String> = Vec::new();
    let Some((_, rest)) = uri.split_once("://") else {
        return Vec::new();
    };
    let after = match rest.rfind('@') {
        Some(at) => {
            if let Some((_, password)) = rest[..at].split_once(':') {
                raw.push(password.to_string());
            }
            &rest[at + 1..]
        }
        None => rest,
    };
    if let Some((_, query)) = after.split_once('?') {
        for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            if is_sensitive_key(key) {
                raw.push(value.to_string());
                // `AWS_SESSION_TOKEN:<token>,...`: each value alone too.
                for item in value.split(',') {
                    if let Some((_, v)) = item.split_once(':') {
                        raw.push(v.to_string());
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for value in raw.into_iter().filter(|v| !v.is_empty()) {
        if let Some(decoded) = percent_decode(&value).filter(|d| *d != value) {
            out.push(Secret::new(decoded));
        }
        out.push(Secret::new(value));
    }
    out
}

/// Replaces each non-empty secret (and its percent-encoded form) in `text`
/// by `***`. Longest first, so a secret containing another is replaced
/// whole.
fn scrub(text: &str, secrets: &[Secret]) -> String {
    let mut values: Vec<String> = Vec::new();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        values.push(secret.expose().to_string());
        let encoded = percent_encode(secret.expose());
        if encoded != secret.expose() {
            values.push(encoded);
        }
    }
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = text.to_string();
    for value in values {
        // Very short secrets would blank out unrelated text; they are
        // still kept out of URIs by `redact_uri`.
        if value.len() >= 3 {
            out = out.replace(&value, "***");
        }
    }
    out
}

/// A MongoDB connection string with the password of its user-info, and
/// any query option that may hold a secret (a name mentioning a password,
/// secret or token, and `authMechanismProperties`), replaced by `***`.
/// Safe to log. The user-info is taken to run to the *last* `@`, so a
/// password with an unencoded `/`, `?`, `#` or `@` is hidden whole; when
/// that makes the user name unclear, the whole user-info is hidden.
///
/// ```
/// use backup_mongo::redact_uri;
/// assert_eq!(
///     redact_uri("mongodb+srv://u:p%40ss@cluster0.example.net/db?proxyPassword=x&w=majority"),
///     "mongodb+srv://u:***@cluster0.example.net/db?proxyPassword=***&w=majority"
/// );
/// assert_eq!(redact_uri("mongodb://u:p/ss@h/db"), "mongodb://***@h/db");
/// ```
pub fn redact_uri(uri: &str) -> String {
    backup_core::redact::redact_url(uri, is_sensitive_key)
        .unwrap_or_else(|| "<unparseable connection string>".to_string())
}

/// Everything but RFC 3986 unreserved characters is encoded.
const ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, ENCODED).to_string()
}

/// Decodes `%XX` escapes (a `%` without two hex digits stays as written);
/// `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|d| d.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        assert_eq!(
            percent_encode("a-_.~Z9/ :@%\u{e9}"),
            "a-_.~Z9%2F%20%3A%40%25%C3%A9"
        );
        assert_eq!(
            percent_decode("a%2F%c3%a9%zz").as_deref(),
            Some("a/\u{e9}%zz")
        );
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn parses_database_and_user() {
        let c =
            MongoConnection::from_uri("mongodb://u%40x:p%3Aw@h1,h2:27018/shop?authSource=admin")
                .unwrap();
        assert_eq!(c.database(), Some("shop"));
        assert_eq!(c.username(), Some("u@x"));
        assert_eq!(
            c.redacted_uri(),
            "mongodb://u%40x:***@h1,h2:27018/shop?authSource=admin"
        );
        let c = MongoConnection::from_uri("mongodb://h").unwrap();
        assert_eq!(c.database(), None);
        assert!(
            c.require_database("dump")
                .unwrap_err()
                .to_string()
                .contains("mongodb://h")
        );
    }

    #[test]
    fn errors_never_show_the_password() {
        for bad in [
            "mongo://u:topsecret@h/db",
            "mongodb://u:topsecret@h:notaport/db",
            "mongodb://u:topsecret@h/db?w=banana&unknownOption=1&readPreference=nope",
            "mongodb://u:topsecret@/db",
        ] {
            let err = MongoConnection::from_uri(bad).unwrap_err().to_string();
            assert!(!err.contains("topsecret"), "{err}");
        }
    }

    #[test]
    fn redact_scrubs_uri_explicit_and_encoded_passwords() {
        let c = MongoConnection::from_uri("mongodb://u:p%2Fss1@h/db?authSource=admin")
            .unwrap()
            .with_password(Secret::new("expl!cit"));
        let text =
            "failed: p/ss1 p%2Fss1 expl!cit expl%21cit mongodb://u:p%2Fss1@h/db?authSource=admin";
        let clean = c.redact(text);
        for secret in ["p/ss1", "p%2Fss1", "expl!cit", "expl%21cit"] {
            assert!(!clean.contains(secret), "{clean}");
        }
        assert!(clean.contains("mongodb://u:***@h/db"), "{clean}");
        let debug = format!("{c:?} {c}");
        for secret in ["p/ss1", "p%2Fss1", "expl!cit"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn redacts_uris() {
        assert_eq!(redact_uri("mongodb://h/db"), "mongodb://h/db");
        assert_eq!(redact_uri("mongodb://u@h/db"), "mongodb://u@h/db");
        assert_eq!(
            redact_uri("mongodb://u:a@b@h?tlsCertificateKeyFilePassword=k"),
            "mongodb://u:***@h?tlsCertificateKeyFilePassword=***"
        );
        assert_eq!(redact_uri("nonsense"), "<unparseable connection string>");
    }

    #[test]
    fn hostile_passwords_and_tokens_never_show() {
        // Every password over an alphabet of URI metacharacters, up to 4
        // long, and session tokens: errors, Display, Debug and redaction
        // never show them.
        for secret in backup_core::testing::hostile_secrets(2) {
            for uri in [
                format!("mongodb://u:{secret}@h:27017/db?authSource=admin"),
                format!("mongodb://u:{secret}@h1,h2/db"),
                format!("mongodb://u:{secret}@h:notaport/db"),
                format!(
                    "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:{secret}"
                ),
                format!("mongodb://h/db?proxyPassword={secret}&w=1"),
            ] {
                let shown = match MongoConnection::from_uri(&uri) {
                    Ok(c) => format!("{c} {c:?} {}", c.redact(&format!("driver said {uri}"))),
                    Err(e) => format!("{e} {e:?}"),
                };
                assert!(!shown.contains(&secret), "{uri} -> {shown}");
                assert!(
                    !redact_uri(&uri).contains(&secret),
                    "{uri} -> {}",
                    redact_uri(&uri)
                );
            }
        }
    }
}
