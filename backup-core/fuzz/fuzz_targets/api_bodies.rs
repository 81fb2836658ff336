//! `backupd`'s request parsers on arbitrary bytes: each body type and the
//! query strings give a typed 400-class error or a value, never a panic; a
//! database registered by a tenant-bound caller always lands in that
//! caller's tenant and never carries `*_var` names from the API.
//!
//! Input: byte 0 picks the parser, the rest is the body.
#![no_main]

use backupd::http::fuzzing;
use libfuzzer_sys::fuzz_target;

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
            let base = fuzzing::sample_base();
            let base = (which & 0x80 != 0).then_some(&base);
            match fuzzing::database(body, &fuzzing::sample_defaults(), tenant, base) {
                Ok(db) => {
                    if let Err(broken) = fuzzing::check_registered(&db, tenant) {
                        panic!("{broken}");
                    }
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
