//! Credentials inside payloads: FastPix's live-stream events carry the
//! stream's `streamKey` and SRT secret, simulcast targets their own
//! `streamKey`. Anyone who reads them can broadcast as the customer, so the
//! inspector shows them as [`HIDDEN`] unless `inspect.reveal_secrets` is
//! on. The stored bytes never change: consumers need them. Pure, no I/O.

use serde_json::Value;

/// What a hidden value is shown as.
pub const HIDDEN: &str = "•••• (hidden)";

/// Names hidden at any depth (case-insensitive): FastPix spells the SRT
/// secret both ways in its documentation.
pub const HIDDEN_NAMES: [&str; 4] = ["streamKey", "srtSecret", "srtSecert", "signingSecret"];

/// Any name ending in one of these (case-insensitive) is hidden too.
pub const HIDDEN_SUFFIXES: [&str; 3] = ["secret", "password", "token"];

/// A payload as the inspector may show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// The payload: as stored, or JSON with the hidden values replaced.
    pub text: String,
    /// Values replaced by [`HIDDEN`].
    pub hidden: usize,
    /// `text` is the payload byte for byte as stored.
    pub as_stored: bool,
}

/// Which fields are hidden, and whether they are shown anyway.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// `inspect.hidden_fields`, lowercased.
    extra: Vec<String>,
    reveal: bool,
}

impl Redactor {
    /// `extra` is `inspect.hidden_fields`; `reveal` is `inspect.reveal_secrets`.
    pub fn new(extra: &[String], reveal: bool) -> Self {
        Redactor {
            extra: extra.iter().map(|f| f.to_lowercase()).collect(),
            reveal,
        }
    }

    pub fn reveals(&self) -> bool {
        self.reveal
    }

    /// True when a field of this name is hidden.
    pub fn hides(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        HIDDEN_NAMES.iter().any(|h| h.eq_ignore_ascii_case(&name))
            || HIDDEN_SUFFIXES.iter().any(|s| name.ends_with(s))
            || self.extra.contains(&name)
    }

    /// The payload to show. Revealing: as stored. Otherwise JSON with every
    /// hidden field's value replaced; a payload that is not JSON cannot be
    /// checked, so it is not shown at all.
    pub fn show(&self, payload: &[u8]) -> Shown {
        if self.reveal {
            return Shown {
                text: String::from_utf8_lossy(payload).into_owned(),
                hidden: 0,
                as_stored: true,
            };
        }
        match serde_json::from_slice::<Value>(payload) {
            Ok(mut value) => {
                let hidden = self.hide(&mut value);
                if hidden == 0 {
                    // Nothing to hide: the bytes as FastPix sent them.
                    return Shown {
                        text: String::from_utf8_lossy(payload).into_owned(),
                        hidden: 0,
                        as_stored: true,
                    };
                }
                Shown {
                    text: value.to_string(),
                    hidden,
                    as_stored: false,
                }
            }
            Err(_) => Shown {
                text: format!(
                    "(not JSON, {} bytes: not shown, since it cannot be checked for credentials; inspect.reveal_secrets = true shows it)",
                    payload.len()
                ),
                hidden: 0,
                as_stored: false,
            },
        }
    }

    /// Replaces every hidden field's value, at any depth; returns how many.
    fn hide(&self, value: &mut Value) -> usize {
        match value {
            Value::Object(map) => map
                .iter_mut()
                .map(|(k, v)| {
                    if self.hides(k) && !v.is_null() {
                        *v = Value::String(HIDDEN.to_owned());
                        1
                    } else {
                        self.hide(v)
                    }
                })
                .sum(),
            Value::Array(items) => items.iter_mut().map(|v| self.hide(v)).sum(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = r#"{"type":"video.live_stream.created","data":{"streamKey":"sk-top","srtSecret":"srt-1","srtSecert":"srt-2","playbackIds":[{"id":"p1"}],"simulcast":[{"url":"rtmp://x","streamKey":"sk-target","settings":{"AccessToken":"tok"}}],"metadata":{"note":"n"}},"streamKey":null}"#;

    #[test]
    fn credentials_are_hidden_at_any_depth_and_the_rest_kept() {
        let shown = Redactor::default().show(LIVE.as_bytes());
        assert_eq!(shown.hidden, 5);
        assert!(!shown.as_stored);
        for secret in ["sk-top", "srt-1", "srt-2", "sk-target", "tok"] {
            assert!(!shown.text.contains(secret), "{secret}: {}", shown.text);
        }
        let v: Value = serde_json::from_str(&shown.text).unwrap();
        assert_eq!(v["data"]["streamKey"], HIDDEN);
        assert_eq!(v["data"]["simulcast"][0]["streamKey"], HIDDEN);
        assert_eq!(v["data"]["simulcast"][0]["url"], "rtmp://x");
        assert_eq!(v["data"]["playbackIds"][0]["id"], "p1");
        // Order kept: the page shows the fields where FastPix put them.
        assert!(shown.text.starts_with(r#"{"type":"#));
    }

    #[test]
    fn the_extra_names_extend_the_list_and_revealing_shows_the_bytes() {
        let r = Redactor::new(&["Note".to_owned()], false);
        assert!(r.hides("note") && r.hides("STREAMKEY") && r.hides("apiToken"));
        assert!(r.hides("db_password") && r.hides("clientSecret"));
        assert!(!r.hides("tokens") && !r.hides("id") && !r.hides("secretary"));
        assert_eq!(r.show(LIVE.as_bytes()).hidden, 6);

        let shown = Redactor::new(&[], true).show(LIVE.as_bytes());
        assert!(shown.as_stored && shown.text == LIVE && shown.hidden == 0);
    }

    #[test]
    fn nothing_to_hide_is_shown_as_stored_and_what_cannot_be_read_is_not_shown() {
        let plain = br#"{"type":"video.media.ready",  "id":"e1"}"#;
        let shown = Redactor::default().show(plain);
        assert!(shown.as_stored && shown.text.as_bytes() == plain);
        let broken = br#"{"streamKey":"sk-1""#;
        let shown = Redactor::default().show(broken);
        assert!(
            !shown.as_stored && !shown.text.contains("sk-1"),
            "{}",
            shown.text
        );
    }
}
