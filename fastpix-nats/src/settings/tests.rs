//! The settings as a whole: defaults, the file and the environment, who
//! loads them, and what they refuse; and what the sections' tests share.

use std::time::Duration;

use super::*;

pub(super) const SECRET: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM=";
pub(super) const SECRET_B: &str = "AAECAwQFBgcICQoLDA0ODw==";

/// No variables at all, for a load from a file only.
pub(super) fn env(pairs: &[(&str, &str)]) -> Option<config::Map<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

pub(super) fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    Settings::from_pairs(Purpose::Bridge, pairs)
}

pub(super) fn load_err(pairs: &[(&str, &str)]) -> String {
    load(pairs).unwrap_err().to_string()
}

#[test]
fn defaults_match_the_contract() {
    let s = load(&[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET)]).unwrap();
    assert_eq!(s.http.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(s.http.admin_listen.to_string(), "0.0.0.0:9090");
    assert_eq!(s.http.max_body_bytes, 1_048_576);
    assert_eq!(s.http.max_in_flight, 256);
    assert_eq!(s.http.queue_timeout, Duration::from_secs(1));
    assert_eq!(s.http.max_queued, 1024);
    assert_eq!(s.http.body_timeout, Duration::from_secs(10));
    assert_eq!(s.http.header_timeout, Duration::from_secs(10));
    assert_eq!(s.nats.url, vec!["nats://127.0.0.1:4222"]);
    assert_eq!(s.nats.publish_timeout, Duration::from_secs(5));
    assert_eq!(s.webhooks[0].path, "/webhooks/fastpix");
    assert!(!s.webhooks[0].allow_unsigned);
    assert_eq!(s.webhooks[0].prefix.as_str(), "fastpix");
    assert!(s.jetstream.enabled);
    assert_eq!(s.jetstream.stream, "FASTPIX");
    assert_eq!(s.jetstream.max_age, Duration::from_secs(30 * 86400));
    assert_eq!(s.jetstream.duplicate_window, Duration::from_secs(3600));
    assert_eq!(s.jetstream.replicas, 1);
    assert_eq!(s.jetstream.storage, Storage::File);
    assert_eq!(s.log.format, LogFormat::Text);
}

