//! Header values as an independent NATS client reads them: nats-py, run by
//! `tests/python/read_headers.py` against the stream the bridge wrote.

use std::collections::BTreeMap;

use crate::helpers::*;

/// The headers of message `seq` of `stream`, as nats-py reads them on each
/// of its two paths (`get_msg` and `fetch`).
fn read_with_nats_py(
    python: &std::path::Path,
    nats: &NatsServer,
    stream: &str,
    seq: u64,
) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/read_headers.py");
    let out = std::process::Command::new(python)
        .args([script, &nats.url(), stream, &seq.to_string()])
        .output()
        .expect("run the nats-py reader");
    assert!(
        out.status.success(),
        "nats-py reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: nats-py reader printed {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Header names are case-insensitive; nats-py keeps the case it read.
fn by_lowercase_name(headers: &serde_json::Value) -> BTreeMap<String, String> {
    headers
        .as_object()
        .expect("headers are a JSON object")
        .iter()
        .map(|(k, v)| {
            let v = v.as_str().expect("printed as a string");
            (k.to_ascii_lowercase(), v.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn non_ascii_and_percent_in_event_fields_read_back_the_same_in_nats_py() {
    let Some(python) = external_tool("TEST_PYTHON") else {
        return;
    };
    let nats = NatsServer::start();
    let app = TestApp::spawn(&nats).await;
    let event_type = "vidéo.média.prêt";
    let id = "évt 100%-1";
    let object_id = "obj-ünïcode/50%";
    let workspace_id = "espace \"été\" 😀";
    let body = serde_json::json!({
        "type": event_type,
        "id": id,
        "object": { "type": "média", "id": object_id },
        "workspace": { "id": workspace_id },
        "data": {}
    })
    .to_string();
    let resp = app.post_signed(&body).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let answer: serde_json::Value = resp.json().await.unwrap();
    let seq = answer["seq"].as_u64().expect("a sequence number");

    // The percent-encoding of the CloudEvents NATS binding, spelled out.
    let expected = BTreeMap::from(
        [
            (
                "fastpix-event-type",
                "vid%C3%A9o.m%C3%A9dia.pr%C3%AAt",
                event_type,
            ),
            ("fastpix-event-id", "%C3%A9vt%20100%25-1", id),
            ("nats-msg-id", "%C3%A9vt%20100%25-1", id),
            ("fastpix-object-type", "m%C3%A9dia", "média"),
            (
                "fastpix-object-id",
                "obj-%C3%BCn%C3%AFcode/50%25",
                object_id,
            ),
            (
                "fastpix-workspace-id",
                "espace%20%22%C3%A9t%C3%A9%22%20%F0%9F%98%80",
                workspace_id,
            ),
            ("content-type", "application/json", "application/json"),
        ]
        .map(|(name, encoded, original)| (name, (encoded, original))),
    );

    let stored = stream_messages(&nats.client().await, "FASTPIX").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].seq, seq, "the answer names the stored message");
    let read = read_with_nats_py(&python, &nats, "FASTPIX", seq);
    // The subject mapping is unchanged: non-ASCII becomes `_` in the subject.
    assert_eq!(read["subject"], "fastpix.vid_o.m_dia.pr_t", "{read}");
    for path in ["get_msg", "fetch"] {
        let headers = by_lowercase_name(&read[path]);
        for (name, (encoded, original)) in &expected {
            let value = headers
                .get(*name)
                .unwrap_or_else(|| panic!("{path}: no {name} in {headers:?}"));
            assert_eq!(value, encoded, "{path}: {name}");
            let decoded = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .expect("UTF-8 after decoding");
            assert_eq!(decoded, *original, "{path}: {name} decodes back");
        }
        assert!(
            headers
                .values()
                .all(|v| v.bytes().all(|b| b.is_ascii_graphic())),
            "{path}: every value is printable ASCII without spaces: {headers:?}"
        );
    }
}
