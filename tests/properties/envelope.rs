use proptest::prelude::*;

use fastpix_nats::fastpix::envelope::{Envelope, InvalidBody};
use fastpix_nats::fastpix::subject::EventType;

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{0,6}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Object members other than `type`, as `"key":value` texts.
fn members() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        (
            "[a-z]{1,8}".prop_filter("not type", |k| k != "type"),
            json_value(),
        )
            .prop_map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k))),
        0..6,
    )
}

/// `{…}` with the given members in the given order.
fn object(members: &[String]) -> String {
    format!("{{{}}}", members.join(","))
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::parse(&body);
    }

    #[test]
    fn a_string_type_anywhere_in_an_object_routes_on_exactly_that_type(
        t in any::<String>(),
        mut members in members(),
        at in any::<prop::sample::Index>(),
    ) {
        let i = at.index(members.len() + 1);
        members.insert(i, format!("\"type\":{}", serde_json::Value::from(t.clone())));
        let parsed = Envelope::parse(object(&members).as_bytes());
        match EventType::parse(&t) {
            Ok(_) => match parsed {
                Ok(Envelope::Event(f)) => prop_assert_eq!(f.event_type.as_str(), t.as_str()),
                other => prop_assert!(false, "{other:?}"),
            },
            Err(reason) => prop_assert_eq!(parsed, Err(InvalidBody::Type(reason))),
        }
    }

    #[test]
    fn a_second_type_key_is_always_refused(
        a in any::<String>(),
        b in json_value(),
        mut members in members(),
        first in any::<prop::sample::Index>(),
        second in any::<prop::sample::Index>(),
    ) {
        members.insert(first.index(members.len() + 1), format!("\"type\":{}", serde_json::Value::from(a)));
        members.insert(second.index(members.len() + 1), format!("\"type\":{b}"));
        prop_assert_eq!(
            Envelope::parse(object(&members).as_bytes()),
            Err(InvalidBody::DuplicateType)
        );
    }

    #[test]
    fn an_object_without_type_is_a_probe_and_anything_else_is_not_an_event(
        members in members(),
        other in json_value(),
    ) {
        prop_assert_eq!(Envelope::parse(object(&members).as_bytes()), Ok(Envelope::Probe));
        if !other.is_object() {
            let parsed = Envelope::parse(other.to_string().as_bytes());
            prop_assert!(matches!(parsed, Err(InvalidBody::NotJsonObject(_))), "{parsed:?}");
        }
    }

    #[test]
    fn header_fields_are_present_only_when_safe_to_carry(
        id in json_value(),
        object_id in json_value(),
    ) {
        let body = serde_json::json!({
            "type": "video.media.ready",
            "id": id,
            "object": { "type": "media", "id": object_id },
        });
        let Ok(Envelope::Event(f)) = Envelope::parse(body.to_string().as_bytes()) else {
            panic!("{body}");
        };
        for (value, header) in [(&id, &f.id), (&object_id, &f.object_id)] {
            let carried = match value {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
            .filter(|s| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control));
            prop_assert_eq!(header, &carried);
        }
    }
}