#[test]
fn environment_overrides_every_section() {
    let s = load(&[
        (
            "FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS",
            &format!("{SECRET}, AAECAwQFBgcICQoLDA0ODw=="),
        ),
        ("FASTPIX_BRIDGE__HTTP__LISTEN", "127.0.0.1:0"),
        ("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "2048"),
        ("FASTPIX_BRIDGE__NATS__URL", "nats://a:4222,nats://b:4222"),
        ("FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT", "750ms"),
        ("FASTPIX_BRIDGE__SUBJECT__PREFIX", "acme.fastpix"),
        ("FASTPIX_BRIDGE__JETSTREAM__ENABLED", "false"),
        ("FASTPIX_BRIDGE__JETSTREAM__MAX_AGE", "7d"),
        ("FASTPIX_BRIDGE__JETSTREAM__STORAGE", "memory"),
        ("FASTPIX_BRIDGE__LOG__FORMAT", "json"),
    ])
    .unwrap();
    assert_eq!(s.http.max_body_bytes, 2048);
    assert_eq!(s.nats.url, vec!["nats://a:4222", "nats://b:4222"]);
    assert_eq!(s.nats.publish_timeout, Duration::from_millis(750));
    assert_eq!(s.webhooks[0].prefix.as_str(), "acme.fastpix");
    assert!(!s.jetstream.enabled);
    assert_eq!(s.jetstream.max_age, Duration::from_secs(7 * 86400));
    assert_eq!(s.jetstream.storage, Storage::Memory);
    assert_eq!(s.log.format, LogFormat::Json);
    assert!(!s.webhooks[0].secrets.current().is_empty());
}

#[test]
fn a_file_is_read_and_the_environment_wins_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(
        &path,
        format!("[webhook]\nsigning_secrets = [\"{SECRET}\"]\n[http]\nmax_body_bytes = 4096\n[nats]\nurl = [\"nats://x:1\"]\n"),
    )
    .unwrap();
    let s = Settings::load_from(
        Some(&path),
        env(&[("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "8192")]),
    )
    .unwrap();
    assert_eq!(s.http.max_body_bytes, 8192);
    assert_eq!(s.nats.url, vec!["nats://x:1"]);

    std::fs::write(&path, "[http]\nlisen = \"0.0.0.0:1\"\n").unwrap();
    let err = Settings::load_from(Some(&path), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("lisen"), "{err}");
    let missing = Settings::load_from(Some(&dir.path().join("nope.toml")), env(&[])).unwrap_err();
    assert!(missing.to_string().contains("nope.toml"), "{missing}");
}

#[test]
fn clients_load_without_a_secret_but_keep_every_other_rule() {
    let client = |pairs: &[(&str, &str)]| Settings::from_pairs(Purpose::Client, pairs);
    let s = client(&[("FASTPIX_BRIDGE__NATS__URL", "nats://n:4222")]).unwrap();
    assert!(s.webhooks[0].secrets.current().is_empty());
    assert_eq!(s.nats.url, vec!["nats://n:4222"]);
    let s = client(&[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET)]).unwrap();
    assert_eq!(s.webhooks[0].secrets.current().secrets().len(), 1);
    for (pairs, key) in [
        (
            &[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", "not*base64")][..],
            "webhook.signing_secrets",
        ),
        (&[("FASTPIX_BRIDGE__NATS__URL", " , ")][..], "nats.url"),
        (
            &[("FASTPIX_BRIDGE__SUBJECT__PREFIX", "a..b")][..],
            "subject.prefix",
        ),
        (
            &[("FASTPIX_BRIDGE__JETSTREAM__STREAM", "a.b")][..],
            "jetstream.stream",
        ),
        (&[("FASTPIX_BRIDGE__NATS__LISEN", "x")][..], "lisen"),
    ] {
        let err = client(pairs).unwrap_err().to_string();
        assert!(err.contains(key), "{pairs:?}: {err}");
    }
}

#[test]
fn refusals_name_the_setting() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", "not*base64")],
            "webhook.signing_secrets",
        ),
        (
            &[("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "lots")],
            "http.max_body_bytes",
        ),
        (
            &[("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "0")],
            "http.max_body_bytes",
        ),
        (
            &[("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "100000000")],
            "http.max_body_bytes",
        ),
        (
            &[("FASTPIX_BRIDGE__HTTP__LISTEN", "nowhere")],
            "http.listen",
        ),
        (
            &[("FASTPIX_BRIDGE__HTTP__MAX_IN_FLIGHT", "0")],
            "http.max_in_flight",
        ),
        (
            &[("FASTPIX_BRIDGE__HTTP__QUEUE_TIMEOUT", "briefly")],
            "http.queue_timeout",
        ),
        (
            &[("FASTPIX_BRIDGE__HTTP__MAX_QUEUED", "-1")],
            "http.max_queued",
        ),
        (
            &[("FASTPIX_BRIDGE__HTTP__BODY_TIMEOUT", "0s")],
            "http.body_timeout",
        ),
        (
            &[("FASTPIX_BRIDGE__HTTP__HEADER_TIMEOUT", "0s")],
            "http.header_timeout",
        ),
        (
            &[("FASTPIX_BRIDGE__HTTP__HEADER_TIMEOUT", "slowly")],
            "http.header_timeout",
        ),
        (
            &[("FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT", "soon")],
            "nats.publish_timeout",
        ),
        (&[("FASTPIX_BRIDGE__NATS__URL", " , ")], "nats.url"),
        (
            &[("FASTPIX_BRIDGE__SUBJECT__PREFIX", "fastpix.>")],
            "subject.prefix",
        ),
        (
            &[("FASTPIX_BRIDGE__JETSTREAM__ENABLED", "maybe")],
            "jetstream.enabled",
        ),
        (
            &[("FASTPIX_BRIDGE__JETSTREAM__STREAM", "a.b")],
            "jetstream.stream",
        ),
        (
            &[("FASTPIX_BRIDGE__JETSTREAM__REPLICAS", "0")],
            "jetstream.replicas",
        ),
        (
            &[("FASTPIX_BRIDGE__JETSTREAM__STORAGE", "tape")],
            "jetstream.storage",
        ),
        (
            &[("FASTPIX_BRIDGE__JETSTREAM__DUPLICATE_WINDOW", "60d")],
            "jetstream.duplicate_window",
        ),
        (&[("FASTPIX_BRIDGE__LOG__FORMAT", "xml")], "log.format"),
        (
            &[("FASTPIX_BRIDGE__WEBHOOK__PATH", "hooks")],
            "webhook.path",
        ),
        (&[("FASTPIX_BRIDGE__NATS__PASSWORD", "pw")], "nats.user"),
        (
            &[("FASTPIX_BRIDGE__HTTP__ADMIN_LISTEN", "127.0.0.1:8080")],
            "http.admin_listen",
        ),
        (
            &[("FASTPIX_BRIDGE__HTTP__ADMIN_LISTEN", "9090")],
            "http.admin_listen",
        ),
    ];
    for (pairs, key) in cases {
        let mut pairs = pairs.to_vec();
        if !pairs.iter().any(|(k, _)| k.contains("SIGNING_SECRETS")) {
            pairs.push(("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET));
        }
        let err = load_err(&pairs);
        assert!(err.contains(key), "{pairs:?}: {err}");
    }
    // A value config itself cannot read names its variable too.
    for (pairs, var) in [
        (
            [("FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES", "lots")],
            "FASTPIX_BRIDGE__HTTP__MAX_BODY_BYTES",
        ),
        (
            [("FASTPIX_BRIDGE__JETSTREAM__ENABLED", "maybe")],
            "FASTPIX_BRIDGE__JETSTREAM__ENABLED",
        ),
    ] {
        let mut pairs = pairs.to_vec();
        pairs.push(("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET));
        let err = load_err(&pairs);
        assert!(err.contains(var), "{pairs:?}: {err}");
    }
}

#[test]
fn secrets_never_reach_debug_output_or_errors() {
    let s = load(&[
        ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
        ("FASTPIX_BRIDGE__NATS__TOKEN", "tok-s3cr3t"),
        ("FASTPIX_BRIDGE__NATS__USER", "u"),
        ("FASTPIX_BRIDGE__NATS__PASSWORD", "pw-s3cr3t"),
    ])
    .unwrap();
    let printed = format!("{s:?}");
    for secret in [SECRET, "tok-s3cr3t", "pw-s3cr3t"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    let err = load_err(&[("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", "zz-not*b64")]);
    assert!(!err.contains("zz-not*b64"), "{err}");
    for url in [
        "nats://u:pw-s3cr3t@h:4222",
        "nats://pw-s3cr3t@h:4222",
        "pw-s3cr3t://::",
    ] {
        let err = load_err(&[
            ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
            ("FASTPIX_BRIDGE__NATS__URL", url),
        ]);
        assert!(err.contains("nats.url") && !err.contains("s3cr3t"), "{err}");
    }
}
