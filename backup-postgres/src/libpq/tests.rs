//! How URLs, the environment, service files and password files combine.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

fn resolve(url: &str, env: &LibpqEnv) -> Result<(PgConnection, Option<PasswordOrigin>)> {
    PgConnection::from_url_like_libpq(url, env).map(|r| (r.connection, r.password_origin))
}

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn environment_fills_what_the_url_leaves_out() {
    let env = LibpqEnv::empty()
        .var("PGPORT", "57175")
        .var("PGHOST", "db.example")
        .var("PGUSER", "envuser")
        .var("PGDATABASE", "envdb")
        .var("PGSSLMODE", "require");
    let (c, origin) = resolve("postgres://app@localhost/sales", &env).unwrap();
    assert_eq!(
        (c.host(), c.port(), c.user(), c.database()),
        ("localhost", 57175, "app", "sales")
    );
    assert_eq!(c.sslmode(), Some("require"));
    assert_eq!(origin, None);
    let (c, _) = resolve("postgres://", &env).unwrap();
    assert_eq!(
        (c.host(), c.port(), c.user(), c.database()),
        ("db.example", 57175, "envuser", "envdb")
    );
    // The URL's explicit port and parameters win.
    let (c, _) = resolve("postgresql://u@h:6000/d?sslmode=disable", &env).unwrap();
    assert_eq!((c.port(), c.sslmode()), (6000, Some("disable")));
}

#[test]
fn libpq_defaults_without_anything() {
    let env = LibpqEnv::empty().os_user("alice");
    let (c, _) = resolve("postgres:///", &env).unwrap();
    assert_eq!(
        (c.host(), c.port(), c.user(), c.database()),
        (DEFAULT_SOCKET_DIR, 5432, "alice", "alice")
    );
    let err = resolve("postgres:///", &LibpqEnv::empty())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no PostgreSQL user"), "{err}");
}

#[test]
fn refuses_what_it_cannot_forward() {
    for (var, value) in [("PGHOSTADDR", "10.0.0.1"), ("PGOPTIONS", "-c x=y")] {
        let env = LibpqEnv::empty().os_user("a").var(var, value);
        let err = resolve("postgres://h/d", &env).unwrap_err().to_string();
        assert!(err.contains(var), "{err}");
    }
    let env = LibpqEnv::empty().os_user("a").var("PGHOST", "a,b");
    assert!(resolve("postgres:///d", &env).is_err());
    let env = LibpqEnv::empty().os_user("a").var("PGPORT", "http");
    let err = resolve("postgres://h/d", &env).unwrap_err().to_string();
    assert!(err.contains("not a TCP port"), "{err}");
}

#[test]
fn passfile_follows_libpq() {
    let dir = tempfile::tempdir().unwrap();
    let text = "# comment\n\
                other:*:*:*:nope\n\
                localhost:5433:sales:app:wrongport\n\
                localhost:5432:sales:app:pa\\:ss\\\\w\n\
                *:*:*:*:fallback\n";
    let pass = write(dir.path(), "pgpass", text, 0o600);
    let env = LibpqEnv::empty().var("PGPASSFILE", pass.display().to_string());
    let (c, origin) = resolve("postgres://app@localhost/sales", &env).unwrap();
    assert_eq!(c.password().unwrap().expose(), "pa:ss\\w");
    assert_eq!(origin, Some(PasswordOrigin::PassFile(pass.clone())));
    // A socket host matches "localhost".
    let (c, _) = resolve("postgres://app@/sales?host=/var/run/postgresql", &env).unwrap();
    assert_eq!(c.password().unwrap().expose(), "pa:ss\\w");
    let (c, _) = resolve("postgres://bob@elsewhere/x", &env).unwrap();
    assert_eq!(c.password().unwrap().expose(), "fallback");
    // PGPASSWORD comes before the file, the URL before both.
    let env2 = env.clone().var("PGPASSWORD", "fromenv");
    let (c, origin) = resolve("postgres://app@h/sales", &env2).unwrap();
    assert_eq!(
        (c.password().unwrap().expose(), origin),
        ("fromenv", Some(PasswordOrigin::Environment))
    );
    let (c, origin) = resolve("postgres://app:url@h/sales", &env2).unwrap();
    assert_eq!(
        (c.password().unwrap().expose(), origin),
        ("url", Some(PasswordOrigin::Url))
    );
    // ~/.pgpass when PGPASSFILE is unset; ignored when others can read it.
    write(dir.path(), ".pgpass", "*:*:*:*:home\n", 0o644);
    let env = LibpqEnv::empty().home(dir.path());
    let r = PgConnection::from_url_like_libpq("postgres://app@h/d", &env).unwrap();
    assert!(r.connection.password().is_none() && r.password_origin.is_none());
    assert!(
        r.warnings[0].contains("group or world access"),
        "{:?}",
        r.warnings
    );
    std::fs::set_permissions(
        dir.path().join(".pgpass"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (c, _) = resolve("postgres://app@h/d", &env).unwrap();
    assert_eq!(c.password().unwrap().expose(), "home");
    assert!(!format!("{env:?} {c:?}").contains("home\""));
}

#[test]
fn service_file_sits_between_url_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "services.conf",
        "[other]\nhost=wrong\n\n[sales]\n# the sales primary\nhost=db.sales\nport=6000\ndbname=sales\nuser=svc\npassword=svcpw\nsslmode=verify-full\n",
        0o600,
    );
    let env = LibpqEnv::empty()
        .var("PGSERVICEFILE", file.display().to_string())
        .var("PGHOST", "envhost")
        .var("PGPORT", "7000");
    let (c, origin) = resolve("postgres://?service=sales", &env).unwrap();
    assert_eq!(
        (c.host(), c.port(), c.user(), c.database(), c.sslmode()),
        ("db.sales", 6000, "svc", "sales", Some("verify-full"))
    );
    assert_eq!(origin, Some(PasswordOrigin::Service("sales".into())));
    let env = env.var("PGSERVICE", "sales");
    let (c, _) = resolve("postgres://app@h2/x", &env).unwrap();
    assert_eq!((c.host(), c.port(), c.user()), ("h2", 6000, "app"));
    let err = resolve("postgres://h/d?service=nope", &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"nope\" not found"), "{err}");
    let bad = write(dir.path(), "bad.conf", "[s]\nfoo=bar\n", 0o600);
    let env = LibpqEnv::empty()
        .os_user("a")
        .var("PGSERVICEFILE", bad.display().to_string());
    let err = resolve("postgres://h/d?service=s", &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported keyword \"foo\""), "{err}");
}

#[test]
fn given_parts() {
    let g = Given::of("postgres://u@[::1]:5/d");
    assert!(g.host && g.port && g.user && g.dbname);
    let g = Given::of("postgres://[::1]/");
    assert!(g.host && !g.port && !g.user && !g.dbname);
    let g = Given::of("postgres://:pw@/?port=1&dbname=x");
    assert!(!g.host && g.port && !g.user && g.dbname);
}
