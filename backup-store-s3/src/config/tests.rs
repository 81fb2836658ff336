//! Parsing and validation of S3 store settings.

use super::*;

fn built(builder: S3StoreBuilder) -> Result<S3Store> {
    builder
        .credentials("id", Secret::new("s"))
        .endpoint("http://127.0.0.1:9")
        .build()
}

#[test]
fn urls_name_bucket_and_prefix() {
    let cases = [
        ("s3://bkt", "bkt", None),
        ("s3://bkt/", "bkt", None),
        ("s3://bkt/p", "bkt", Some("p")),
        ("s3://bkt/p/q/", "bkt", Some("p/q")),
        (
            "s3://my.backups-01/team/prod",
            "my.backups-01",
            Some("team/prod"),
        ),
    ];
    for (url, bucket, prefix) in cases {
        let store = built(S3StoreBuilder::from_url(url).unwrap()).unwrap();
        assert_eq!(store.bucket(), bucket, "{url}");
        assert_eq!(store.prefix(), prefix, "{url}");
    }
    for bad in ["b/p", "s3://", "s3:///p", "http://bkt/p"] {
        assert!(S3StoreBuilder::from_url(bad).is_err(), "{bad}");
    }
}

/// Issue #10 (A14): `s3://../other/pp` wrote into bucket `other`.
#[test]
fn urls_that_could_reach_another_bucket_are_refused() {
    for bad in [
        "s3://../other/pp",
        "s3://./pp",
        "s3://bkt/../other",
        "s3://bkt/a/../../other",
        "s3://bkt//abs",
        "s3://bkt/a//b",
        "s3://bkt/a/./b",
        "s3://bkt/p//",
        "s3://bkt%2f..",
        "s3://bkt?x=1",
        "s3://user@bkt",
        "s3://bkt:9000",
        "s3://BKT/p",
        "s3://bkt\\x/p",
    ] {
        let err = S3StoreBuilder::from_url(bad).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{bad}: {err:?}");
        assert!(!err.to_string().contains('\n'), "{err}");
    }
}

#[test]
fn bucket_names_follow_the_s3_rules() {
    let good = [
        "abc",
        "a-b",
        "my.backups",
        "backups-2025.example.com",
        "0123456789",
        "a1.b2.c3.d4x",
        "1.2.3",
        "1.2.3.4.5",
        &"a".repeat(63),
    ];
    for name in good {
        validate_bucket(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        built(S3StoreBuilder::new(name.to_string())).unwrap();
    }
    let bad = [
        ("", "3 to 63"),
        ("ab", "3 to 63"),
        (&"a".repeat(64), "3 to 63"),
        ("..", "3 to 63"),
        ("...", "start and end"),
        ("a..b", "adjacent periods"),
        ("Backups", "'B' is not allowed"),
        ("back_ups", "'_' is not allowed"),
        ("back ups", "' ' is not allowed"),
        ("a/b", "'/' is not allowed"),
        ("bkt%2f", "'%' is not allowed"),
        ("bäckups", "'ä' is not allowed"),
        ("-abc", "start and end"),
        ("abc-", "start and end"),
        (".abc", "start and end"),
        ("abc.", "start and end"),
        ("192.168.5.4", "IP address"),
        ("10.0.0.1", "IP address"),
        ("xn--bcher-kva", "prefix \"xn--\""),
        ("sthree-bucket", "prefix \"sthree-\""),
        ("amzn-s3-demo-bucket", "prefix \"amzn-s3-demo-\""),
        ("mybucket-s3alias", "suffix \"-s3alias\""),
        ("mybucket--ol-s3", "suffix \"--ol-s3\""),
        ("mybucket.mrap", "suffix \".mrap\""),
        ("mybucket--usw2-az1--x-s3", "suffix \"--x-s3\""),
        ("mybucket--table-s3", "suffix \"--table-s3\""),
    ];
    for (name, why) in bad {
        let err = validate_bucket(name).unwrap_err().to_string();
        assert!(err.contains(why), "{name:?}: {err}");
        let err = built(S3StoreBuilder::new(name.to_string())).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{name:?}: {err:?}");
    }
}

#[test]
fn prefixes_are_checked() {
    let ok = [
        ("", None),
        ("p", Some("p")),
        ("p/", Some("p")),
        ("team/prod", Some("team/prod")),
        ("team/prod/", Some("team/prod")),
    ];
    for (prefix, expected) in ok {
        assert_eq!(validate_prefix(prefix).unwrap().as_deref(), expected);
    }
    for bad in [
        "/", "/p", "//p", "p//", "a//b", "..", "a/..", "../x", "a/./b", "a\\b",
    ] {
        let err = validate_prefix(bad).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{bad:?}: {err:?}");
        let err = built(S3StoreBuilder::new("bkt".into()).prefix(bad)).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{bad:?}: {err:?}");
    }
}

#[test]
fn virtual_hosted_endpoints_get_the_bucket_in_the_host() {
    let url = url::Url::parse("https://s3.example.com:9000").unwrap();
    assert_eq!(bucket_host(&url, "bkt"), "https://bkt.s3.example.com:9000");
}

#[test]
fn invalid_settings_are_config_errors() {
    let ok = || S3StoreBuilder::new("bkt".into()).credentials("id", Secret::new("s"));
    let cases = [
        ok().prefix("a//b"),
        ok().prefix("../x"),
        ok().part_size(1024),
        ok().upload_concurrency(0),
        ok().endpoint("not a url"),
        ok().endpoint("ftp://host"),
        S3StoreBuilder::new("bkt".into()),
        S3StoreBuilder::new("".into()).credentials("id", Secret::new("s")),
        S3StoreBuilder::new("a/b".into()).credentials("id", Secret::new("s")),
        S3StoreBuilder::new("bkt".into()).credentials("", Secret::new("s")),
    ];
    for builder in cases {
        let shown = format!("{builder:?}");
        let err = builder.build().unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{shown}: {err:?}");
    }
}

#[test]
fn debug_hides_the_secret() {
    let builder = S3StoreBuilder::new("bkt".into())
        .credentials("AKIDEXAMPLE", Secret::new("wJalrXUtnFEMI"))
        .session_token(Secret::new("FwoGZXIvYXdzEXAMPLETOKEN"));
    let shown = format!("{builder:?}");
    assert!(shown.contains("AKIDEXAMPLE"));
    assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
    assert!(!shown.contains("EXAMPLETOKEN"), "{shown}");
    let store = builder.endpoint("http://127.0.0.1:9").build().unwrap();
    let shown = format!("{store:?} {store}");
    assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
    assert!(!shown.contains("EXAMPLETOKEN"), "{shown}");
}
