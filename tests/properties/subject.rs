use proptest::prelude::*;

use fastpix_nats::fastpix::subject::{
    InvalidEventType, MAX_TYPE_BYTES, MAX_TYPE_TOKENS, SubjectPrefix, is_valid_subject_under,
    subject_for_type,
};

fn prefix() -> impl Strategy<Value = SubjectPrefix> {
    "[A-Za-z0-9_-]{1,8}(\\.[A-Za-z0-9_-]{1,8}){0,3}"
        .prop_map(|p| SubjectPrefix::new(&p).expect("the pattern is a valid prefix"))
}

/// Valid under `prefix` by the NATS rules, checked without this module's validator.
fn assert_publishable(prefix: &SubjectPrefix, subject: &str) {
    let rest = subject
        .strip_prefix(prefix.as_str())
        .and_then(|r| r.strip_prefix('.'));
    assert!(
        rest.is_some_and(|r| !r.is_empty()),
        "{subject:?} not under {prefix}"
    );
    for token in subject.split('.') {
        assert!(
            !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()),
            "{subject:?}"
        );
        assert!(!token.contains(['*', '>']), "wildcard in {subject:?}");
    }
    assert!(is_valid_subject_under(prefix, subject), "{subject:?}");
}

proptest! {
    #[test]
    fn any_string_maps_inside_the_prefix_or_is_refused_for_its_reason(
        prefix in prefix(),
        t in any::<String>(),
    ) {
        match subject_for_type(&prefix, &t) {
            Ok(s) => {
                assert_publishable(&prefix, s.as_str());
                prop_assert_eq!(
                    s.as_str().split('.').count(),
                    prefix.as_str().split('.').count() + t.split('.').count()
                );
            }
            Err(InvalidEventType::Empty) => prop_assert!(t.is_empty()),
            Err(InvalidEventType::TooLong) => prop_assert!(t.len() > MAX_TYPE_BYTES),
            Err(InvalidEventType::TooManyTokens) => {
                prop_assert!(t.split('.').count() > MAX_TYPE_TOKENS)
            }
            Err(InvalidEventType::ControlCharacter) => {
                prop_assert!(t.chars().any(char::is_control))
            }
        }
    }

    #[test]
    fn dotted_types_of_hostile_tokens_stay_inside_the_prefix(
        prefix in prefix(),
        tokens in prop::collection::vec("[ -~\u{a0}-\u{17f}\u{2028}]{0,6}", 1..=16),
    ) {
        let t = tokens.join(".");
        if let Ok(s) = subject_for_type(&prefix, &t) {
            assert_publishable(&prefix, s.as_str());
        } else {
            // No control characters in these tokens: only the limits refuse.
            prop_assert!(
                t.is_empty() || t.len() > MAX_TYPE_BYTES || t.split('.').count() > MAX_TYPE_TOKENS
            );
        }
    }

    #[test]
    fn well_formed_types_map_to_themselves(
        prefix in prefix(),
        t in "[A-Za-z0-9_-]{1,12}(\\.[A-Za-z0-9_-]{1,12}){0,8}",
    ) {
        let s = subject_for_type(&prefix, &t).unwrap();
        prop_assert_eq!(s.as_str(), format!("{prefix}.{t}"));
    }

    #[test]
    fn a_prefix_is_accepted_only_when_every_token_is_publishable(p in any::<String>()) {
        let publishable = !p.is_empty()
            && p.split('.').all(|t| {
                !t.is_empty()
                    && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        prop_assert_eq!(SubjectPrefix::new(&p).is_ok(), publishable);
    }
}
