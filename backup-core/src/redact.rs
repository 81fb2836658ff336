//! Redacting connection URLs (`scheme://user:password@hosts/path?query`)
//! for errors and logs, shared by the engine adapters, which differ only
//! in which query options hold secrets.

/// `url` with the password of its user-info, and the value of every query
/// option `is_sensitive` says holds a secret (it gets the option's name as
/// written, possibly percent-encoded), replaced by `***`; `None` when `url`
/// has no `scheme://`.
///
/// The user-info is taken to run to the *last* `@`, so a password with an
/// unencoded `/`, `?`, `#` or `@` is hidden whole; when that makes the user
/// name unclear, the whole user-info is hidden.
///
/// ```
/// use backup_core::redact::redact_url;
///
/// let sensitive = |key: &str| key.eq_ignore_ascii_case("password");
/// assert_eq!(
///     redact_url("postgres://app:s3cret@db:5432/sales?password=x&sslmode=require", sensitive).as_deref(),
///     Some("postgres://app:***@db:5432/sales?password=***&sslmode=require")
/// );
/// assert_eq!(redact_url("mongodb://u:p/ss@h/db", sensitive).as_deref(), Some("mongodb://***@h/db"));
/// assert_eq!(redact_url("nonsense", sensitive), None);
/// ```
pub fn redact_url(url: &str, is_sensitive: impl Fn(&str) -> bool) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (userinfo, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let userinfo = match userinfo {
        None => String::new(),
        Some(u) if u.contains(['/', '?', '#']) => "***@".to_string(),
        Some(u) => match u.split_once(':') {
            Some((user, _)) => format!("{user}:***@"),
            None => format!("{u}@"),
        },
    };
    let (hosts, tail) = after.split_at(after.find(['/', '?', '#']).unwrap_or(after.len()));
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if is_sensitive(k) => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    Some(format!("{scheme}://{userinfo}{hosts}{tail}"))
}

/// Whether `url` has an `@` after the end of its host part: a user name or
/// password with an unencoded `/`, `?` or `#` (or an `@` in the path or
/// query), which URL parsers split in different places. Adapters refuse
/// such a URL rather than guess.
///
/// ```
/// use backup_core::redact::ambiguous_userinfo;
///
/// assert!(ambiguous_userinfo("postgres://u:p/ss@h/db"));
/// assert!(!ambiguous_userinfo("postgres://u:p%2Fss@h/db"));
/// ```
pub fn ambiguous_userinfo(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    match (rest.find(['/', '?', '#']), rest.rfind('@')) {
        (Some(end), Some(at)) => at > end,
        _ => false,
    }
}
/// Decodes the `%XX` escapes of a URL part, strictly: `None` for a `%`
/// not followed by two hex digits, or for bytes that are not UTF-8
/// (refused, never taken literally). Shared by the adapters' URL parsers.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("u%40x%2Fy").as_deref(), Some("u@x/y"));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        for bad in ["%", "%4", "%zz", "a%G0", "%ff%fe", "%C3"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }
}
