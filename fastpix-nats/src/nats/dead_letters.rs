//! Where dead letters are kept and how they are marked: the names consumers
//! write under and the inspector and `dead-letters` read, fixed here (the
//! twin of the bridge's `nats::refused`).
//!
//! - the stream [`dead_letter_stream`]: `<events stream>_DEAD_LETTERS`
//!   (`FASTPIX_DEAD_LETTERS` by default);
//! - one subject per consumer, [`dead_letter_subject`]:
//!   `<prefix>_dead_letters.<consumer>`, outside the events stream's
//!   `<prefix>.>` so the bridge's stream never captures a dead letter;
//! - the message: the original payload byte for byte, the original headers
//!   (but `Nats-Msg-Id`, replaced so that the dead letters of two consumers
//!   for one event are both kept) and the `FastPix-Dead-Letter-*` headers
//!   ([`dead_letter_headers`], read back by [`LetterFields::read`]);
//! - redrives go to `<prefix>_redrive.<consumer>` ([`redrive_subject`]) in
//!   the work-queue stream `<events stream>_REDRIVE` ([`redrive_stream`]).

use async_nats::HeaderMap;

use crate::fastpix::subject::SubjectPrefix;
use crate::nats::headers;

/// Appended to the events stream's name: `FASTPIX_DEAD_LETTERS`.
pub const DEAD_LETTER_STREAM_SUFFIX: &str = "_DEAD_LETTERS";
/// The dead-letter stream of the default events stream `FASTPIX`.
pub const DEFAULT_DEAD_LETTER_STREAM: &str = "FASTPIX_DEAD_LETTERS";
/// Appended to the subject prefix: `fastpix_dead_letters.<consumer>`.
pub const DEAD_LETTER_SUBJECT_SUFFIX: &str = "_dead_letters";
/// Appended to the events stream's name: `FASTPIX_REDRIVE`.
pub const REDRIVE_STREAM_SUFFIX: &str = "_REDRIVE";
/// Appended to the subject prefix: `fastpix_redrive.<consumer>`.
pub const REDRIVE_SUBJECT_SUFFIX: &str = "_redrive";

/// The durable consumer that gave up on the event.
pub const HEADER_CONSUMER: &str = "FastPix-Dead-Letter-Consumer";
/// Why: the handler's reason for a rejection, or that the deliveries ran out.
pub const HEADER_REASON: &str = "FastPix-Dead-Letter-Reason";
/// How many times the event was delivered to that consumer.
pub const HEADER_DELIVERIES: &str = "FastPix-Dead-Letter-Deliveries";
/// The last failure: a retry's error, a panic, a time limit.
pub const HEADER_LAST_ERROR: &str = "FastPix-Dead-Letter-Last-Error";
/// The event's sequence in the events stream.
pub const HEADER_STREAM_SEQ: &str = "FastPix-Dead-Letter-Stream-Seq";
/// The subject the event was published on.
pub const HEADER_SUBJECT: &str = "FastPix-Dead-Letter-Subject";

/// Every `FastPix-Dead-Letter-*` header.
pub const HEADERS: [&str; 6] = [
    HEADER_CONSUMER,
    HEADER_REASON,
    HEADER_DELIVERIES,
    HEADER_LAST_ERROR,
    HEADER_STREAM_SEQ,
    HEADER_SUBJECT,
];

/// Longest header value written; reasons and errors are cut there.
const MAX_HEADER_VALUE: usize = 1024;

/// `<events stream>_DEAD_LETTERS`.
pub fn dead_letter_stream(events_stream: &str) -> String {
    format!("{events_stream}{DEAD_LETTER_STREAM_SUFFIX}")
}

/// `<prefix>_dead_letters.<consumer>`.
pub fn dead_letter_subject(prefix: &SubjectPrefix, consumer: &str) -> String {
    format!("{}.{consumer}", dead_letter_root(prefix))
}

/// `<prefix>_dead_letters.>`: every consumer's dead letters.
pub fn all_dead_letters(prefix: &SubjectPrefix) -> String {
    format!("{}.>", dead_letter_root(prefix))
}

fn dead_letter_root(prefix: &SubjectPrefix) -> String {
    format!("{}{DEAD_LETTER_SUBJECT_SUFFIX}", prefix.as_str())
}

/// `<events stream>_REDRIVE`.
pub fn redrive_stream(events_stream: &str) -> String {
    format!("{events_stream}{REDRIVE_STREAM_SUFFIX}")
}

/// `<prefix>_redrive.<consumer>`: read by that consumer's worker only.
pub fn redrive_subject(prefix: &SubjectPrefix, consumer: &str) -> String {
    format!("{}{REDRIVE_SUBJECT_SUFFIX}.{consumer}", prefix.as_str())
}

/// `<prefix>_redrive.>`: every consumer's redrives.
pub fn all_redrives(prefix: &SubjectPrefix) -> String {
    format!("{}{REDRIVE_SUBJECT_SUFFIX}.>", prefix.as_str())
}

