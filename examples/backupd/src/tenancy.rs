//! The tenant model: which database a registered entry may name, and
//! which databases belong to which tenant.
//!
//! - A database (engine + server + database name) belongs to at most one
//!   tenant. Names are compared case-insensitively for both engines
//!   (MongoDB's own rule; for PostgreSQL this refuses more than needed,
//!   never less). Servers are compared by port and by host after
//!   normalisation (case, trailing dot, brackets; `localhost`, `127.x`,
//!   `::1`, `0.0.0.0` and socket directories are all "this machine"); two
//!   different spellings are then resolved through DNS and count as one
//!   server when they share an address — or when either cannot be
//!   resolved (fail closed).
//! - System databases are never registered nor restored over:
//!   `postgres`, `template0`, `template1` for PostgreSQL; `admin`,
//!   `local`, `config` and restore staging names for MongoDB; `mysql`,
//!   `information_schema`, `performance_schema`, `sys` and names starting
//!   with `_backup_` (restore staging) for MySQL; any case.
//! - Tokens bound to a tenant register databases only on the hosts (and
//!   with the names) that tenant's `tenants.<t>` entry allows, and never
//!   move a registered entry to another host, port, engine or database.

use std::net::IpAddr;
use std::time::Duration;

use crate::engine::Engine;

/// How long a DNS lookup may take before the hosts count as the same.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The canonical form of a host for comparisons: lower case, no trailing
/// dot or brackets, IPv4-mapped IPv6 as IPv4, and `loopback` for every
/// name of this machine.
pub fn normalise_host(host: &str) -> String {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let h = h
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(&h)
        .to_string();
    if h.is_empty() || h.starts_with('/') || h == "localhost" || h.ends_with(".localhost") {
        return "loopback".into();
    }
    match h.parse::<IpAddr>() {
        Ok(ip) => {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            };
            if ip.is_loopback() || ip.is_unspecified() {
                "loopback".into()
            } else {
                ip.to_string()
            }
        }
        Err(_) => h,
    }
}

fn is_local(ip: &IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
        v4 => *v4,
    };
    ip.is_loopback() || ip.is_unspecified()
}

async fn resolve(host: &str, port: u16) -> Option<Vec<IpAddr>> {
    let h = host.trim().trim_end_matches('.');
    let h = h
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(h);
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((h, port))).await {
        Ok(Ok(addrs)) => {
            let ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            (!ips.is_empty()).then_some(ips)
        }
        _ => None,
    }
}

/// Whether `a` and `b` (on the same port) may be the same server.
pub async fn may_be_same_host(a: &str, b: &str, port: u16) -> bool {
    let (na, nb) = (normalise_host(a), normalise_host(b));
    if na == nb {
        return true;
    }
    let (Some(ra), Some(rb)) = (resolve(a, port).await, resolve(b, port).await) else {
        // Cannot tell: count them as one server.
        return true;
    };
    ra.iter().any(|ip| rb.contains(ip)) || (ra.iter().any(is_local) && rb.iter().any(is_local))
}

/// Whether two database names may name the same database.
pub fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Names backupd never registers nor restores over.
pub fn reserved(engine: Engine, name: &str) -> bool {
    let system: &[&str] = match engine {
        Engine::Postgres => &["postgres", "template0", "template1"],
        Engine::Mongodb => &["admin", "local", "config"],
        Engine::Mysql => &["mysql", "information_schema", "performance_schema", "sys"],
        Engine::Sqlite => &[],
    };
    let lower = name.to_ascii_lowercase();
    system.iter().any(|s| s.eq_ignore_ascii_case(name))
        || (engine == Engine::Mongodb && lower.contains("__restore_"))
        || (engine == Engine::Mysql
            && (lower.starts_with(backup_mysql::STAGING_PREFIX) || lower.starts_with("_backup_")))
}

/// Checks a database name for `engine`: length, characters, system names.
pub fn check_database_name(engine: Engine, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 63 {
        return Err("must be at most 63 bytes".into());
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if engine == Engine::Mongodb
        && name.contains([
            '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '#', '@',
        ])
    {
        return Err(format!("{name:?} is not a valid MongoDB database name"));
    }
    // MySQL keeps a database as a directory: no path characters, and no
    // trailing space (the server refuses it).
    if engine == Engine::Mysql && (name.contains(['/', '\\', '.', '\0']) || name.ends_with(' ')) {
        return Err(format!("{name:?} is not a valid MySQL database name"));
    }
    // A SQLite database is a file beside the entry's: a plain name, not a
    // path, a hidden file (restore temporaries and spools are) or one of
    // SQLite's side files.
    if engine == Engine::Sqlite
        && (name.contains(['/', '\\', '\0'])
            || name.starts_with('.')
            || ["-wal", "-shm", "-journal"]
                .iter()
                .any(|s| name.ends_with(s)))
    {
        return Err(format!(
            "{name:?} is not a plain SQLite file name (no path, no leading dot, no -wal/-shm/-journal)"
        ));
    }
    if reserved(engine, name) {
        return Err(format!(
            "{name:?} is a system database: backupd neither backs it up nor restores over it"
        ));
    }
    Ok(())
}

/// One `tenants.<t>.allowed_hosts` entry: a host, optionally with a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Normalised host.
    pub host: String,
    /// Port, or any.
    pub port: Option<u16>,
}

