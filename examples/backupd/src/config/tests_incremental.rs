//! Tests of `incremental:` and `fallback_to_full:` in database entries.

use super::*;

const BASE: &str = r#"
storage: {type: fs, path: ./backups}
auth: {tokens: [{token_var: ADMIN_TOKEN, role: admin}]}
databases:
"#;

fn load_entries(entries: &str) -> Result<Config, Problems> {
    let lookup = |k: &str| (k == "ADMIN_TOKEN").then(|| "admin-token-0123456789".to_string());
    load(
        &format!("{BASE}{entries}"),
        std::path::Path::new("/etc/backupd"),
        &lookup,
    )
}

#[test]
fn a_physical_entry_takes_incrementals_on_their_own_schedule() {
    let config = load_entries(
        r#"  - {id: c, engine: postgres, database_name: postgres, mode: physical,
     schedule: "weekly sun 03:00", incremental: {preset: daily, time: "03:00"},
     fallback_to_full: true}
  - {id: d, engine: postgres, database_name: postgres, mode: physical,
     schedule: "weekly sun 03:00", incremental: "daily 03:00"}
"#,
    )
    .unwrap();
    let [c, d] = &config.databases[..] else {
        panic!("two entries")
    };
    let shown = |s: &str| s.parse::<backup_core::Schedule>().unwrap().to_string();
    assert_eq!(c.schedule.to_string(), shown("weekly sun 03:00"));
    assert_eq!(
        c.incremental.as_ref().map(ToString::to_string),
        Some(shown("daily 03:00"))
    );
    assert!(c.fallback_to_full);
    assert!(!d.fallback_to_full, "fails closed by default");
    assert_eq!(c.incremental_job_id(), "_incremental.c");
}

#[test]
fn incrementals_are_refused_where_they_cannot_apply() {
    let long = "x".repeat(MAX_INCREMENTAL_ID + 1);
    for (entry, want) in [
        (
            r#"{id: l, engine: postgres, database_name: app, incremental: "daily 03:00"}"#,
            "databases[0].incremental: incremental base backups are for postgres entries with mode: physical",
        ),
        (
            r#"{id: m, engine: mongodb, database_name: app, incremental: "daily 03:00"}"#,
            "databases[0].incremental: incremental base backups are for postgres entries",
        ),
        (
            r#"{id: f, engine: postgres, database_name: postgres, mode: physical, fallback_to_full: true}"#,
            "databases[0].fallback_to_full: fallback_to_full goes with an incremental schedule",
        ),
        (
            &format!(
                r#"{{id: {long}, engine: postgres, database_name: postgres, mode: physical, incremental: "daily 03:00"}}"#
            ),
            "databases[0].id: at most",
        ),
    ] {
        let problems = load_entries(&format!("  - {entry}\n")).unwrap_err().0;
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
    // A bad schedule is named with its field.
    let problems = load_entries(
        r#"  - {id: p, engine: postgres, database_name: postgres, mode: physical, incremental: "daily 25:00"}
"#,
    )
    .unwrap_err()
    .0;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("databases[0].incremental: ") && p.contains("25:00")),
        "{problems:#?}"
    );
}

/// `type: incremental` (deduplicated logical dumps) beside a physical
/// entry's block-level incrementals is refused at load, naming both
/// settings; a `type` anywhere else says where a backup's type is chosen.
/// Before, the field was refused only as one of serde's unknown fields.
#[test]
fn a_dedup_type_beside_block_level_incrementals_is_a_contradiction() {
    for (entry, names) in [
        (
            r#"{id: c, engine: postgres, database_name: postgres, mode: physical, type: incremental, incremental: "daily 03:00"}"#,
            "contradicts incremental:",
        ),
        (
            r#"{id: c, engine: postgres, database_name: postgres, mode: physical, type: incremental}"#,
            "contradicts mode: physical",
        ),
    ] {
        let problems = load_entries(&format!("  - {entry}\n")).unwrap_err().0;
        let says = problems
            .iter()
            .find(|p| p.starts_with("databases[0].type: type: incremental (deduplicated"))
            .unwrap_or_else(|| panic!("no refusal of type in {problems:#?}"));
        assert!(
            says.contains(names) && says.contains("base_backup: incremental"),
            "{says}"
        );
        assert_eq!(problems.len(), 1, "{problems:#?}");
    }
    for entry in [
        r#"{id: l, engine: postgres, database_name: app, type: incremental}"#,
        r#"{id: p, engine: postgres, database_name: postgres, mode: physical, type: full}"#,
    ] {
        let problems = load_entries(&format!("  - {entry}\n")).unwrap_err().0;
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("databases[0].type: an entry has no type")
                    && p.contains("backupctl backup --type")),
            "{problems:#?}"
        );
    }
}

