//! Where signed bodies that are not routable events are kept: on
//! `<prefix>_invalid` (outside the events' `<prefix>.>` capture), in a
//! bounded stream of their own, `<stream>_INVALID`, so that they never take
//! the events stream's room. The bridge writes them, the inspector reads them.

use async_nats::jetstream::stream;

/// Most bytes kept. A signed body that is not an event is FastPix changing
/// its format or a bug: a few hundred at most before someone looks.
pub const MAX_BYTES: i64 = 64 * 1024 * 1024;

/// `<stream>_INVALID`, next to the events stream `stream`.
pub fn stream_name(stream: &str) -> String {
    format!("{stream}_INVALID")
}

/// The stream the bodies of the events stream `events` are kept in,
/// capturing `subjects` (each webhook's `<prefix>_invalid`): the events
/// stream's own configuration (age, replicas, storage, message size,
/// `discard = new`) with a small bound. Full, it refuses like the events
/// stream: the delivery is then answered `503 storage_full` and retried,
/// never dropped.
pub fn stream_config(events: &stream::Config, subjects: Vec<String>) -> stream::Config {
    stream::Config {
        name: stream_name(&events.name),
        subjects,
        max_bytes: MAX_BYTES,
        ..events.clone()
    }
}

#[cfg(test)]
mod tests {
    use crate::fastpix::subject::SubjectPrefix;

    #[test]
    fn the_subject_is_outside_the_events_capture() {
        let prefix = SubjectPrefix::new("acme.fastpix").unwrap();
        let s = prefix.invalid_subject();
        assert_eq!(s.as_str(), "acme.fastpix_invalid");
        assert!(!s.as_str().starts_with(&format!("{}.", prefix.as_str())));
        assert_eq!(super::stream_name("FASTPIX"), "FASTPIX_INVALID");
    }
}
