//! `FastPix-Signature` verification.
//!
//! FastPix signs the raw body: base64(HMAC-SHA256(key, body)) where the key is
//! the webhook's signing secret *base64-decoded*. A bridge may hold several
//! secrets (several webhooks, or a rotation in progress); a signature matching
//! any of them is accepted. Comparison is constant-time (`Mac::verify_slice`).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Name of the header FastPix puts the signature in.
pub const SIGNATURE_HEADER: &str = "FastPix-Signature";

/// A longer header cannot be a base64 SHA-256 MAC (44 bytes); refusing it
/// early keeps hostile headers from costing a decode.
const MAX_SIGNATURE_HEADER_BYTES: usize = 128;

/// A webhook signing secret as shown in the FastPix dashboard. Holds the
/// HMAC state already keyed with the decoded secret, so a check costs no key
/// setup; never printed, not even by `Debug`.
#[derive(Clone)]
pub struct SigningSecret {
    keyed: HmacSha256,
}

/// Why a configured secret was refused. Deliberately does not echo the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSecret {
    #[error("is empty")]
    Empty,
    #[error("is not valid base64 (FastPix shows signing secrets base64-encoded)")]
    NotBase64,
}

impl SigningSecret {
    /// Decodes a secret as the dashboard shows it (standard base64, padding optional).
    pub fn from_base64(encoded: &str) -> Result<Self, InvalidSecret> {
        let encoded = encoded.trim();
        if encoded.is_empty() {
            return Err(InvalidSecret::Empty);
        }
        let key = STANDARD
            .decode(encoded)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| InvalidSecret::NotBase64)?;
        if key.is_empty() {
            return Err(InvalidSecret::Empty);
        }
        Ok(Self::from_key(&key))
    }

    fn from_key(key: &[u8]) -> Self {
        // HMAC takes keys of any length, so this cannot fail.
        let keyed = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        Self { keyed }
    }

    fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }

    /// The header value FastPix would send for `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        STANDARD.encode(mac.finalize().into_bytes())
    }

    /// Constant-time check of one decoded signature against this secret.
    fn verify_raw(&self, body: &[u8], signature: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// The set of secrets one webhook accepts.
#[derive(Clone, Debug, Default)]
pub struct Verifier {
    secrets: Vec<SigningSecret>,
}

impl Verifier {
    pub fn new(secrets: Vec<SigningSecret>) -> Self {
        Self { secrets }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The secrets in the order they were configured (`send` signs with the first).
    pub fn secrets(&self) -> &[SigningSecret] {
        &self.secrets
    }

    /// True when `header` is a valid signature of `body` under any secret.
    /// Every secret is tried, so timing does not reveal which one matched.
    pub fn verify(&self, header: &[u8], body: &[u8]) -> bool {
        if header.is_empty() || header.len() > MAX_SIGNATURE_HEADER_BYTES {
            return false;
        }
        // Decoded on the stack: the length bound above makes it fit.
        let mut decoded = [0u8; MAX_SIGNATURE_HEADER_BYTES];
        let Ok(len) = STANDARD.decode_slice(header.trim_ascii(), &mut decoded) else {
            return false;
        };
        let signature = &decoded[..len];
        self.secrets
            .iter()
            .fold(false, |ok, s| s.verify_raw(body, signature) | ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed outside this crate:
    //   printf '%s' BODY | openssl dgst -sha256 -mac HMAC \
    //     -macopt hexkey:$(printf '%s' SECRET | base64 -d | xxd -p -c0) -binary | base64
    const SECRET_A: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHM="; // "secret-key-for-tests"
    const SECRET_B: &str = "AAECAwQFBgcICQoLDA0ODw=="; // bytes 0x00..0x0f
    const BODY: &[u8] = br#"{"type":"video.media.ready","id":"3f0c6f0e"}"#;
    const SIG_A: &str = "5tJAl2LA01EWBSeZM8aRWIZ7P7P6fihfnGIfvG5iT1M=";
    const SIG_B: &str = "v52BoN6WVLPE4HnLd9dXFgt2PRJDygIJ7/+taosumto=";
    const SIG_A_EMPTY: &str = "SSm+vSYDEC5lmUvzAVMkrGBLTOrF3yY83bi0TGLIdxs=";

    fn verifier(secrets: &[&str]) -> Verifier {
        Verifier::new(
            secrets
                .iter()
                .map(|s| SigningSecret::from_base64(s).unwrap())
                .collect(),
        )
    }

    #[test]
    fn known_vectors_verify() {
        assert!(verifier(&[SECRET_A]).verify(SIG_A.as_bytes(), BODY));
        assert!(verifier(&[SECRET_B]).verify(SIG_B.as_bytes(), BODY));
        assert!(verifier(&[SECRET_A]).verify(SIG_A_EMPTY.as_bytes(), b""));
        assert_eq!(
            SigningSecret::from_base64(SECRET_A).unwrap().sign(BODY),
            SIG_A
        );
    }

    #[test]
    fn any_configured_secret_is_accepted() {
        let v = verifier(&[SECRET_A, SECRET_B]);
        assert!(v.verify(SIG_A.as_bytes(), BODY));
        assert!(v.verify(SIG_B.as_bytes(), BODY));
    }

    #[test]
    fn wrong_secret_body_or_encoding_is_refused() {
        let v = verifier(&[SECRET_A]);
        assert!(!v.verify(SIG_B.as_bytes(), BODY));
        assert!(!v.verify(
            SIG_A.as_bytes(),
            b"{\"type\":\"video.media.ready\",\"id\":\"3f0c6f0f\"}"
        ));
        assert!(!v.verify(b"", BODY));
        assert!(!v.verify(b"not base64!", BODY));
        assert!(!v.verify(&[b'A'; 4096], BODY));
        // the secret's text used as the key, instead of its decoded bytes, must not verify
        let raw_key = Verifier::new(vec![SigningSecret::from_key(SECRET_A.as_bytes())]);
        assert!(!raw_key.verify(SIG_A.as_bytes(), BODY));
        assert!(!Verifier::default().verify(SIG_A.as_bytes(), BODY));
    }

    #[test]
    fn secrets_must_be_base64_and_never_print() {
        assert_eq!(
            SigningSecret::from_base64("").unwrap_err(),
            InvalidSecret::Empty
        );
        assert_eq!(
            SigningSecret::from_base64("not*base64").unwrap_err(),
            InvalidSecret::NotBase64
        );
        assert!(SigningSecret::from_base64("c2VjcmV0").is_ok());
        let s = SigningSecret::from_base64(SECRET_A).unwrap();
        let printed = format!("{s:?} {:?}", verifier(&[SECRET_A]));
        assert!(
            !printed.contains(SECRET_A) && !printed.contains("secret-key"),
            "{printed}"
        );
    }
}