#[test]
fn every_entry_takes_a_drill_schedule_physical_ones_with_a_drill_dir() {
    let config = load_entries(
        r#"  - {id: s, engine: postgres, database_name: sales, drill: "weekly sun 05:00"}
"#,
    )
    .unwrap();
    let shown = "weekly sun 05:00"
        .parse::<backup_core::Schedule>()
        .unwrap()
        .to_string();
    let s = &config.databases[0];
    assert_eq!(s.drill.as_ref().map(ToString::to_string), Some(shown));
    assert_eq!(s.drill_job_id(), "_drill.s");
    let f = load_entries(
        "  - {id: f, engine: sqlite, path: /var/lib/app/app.db, drill: \"daily 03:00\"}\n",
    )
    .unwrap();
    assert!(f.databases[0].drill.is_some());
    let y = load_entries(
        "  - {id: y, engine: mariadb, host: db, database_name: x, drill: \"daily 03:00\"}\n",
    )
    .unwrap();
    assert!(y.databases[0].drill.is_some());
    let m =
        load_entries("  - {id: m, engine: mongodb, database_name: x, drill: \"daily 03:00\"}\n")
            .unwrap();
    assert!(m.databases[0].drill.is_some());
    // Physical entries drill into scratch data directories under their
    // drill_dir, which they must name; drill_dir and drill_user belong to
    // physical entries with drills only.
    let p = load_entries(
        r#"  - {id: p, engine: postgres, database_name: postgres, mode: physical, drill: "daily 03:00", drill_dir: /srv/drills, drill_user: admin}
"#,
    )
    .unwrap();
    let p = &p.databases[0];
    assert!(p.drill.is_some());
    assert_eq!(
        p.drill_dir.as_deref(),
        Some(std::path::Path::new("/srv/drills"))
    );
    assert_eq!(p.drill_user.as_deref(), Some("admin"));
    for (entry, key, why) in [
        (
            r#"  - {id: p, engine: postgres, database_name: postgres, mode: physical, drill: "daily 03:00"}"#,
            ".drill_dir",
            "required for a physical entry",
        ),
        (
            r#"  - {id: p, engine: postgres, database_name: postgres, mode: physical, drill: "daily 03:00", drill_dir: drills}"#,
            ".drill_dir",
            "absolute path",
        ),
        (
            r#"  - {id: p, engine: postgres, database_name: postgres, mode: physical, drill: "daily 03:00", drill_dir: /srv/../etc}"#,
            ".drill_dir",
            "absolute path",
        ),
        (
            r#"  - {id: p, engine: postgres, database_name: postgres, mode: physical, drill_dir: /srv/drills}"#,
            ".drill_dir",
            "only with a drill: schedule",
        ),
        (
            r#"  - {id: l, engine: postgres, database_name: x, drill: "daily 03:00", drill_dir: /srv/drills}"#,
            ".drill_dir",
            "only for postgres entries with mode: physical",
        ),
        (
            r#"  - {id: l, engine: postgres, database_name: x, drill: "daily 03:00", drill_user: admin}"#,
            ".drill_user",
            "only for postgres entries with mode: physical",
        ),
        (
            r#"  - {id: p, engine: postgres, database_name: postgres, mode: physical, drill: "daily 03:00", drill_dir: /srv/drills, drill_user: ""}"#,
            ".drill_user",
            "role name",
        ),
        (
            r#"  - {id: b, engine: postgres, database_name: x, drill: "not a schedule"}"#,
            ".drill",
            "schedule",
        ),
    ] {
        let problems = load_entries(&format!("{entry}\n")).unwrap_err();
        assert!(
            problems
                .0
                .iter()
                .any(|p| p.contains(key) && p.contains(why)),
            "{entry}: {:?}",
            problems.0
        );
    }
}

#[test]
fn keep_newest_verified_follows_the_drill_schedule_unless_given() {
    let config = load_entries(
        r#"  - {id: d, engine: postgres, database_name: a, drill: "weekly sun 05:00"}
  - {id: n, engine: postgres, database_name: b}
  - {id: off, engine: postgres, database_name: c, drill: "daily 05:00", keep_newest_verified: false}
  - {id: on, engine: postgres, database_name: e, keep_newest_verified: true}
"#,
    )
    .unwrap();
    let kept: Vec<(&str, bool)> = config
        .databases
        .iter()
        .map(|d| (d.id.as_str(), d.keep_newest_verified))
        .collect();
    assert_eq!(
        kept,
        [("d", true), ("n", false), ("off", false), ("on", true)]
    );
    let view = serde_json::to_value(DatabaseView::from(&config.databases[0])).unwrap();
    assert_eq!(view["keep_newest_verified"], true, "{view}");
    // Exactly a boolean: anything else is refused, naming the key.
    for value in ["yes", "\"true\"", "1", "[true]"] {
        let problems = load_entries(&format!(
            "  - {{id: x, engine: postgres, database_name: a, keep_newest_verified: {value}}}\n"
        ))
        .unwrap_err();
        assert!(
            problems
                .0
                .iter()
                .any(|p| p.contains("keep_newest_verified")),
            "{value}: {:?}",
            problems.0
        );
    }
}