/// A header value NATS accepts: one line, no control characters, bounded.
pub fn header_value(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_HEADER_VALUE {
        let mut cut = MAX_HEADER_VALUE;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    let trimmed = out.trim();
    if trimmed.is_empty() {
        "-".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// One failure to record.
pub struct Letter<'a> {
    pub consumer: &'a str,
    pub subject: &'a str,
    pub stream_sequence: u64,
    pub deliveries: u64,
    pub reason: &'a str,
    pub last_error: &'a str,
    /// Deduplicates a dead letter written twice (a crash between writing it
    /// and terminating the event).
    pub msg_id: String,
}

/// The headers of a dead letter: the original ones (but `Nats-Msg-Id` and
/// any earlier dead-letter headers) plus this failure's.
pub fn dead_letter_headers(original: Option<&HeaderMap>, letter: &Letter<'_>) -> HeaderMap {
    let mut out: HeaderMap = original
        .map(|h| {
            h.iter()
                .filter(|(name, _)| {
                    let name: &str = name.as_ref();
                    !name.eq_ignore_ascii_case(headers::MSG_ID)
                        && !HEADERS.iter().any(|d| name.eq_ignore_ascii_case(d))
                })
                .flat_map(|(name, values)| values.iter().map(|v| (name.clone(), v.clone())))
                .collect()
        })
        .unwrap_or_default();
    out.insert(headers::MSG_ID, letter.msg_id.as_str());
    out.insert(HEADER_CONSUMER, letter.consumer);
    out.insert(HEADER_REASON, header_value(letter.reason).as_str());
    out.insert(HEADER_DELIVERIES, letter.deliveries.to_string().as_str());
    out.insert(HEADER_LAST_ERROR, header_value(letter.last_error).as_str());
    out.insert(
        HEADER_STREAM_SEQ,
        letter.stream_sequence.to_string().as_str(),
    );
    out.insert(HEADER_SUBJECT, letter.subject);
    out
}

/// The `FastPix-Dead-Letter-*` headers of a stored dead letter, each as the
/// reader gets header values (`None` when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LetterFields {
    pub consumer: Option<String>,
    pub reason: Option<String>,
    pub deliveries: Option<String>,
    pub last_error: Option<String>,
    pub stream_seq: Option<String>,
    /// The subject the event was published on.
    pub subject: Option<String>,
}

impl LetterFields {
    /// Reads the fields through `header`, which gives a header's value by name.
    pub fn read(header: impl Fn(&str) -> Option<String>) -> Self {
        LetterFields {
            consumer: header(HEADER_CONSUMER),
            reason: header(HEADER_REASON),
            deliveries: header(HEADER_DELIVERIES),
            last_error: header(HEADER_LAST_ERROR),
            stream_seq: header(HEADER_STREAM_SEQ),
            subject: header(HEADER_SUBJECT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_outside_the_events_capture() {
        let prefix = SubjectPrefix::default();
        assert_eq!(dead_letter_stream("FASTPIX"), DEFAULT_DEAD_LETTER_STREAM);
        assert_eq!(
            dead_letter_subject(&prefix, "billing"),
            "fastpix_dead_letters.billing"
        );
        assert_eq!(
            redrive_subject(&prefix, "billing"),
            "fastpix_redrive.billing"
        );
        assert_eq!(all_dead_letters(&prefix), "fastpix_dead_letters.>");
        assert_eq!(all_redrives(&prefix), "fastpix_redrive.>");
        let all = prefix.all();
        assert!(!all.matches(&dead_letter_subject(&prefix, "billing")));
        assert!(!all.matches(&redrive_subject(&prefix, "billing")));
        let acme = SubjectPrefix::new("acme.fastpix").unwrap();
        assert_eq!(
            dead_letter_subject(&acme, "x"),
            "acme.fastpix_dead_letters.x"
        );
        assert!(!acme.all().matches(&dead_letter_subject(&acme, "x")));
    }

    #[test]
    fn header_values_are_one_bounded_line() {
        assert_eq!(header_value("a\r\nb"), "a  b");
        assert_eq!(header_value("  "), "-");
        let long = "é".repeat(2000);
        let v = header_value(&long);
        assert!(v.len() <= MAX_HEADER_VALUE + '…'.len_utf8());
        assert!(v.ends_with('…'));
    }

    #[test]
    fn dead_letter_headers_keep_the_original_and_replace_the_message_id() {
        let mut original = HeaderMap::new();
        original.insert("Nats-Msg-Id", "evt-1");
        original.insert("FastPix-Event-Id", "evt-1");
        original.insert(HEADER_REASON, "older reason");
        let h = dead_letter_headers(
            Some(&original),
            &Letter {
                consumer: "billing",
                subject: "fastpix.video.media.ready",
                stream_sequence: 42,
                deliveries: 6,
                reason: "retries exhausted",
                last_error: "db down\nagain",
                msg_id: "billing.events.42".into(),
            },
        );
        let get = |n: &str| h.get(n).map(|v| v.as_str().to_owned());
        assert_eq!(get("FastPix-Event-Id").as_deref(), Some("evt-1"));
        assert_eq!(get("Nats-Msg-Id").as_deref(), Some("billing.events.42"));
        assert_eq!(get(HEADER_REASON).as_deref(), Some("retries exhausted"));
        assert_eq!(get(HEADER_LAST_ERROR).as_deref(), Some("db down again"));
        assert_eq!(get(HEADER_STREAM_SEQ).as_deref(), Some("42"));
        assert_eq!(get(HEADER_DELIVERIES).as_deref(), Some("6"));
        assert_eq!(
            get(HEADER_SUBJECT).as_deref(),
            Some("fastpix.video.media.ready")
        );
        let fields = LetterFields::read(get);
        assert_eq!(fields.consumer.as_deref(), Some("billing"));
        assert_eq!(fields.stream_seq.as_deref(), Some("42"));
        assert_eq!(fields.subject.as_deref(), Some("fastpix.video.media.ready"));
        assert_eq!(LetterFields::read(|_| None), LetterFields::default());
    }
}
