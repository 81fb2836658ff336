//! Validated object keys: the only way a path reaches a [`Store`](crate::Store).

use std::fmt;

use crate::error::{Error, Result};

/// Longest key accepted, in bytes (S3's limit is 1024).
pub const MAX_KEY_LEN: usize = 1024;

/// A relative, `/`-separated object key that is safe to use as a file path
/// or an S3 object name.
///
/// Construction rejects: the empty key, absolute paths (`/x`, `\x`, `C:`),
/// empty segments (`a//b`, trailing `/`), `.` and `..` segments, backslashes,
/// control characters (including NUL and newlines), and keys longer than
/// [`MAX_KEY_LEN`]. Every store adapter receives keys only through this type,
/// so a traversal such as `../../etc/passwd` can never reach a filesystem.
///
/// ```
/// use backup_core::key::Key;
/// assert!(Key::new("tenant/db/2025/11/backup.dump").is_ok());
/// assert!(Key::new("../../etc/passwd").is_err());
/// assert!(Key::new("/etc/passwd").is_err());
/// assert!(Key::new("a//b").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    /// Validates `key`; see the type docs for the rules.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        validate(&key)?;
        Ok(Key(key))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Appends one or more `/`-separated segments, validating them.
    pub fn join(&self, rest: &str) -> Result<Key> {
        Key::new(format!("{}/{}", self.0, rest))
    }

    /// The last segment (the "file name").
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// Everything before the last segment, if there is a parent.
    pub fn parent(&self) -> Option<Key> {
        self.0.rsplit_once('/').map(|(p, _)| Key(p.to_string()))
    }

    /// Whether `self` equals `prefix` or lies under it as a directory.
    pub fn starts_with(&self, prefix: &Key) -> bool {
        self.0 == prefix.0
            || (self.0.len() > prefix.0.len()
                && self.0.starts_with(&prefix.0)
                && self.0.as_bytes()[prefix.0.len()] == b'/')
    }

    /// The segments of the key.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Key {
    type Error = Error;
    fn try_from(value: &str) -> Result<Self> {
        Key::new(value)
    }
}

impl TryFrom<String> for Key {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Key::new(value)
    }
}

fn invalid(key: &str, reason: &'static str) -> Error {
    Error::InvalidKey {
        key: key.chars().take(200).collect(),
        reason,
    }
}

fn validate(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(invalid(key, "empty key"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(invalid(key, "key longer than 1024 bytes"));
    }
    if key.starts_with('/') {
        return Err(invalid(key, "absolute path"));
    }
    if key.contains('\\') {
        return Err(invalid(key, "backslash in key"));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid(key, "control character in key"));
    }
    // `C:` style drive prefixes are absolute on Windows.
    let first = key.split('/').next().unwrap_or_default();
    if first.len() >= 2 && first.as_bytes()[1] == b':' && first.as_bytes()[0].is_ascii_alphabetic()
    {
        return Err(invalid(key, "absolute path (drive letter)"));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(invalid(key, "empty path segment")),
            "." | ".." => return Err(invalid(key, "path traversal segment")),
            _ => {}
        }
    }
    Ok(())
}

/// Validates a single identifier used to address things (backup ids,
/// source ids, tenant names): ASCII letters, digits, `-`, `_` and `.`,
/// 1 to 128 characters, not starting with `.`.
///
/// ```
/// use backup_core::key::validate_id;
/// assert!(validate_id("pg_ventas-prod.v2").is_ok());
/// assert!(validate_id("../../etc/passwd").is_err());
/// assert!(validate_id("a/b").is_err());
/// ```
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 128 {
        return Err(invalid(id, "identifier must be 1 to 128 characters"));
    }
    if id.starts_with('.') {
        return Err(invalid(id, "identifier may not start with '.'"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(invalid(
            id,
            "identifier may contain only ASCII letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for k in [
            "a",
            "a/b/c.dump.zst",
            "tenant-1/src_2/2025/11/manual-pgdump-db-20251126T030000Z-ab12.dump",
            "with space/ok",
            "unicode/ñandú",
            "dots.../fine..name",
        ] {
            Key::new(k).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
    }

    #[test]
    fn rejects_dangerous_keys() {
        let cases = [
            ("", "empty key"),
            ("/etc/passwd", "absolute path"),
            ("../../etc/passwd", "path traversal segment"),
            ("a/../../b", "path traversal segment"),
            ("a/./b", "path traversal segment"),
            ("..", "path traversal segment"),
            ("a//b", "empty path segment"),
            ("a/b/", "empty path segment"),
            ("a\\..\\b", "backslash in key"),
            ("a\0b", "control character in key"),
            ("a\nb", "control character in key"),
            ("a\u{7f}b", "control character in key"),
            ("C:/windows", "absolute path (drive letter)"),
        ];
        for (k, reason) in cases {
            match Key::new(k) {
                Err(Error::InvalidKey { reason: r, .. }) => assert_eq!(r, reason, "{k:?}"),
                other => panic!("{k:?} gave {other:?}"),
            }
        }
        assert!(Key::new("x".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn prefix_matching_is_by_segment() {
        let k = Key::new("a/bc/d").unwrap();
        assert!(k.starts_with(&Key::new("a").unwrap()));
        assert!(k.starts_with(&Key::new("a/bc").unwrap()));
        assert!(!k.starts_with(&Key::new("a/b").unwrap()));
        assert_eq!(k.file_name(), "d");
        assert_eq!(k.parent().unwrap().as_str(), "a/bc");
    }

    #[test]
    fn ids_are_strict() {
        assert!(validate_id("20251126T030000Z-1a2b3c4d").is_ok());
        for bad in ["", ".hidden", "a/b", "..", "a b", "x\n", &"x".repeat(129)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
