use std::borrow::Cow;

use proptest::prelude::*;

use fastpix_nats::nats::headers::{decode_value, encode_value};

proptest! {
    #[test]
    fn encoding_is_printable_ascii_and_decodes_back(value in any::<String>()) {
        let encoded = encode_value(&value);
        prop_assert!(encoded.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"'), "{encoded:?}");
        let decoded = decode_value(&encoded);
        prop_assert_eq!(decoded.as_deref(), Some(value.as_str()));
        let unchanged = value.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%');
        prop_assert_eq!(matches!(encoded, Cow::Borrowed(_)), unchanged);
    }
}
