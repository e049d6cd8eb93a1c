//! The one list of event types FastPix sends and the families they fall in.

use super::subject::{SubjectFilter, SubjectPrefix, subject_for_type};

/// A family of event types, as the FastPix documentation groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Media,
    Upload,
    LiveStream,
    Simulcast,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::Media,
        Family::Upload,
        Family::LiveStream,
        Family::Simulcast,
    ];

    /// The name accepted as a filter by `subscribe` (`live_stream`).
    pub fn name(self) -> &'static str {
        match self {
            Family::Media => "media",
            Family::Upload => "upload",
            Family::LiveStream => "live_stream",
            Family::Simulcast => "simulcast",
        }
    }

    /// Reads a family name; `live-stream` and `livestream` are accepted too.
    pub fn from_name(name: &str) -> Option<Family> {
        let name = name.trim().to_ascii_lowercase().replace('-', "_");
        match name.as_str() {
            "media" => Some(Family::Media),
            "upload" | "uploads" => Some(Family::Upload),
            "live_stream" | "livestream" | "live_streams" => Some(Family::LiveStream),
            "simulcast" | "simulcasts" => Some(Family::Simulcast),
            _ => None,
        }
    }

    /// The event-type patterns of the family. They do not overlap, so any
    /// set of families can be one JetStream consumer's filters. Live-stream
    /// state changes are one token under `video.live_stream`, which keeps
    /// simulcast events (two tokens) out of that family.
    pub fn patterns(self) -> &'static [&'static str] {
        match self {
            Family::Media => &["video.media.>"],
            // The seed lists `Video.media.live_stream.created` (capital V) with uploads.
            Family::Upload => &["video.upload.>", "Video.media.live_stream.created"],
            Family::LiveStream => &["video.live_stream.*", "video.asset.created"],
            Family::Simulcast => &[
                "video.live_stream.simulcast.*",
                "video.live_stream.simulcast_target.*",
            ],
        }
    }

    /// The subject filters of the family under `prefix`.
    pub fn filters(self, prefix: &SubjectPrefix) -> Vec<SubjectFilter> {
        self.patterns()
            .iter()
            .filter_map(|p| prefix.filter(p).ok())
            .collect()
    }

    /// The event types FastPix's webhook page lists for this family, spelled
    /// as it spells them.
    pub fn seed_types(self) -> &'static [&'static str] {
        match self {
            Family::Media => &[
                "video.media.created",
                "video.media.ready",
                "video.media.failed",
                "video.media.delete",
                "video.media.updated",
            ],
            Family::Upload => &[
                "video.upload.media_created",
                "video.upload.created",
                "video.upload.ready",
                "video.upload.failed",
                "Video.media.live_stream.created",
            ],
            Family::LiveStream => &[
                "video.live_stream.created",
                "video.live_stream.connected",
                "video.live_stream.recording",
                "video.live_stream.active",
                "video.live_stream.disconnected",
                "video.live_stream.idle",
                "video.live_stream.updated",
                "video.live_stream.enabled",
                "video.live_stream.disabled",
                "video.live_stream.deleted",
                "video.asset.created",
            ],
            Family::Simulcast => &[
                "video.live_stream.simulcast.created",
                "video.live_stream.simulcast.deleted",
            ],
        }
    }

    /// The family an event type belongs to, if any.
    pub fn of_type(event_type: &str) -> Option<Family> {
        let prefix = SubjectPrefix::default();
        let subject = subject_for_type(&prefix, event_type).ok()?;
        Family::ALL.into_iter().find(|f| {
            f.filters(&prefix)
                .iter()
                .any(|filter| filter.matches(subject.as_str()))
        })
    }
}

/// Every event type the FastPix webhook page lists, family by family.
pub fn seed_types() -> impl Iterator<Item = &'static str> {
    Family::ALL
        .into_iter()
        .flat_map(|f| f.seed_types().iter().copied())
}
