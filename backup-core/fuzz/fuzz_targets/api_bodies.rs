//! `backupd`'s request parsers on arbitrary bytes: each body type and the
//! query strings give a typed 400-class error or a value, never a panic; a
//! database registered by a tenant-bound caller always lands in that
//! caller's tenant and never carries `*_var` names from the API.
//!
//! Input: byte 0 picks the parser, the rest is the body.
#![no_main]

use std::time::Duration;

use backup_core::{Compression, Schedule};
use backupd::config::{Defaults, RawDatabase};
use backupd::http::fuzzing;
use libfuzzer_sys::fuzz_target;

fn defaults() -> Defaults {
    Defaults {
        schedule: Schedule::Disabled,
        compression: Compression::default(),
        retention_days: Some(7),
        max_backups: None,
        stale_after: Duration::from_secs(86_400),
    }
}

fn base() -> RawDatabase {
    RawDatabase {
        id: "pg_main".into(),
        name: Some("main".into()),
        engine: "postgres".into(),
        host: Some("db.internal".into()),
        port: Some(5432),
        database_name: "app".into(),
        username_var: None,
        password_var: None,
        schedule: None,
        compression: Some("zstd:3".into()),
        retention_days: Some(3),
        max_backups: Some(5),
        package: false,
        tenant: Some("acme".into()),
        stale_after: Some("86400s".into()),
        sslmode: None,
    }
}

fn check_client_error(e: &backupd::http::ApiError) {
    let (status, _, message) = fuzzing::describe(e);
    assert!((400..500).contains(&status), "status {status}: {message}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let result = match which % 6 {
        0 => fuzzing::create_backup(body),
        1 => fuzzing::restore(body),
        2 => fuzzing::cleanup(body),
        3 => match std::str::from_utf8(body) {
            Ok(q) => fuzzing::queries(q),
            Err(_) => return,
        },
        n => {
            let tenant = (n == 4).then_some("acme");
            let base = base();
            let base = (which & 0x80 != 0).then_some(&base);
            match fuzzing::database(body, &defaults(), tenant, base) {
                Ok(db) => {
                    if let Some(t) = tenant {
                        assert_eq!(db.tenant, t, "a tenant-bound caller wrote elsewhere");
                    }
                    assert!(db.username_var.is_none() && db.password_var.is_none());
                    assert!(backup_core::key::validate_id(&db.id).is_ok());
                    assert!(chrono::Duration::from_std(db.stale_after).is_ok());
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = &result {
        check_client_error(e);
    }
});