impl HostPattern {
    /// Parses `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6
    /// address.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let t = text.trim();
        let bad = |why: &str| Err(format!("{text:?}: {why}"));
        if t.is_empty() {
            return bad("must not be empty");
        }
        if t.contains(|c: char| c.is_whitespace() || c.is_control() || "/@?#,\\".contains(c)) {
            return bad("expected a host name or address, optionally with :port");
        }
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let Some((host, after)) = rest.split_once(']') else {
                return bad("unclosed '['");
            };
            match after {
                "" => (host, None),
                p => match p.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None => return bad("expected :port after ']'"),
                },
            }
        } else if t.parse::<IpAddr>().is_ok() {
            (t, None)
        } else {
            match t.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (t, None),
            }
        };
        if host.is_empty() || host.len() > 253 {
            return bad("the host must be 1 to 253 characters");
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return bad("the port must be 1-65535"),
            },
        };
        Ok(HostPattern {
            host: normalise_host(host),
            port,
        })
    }

    /// Whether `host:port` matches.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        self.host == normalise_host(host) && self.port.is_none_or(|p| p == port)
    }
}

/// What tokens bound to one tenant may register (`tenants.<t>`).
#[derive(Debug, Clone, Default)]
pub struct TenantPolicy {
    /// Hosts (and ports) entries may point at. Empty: none.
    pub allowed_hosts: Vec<HostPattern>,
    /// Database names (exact, or a prefix ending in `*`); empty: any name
    /// that is neither a system database nor another tenant's.
    pub allowed_databases: Vec<String>,
}

impl TenantPolicy {
    /// Whether an entry on `host:port` is allowed.
    pub fn allows_host(&self, host: &str, port: u16) -> bool {
        self.allowed_hosts.iter().any(|p| p.matches(host, port))
    }

    /// Whether a database (or restore target) named `name` is allowed.
    pub fn allows_database(&self, name: &str) -> bool {
        self.allowed_databases.is_empty()
            || self
                .allowed_databases
                .iter()
                .any(|p| match p.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name == p,
                })
    }
}

/// Checks an `allowed_databases` pattern.
pub fn check_database_pattern(p: &str) -> Result<(), String> {
    let name = p.strip_suffix('*').unwrap_or(p);
    if name.is_empty() {
        return Err(format!(
            "{p:?}: a bare '*' allows everything; omit allowed_databases instead"
        ));
    }
    if name.contains(['*', '?']) || name.chars().any(char::is_control) || name.len() > 63 {
        return Err(format!(
            "{p:?}: expected a database name or a prefix ending in '*'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised_conservatively() {
        for local in [
            "localhost",
            "LOCALHOST.",
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "[::1]",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "/var/run/postgresql",
            "db.localhost",
        ] {
            assert_eq!(normalise_host(local), "loopback", "{local}");
        }
        assert_eq!(normalise_host("DB.Example.com."), "db.example.com");
        assert_eq!(normalise_host("::ffff:10.0.0.1"), "10.0.0.1");
    }

    #[tokio::test]
    async fn spellings_of_one_server_are_one_server() {
        assert!(may_be_same_host("localhost", "127.0.0.1", 5432).await);
        // getaddrinfo reads "127.1" as 127.0.0.1.
        assert!(may_be_same_host("127.1", "127.0.0.1", 5432).await);
        assert!(!may_be_same_host("10.1.2.3", "10.1.2.4", 5432).await);
        // Unresolvable: assumed to be the same.
        assert!(may_be_same_host("no-such-host.invalid", "10.1.2.4", 5432).await);
    }

    #[test]
    fn system_names_in_any_case() {
        for n in [
            "admin",
            "Admin",
            "LOCAL",
            "config",
            "shop__restore_1a2b3c4d",
        ] {
            assert!(reserved(Engine::Mongodb, n), "{n}");
            assert!(check_database_name(Engine::Mongodb, n).is_err(), "{n}");
        }
        for n in ["postgres", "Template0", "TEMPLATE1"] {
            assert!(reserved(Engine::Postgres, n), "{n}");
        }
        assert!(!reserved(Engine::Postgres, "admin"));
        assert!(check_database_name(Engine::Mongodb, "a.b").is_err());
        assert!(check_database_name(Engine::Postgres, &"x".repeat(64)).is_err());
        assert!(check_database_name(Engine::Postgres, "shop").is_ok());
    }

    #[test]
    fn host_patterns() {
        let p = HostPattern::parse("db.internal:5432").unwrap();
        assert!(p.matches("DB.internal", 5432));
        assert!(!p.matches("db.internal", 5433));
        let any = HostPattern::parse("127.0.0.1").unwrap();
        assert!(any.matches("localhost", 1));
        let v6 = HostPattern::parse("[fd00::1]:27017").unwrap();
        assert!(v6.matches("fd00::1", 27017));
        assert!(
            HostPattern::parse("fd00::1")
                .unwrap()
                .matches("[fd00::1]", 5)
        );
        for bad in ["", "a b", "h:0", "h:99999", "[::1", "user@h", "h/x"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
        let policy = TenantPolicy {
            allowed_hosts: vec![p],
            allowed_databases: vec!["shop_a*".into(), "exact".into()],
        };
        assert!(policy.allows_database("shop_a_2"));
        assert!(policy.allows_database("exact"));
        assert!(!policy.allows_database("exact2"));
        assert!(!policy.allows_database("shop_b"));
        assert!(check_database_pattern("*").is_err());
    }
}
