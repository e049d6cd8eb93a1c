use proptest::prelude::*;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fastpix_nats::fastpix::signature::{SigningSecret, Verifier};
use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn secret(key: &[u8]) -> SigningSecret {
    SigningSecret::from_base64(&STANDARD.encode(key)).expect("a non-empty key is a secret")
}

/// The HMAC computed directly, as FastPix does.
fn expected(key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

proptest! {
    #[test]
    fn a_signature_verifies_its_own_body_and_no_other(
        key in prop::collection::vec(any::<u8>(), 1..100),
        body in prop::collection::vec(any::<u8>(), 0..2048),
        other in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let s = secret(&key);
        let v = Verifier::new(vec![s.clone()]);
        let sig = s.sign(&body);
        prop_assert_eq!(&sig, &STANDARD.encode(expected(&key, &body)));
        prop_assert!(v.verify(sig.as_bytes(), &body));
        prop_assert_eq!(v.verify(sig.as_bytes(), &other), other == body);
    }

    #[test]
    fn an_arbitrary_header_verifies_only_if_it_is_the_hmac(
        key in prop::collection::vec(any::<u8>(), 1..100),
        body in prop::collection::vec(any::<u8>(), 0..512),
        header in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let v = Verifier::new(vec![secret(&key)]);
        if v.verify(&header, &body) {
            let decoded = STANDARD.decode(header.trim_ascii()).ok();
            prop_assert_eq!(decoded, Some(expected(&key, &body)));
        }
    }

    #[test]
    fn any_configured_secret_verifies_and_an_unconfigured_one_does_not(
        keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 1..4),
        stranger in prop::collection::vec(any::<u8>(), 1..64),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        // HMAC pads short keys with zeros, so keys equal up to trailing
        // zeros are the same key.
        let same_key = |a: &[u8], b: &[u8]| {
            let trim = |k: &[u8]| k.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
            a[..trim(a)] == b[..trim(b)]
        };
        prop_assume!(!keys.iter().any(|k| same_key(k, &stranger)));
        let v = Verifier::new(keys.iter().map(|k| secret(k)).collect());
        for k in &keys {
            prop_assert!(v.verify(secret(k).sign(&body).as_bytes(), &body));
        }
        prop_assert!(!v.verify(secret(&stranger).sign(&body).as_bytes(), &body));
    }
}
