//! What the `delivery` fuzz target checks on every input, as a plain
//! function so that a stable test can run the same checks (the root test
//! suite includes this file). Every check uses an oracle outside the code
//! under test where there is one: serde_json's own reading of the body, the
//! `hmac` crate for signatures, and the NATS subject rules spelled out here.

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fastpix_nats::fastpix::envelope::Envelope;
use fastpix_nats::fastpix::signature::{SigningSecret, Verifier};
use fastpix_nats::fastpix::subject::{
    EventType, InvalidEventType, MAX_TYPE_BYTES, MAX_TYPE_TOKENS, SubjectPrefix,
    is_valid_subject_under, subject_for_type,
};
use hmac::{KeyInit, Mac};

/// One hostile delivery: a body, a `type` to embed, a signature header and
/// a secret, all arbitrary.
#[derive(Debug, Clone, Arbitrary)]
pub struct Input {
    pub body: Vec<u8>,
    pub event_type: String,
    pub signature: Vec<u8>,
    pub secret: Vec<u8>,
    /// Picks one of [`PREFIXES`].
    pub prefix: u8,
    /// Where a second body differs from `body`, and by which bit pattern.
    pub flip_at: u16,
    pub flip_with: u8,
}

/// Prefixes of one and of several tokens, with `_` and `-`.
pub const PREFIXES: &[&str] = &["fastpix", "acme.fp", "a-b_c.D9.x"];

/// Runs every check; panics when one fails.
pub fn check(input: &Input) {
    let prefix = SubjectPrefix::new(PREFIXES[usize::from(input.prefix) % PREFIXES.len()])
        .unwrap_or_default();
    check_body(&prefix, &input.body);
    check_type(&prefix, &input.event_type);
    let embedded = serde_json::json!({ "type": input.event_type, "id": "fuzz" }).to_string();
    check_body(&prefix, embedded.as_bytes());
    check_signature(input);
}

/// A subject is valid for publishing under `prefix` by the NATS rules,
/// checked here independently of the bridge's own validator too.
pub fn assert_valid_subject(prefix: &SubjectPrefix, subject: &str) {
    assert!(
        is_valid_subject_under(prefix, subject),
        "{subject:?} under {prefix}"
    );
    let rest = subject
        .strip_prefix(prefix.as_str())
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or_else(|| panic!("{subject:?} is outside {prefix}"));
    assert!(!rest.is_empty());
    for token in subject.split('.') {
        assert!(!token.is_empty(), "empty token in {subject:?}");
        assert!(token != "*" && token != ">", "wildcard in {subject:?}");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'*' | b'>' | b'.')),
            "{subject:?}"
        );
    }
}

/// The envelope parser never panics; what it routes is what serde_json
/// reads, lands on a valid subject, and carries only header-safe values.
pub fn check_body(prefix: &SubjectPrefix, body: &[u8]) {
    let parsed = Envelope::parse(body);
    let value = serde_json::from_slice::<serde_json::Value>(body).ok();
    match parsed {
        Ok(Envelope::Event(fields)) => {
            assert_eq!(body.trim_ascii_start().first(), Some(&b'{'));
            if let Some(v) = &value {
                assert_eq!(
                    v.get("type").and_then(|t| t.as_str()),
                    Some(fields.event_type.as_str()),
                    "routed on another type than the body holds"
                );
            }
            let subject = prefix.subject_for(&fields.event_type);
            assert_valid_subject(prefix, subject.as_str());
            for header in [
                &fields.id,
                &fields.object_type,
                &fields.object_id,
                &fields.workspace_id,
            ]
            .into_iter()
            .flatten()
            {
                assert!(!header.is_empty() && header.len() <= 256, "{header:?}");
                assert!(!header.chars().any(char::is_control), "{header:?}");
            }
        }
        Ok(Envelope::Probe) => {
            if let Some(v) = &value {
                assert!(
                    v.as_object().is_some_and(|o| !o.contains_key("type")),
                    "a probe must be an object without `type`: {v}"
                );
            }
        }
        Err(_) => {}
    }
}

/// Every `type` either maps to a valid subject under the prefix (one token
/// per dot-separated part) or is refused for a reason that holds.
pub fn check_type(prefix: &SubjectPrefix, event_type: &str) {
    match subject_for_type(prefix, event_type) {
        Ok(subject) => {
            assert_valid_subject(prefix, subject.as_str());
            assert_eq!(
                subject.as_str().split('.').count(),
                prefix.as_str().split('.').count() + event_type.split('.').count()
            );
            assert!(EventType::parse(event_type).is_ok());
        }
        Err(InvalidEventType::Empty) => assert!(event_type.is_empty()),
        Err(InvalidEventType::TooLong) => assert!(event_type.len() > MAX_TYPE_BYTES),
        Err(InvalidEventType::TooManyTokens) => {
            assert!(event_type.split('.').count() > MAX_TYPE_TOKENS)
        }
        Err(InvalidEventType::ControlCharacter) => {
            assert!(event_type.chars().any(char::is_control))
        }
    }
}

fn hmac_sha256(key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// A signature verifies only the body it was made for, under the secret it
/// was made with; an arbitrary header verifies only if it is that HMAC.
pub fn check_signature(input: &Input) {
    let (key, body) = (&input.secret, &input.body);
    let verifier = SigningSecret::from_base64(&STANDARD.encode(key))
        .map(|s| (Verifier::new(vec![s.clone()]), s));
    let Ok((verifier, secret)) = verifier else {
        assert!(key.is_empty(), "a non-empty key was refused");
        return;
    };
    let expected = hmac_sha256(key, body);
    let signature = secret.sign(body);
    assert_eq!(signature, STANDARD.encode(&expected), "not HMAC-SHA256");
    assert!(verifier.verify(signature.as_bytes(), body));

    let mut other = body.clone();
    let flip = input.flip_with.max(1);
    match other.get_mut(usize::from(input.flip_at) % body.len().max(1)) {
        Some(b) => *b ^= flip,
        None => other.push(flip),
    }
    assert!(
        !verifier.verify(signature.as_bytes(), &other),
        "a signature verified a body it was not made for"
    );

    // A key differing in its first byte is another key (trailing zero
    // bytes would not be: HMAC pads short keys with zeros).
    let mut other_key = key.clone();
    other_key[0] ^= 1;
    let under_other = STANDARD.encode(hmac_sha256(&other_key, body));
    assert!(!verifier.verify(under_other.as_bytes(), body));

    if verifier.verify(&input.signature, body) {
        let decoded = STANDARD.decode(input.signature.trim_ascii());
        assert_eq!(
            decoded.ok().as_deref(),
            Some(expected.as_slice()),
            "an arbitrary header verified without being the HMAC"
        );
    }
}
