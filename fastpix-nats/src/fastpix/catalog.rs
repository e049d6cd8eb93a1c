//! The one list of event types FastPix sends and the one classification of
//! them into families. The Prometheus `family` label, the family filters of
//! `subscribe` and of consumers, `send`, the benchmark and the tests all read
//! it from here, so a family means the same thing everywhere.
//!
//! The families are the four groups of FastPix's webhook page, which also
//! decides the odd cases: `Video.media.live_stream.created` (capital V) is an
//! upload and `video.asset.created` a live-stream event, because the page
//! lists them there. Types the page does not list go where their subject
//! pattern puts them (`video.media.track.ready` is media,
//! `video.live_stream.simulcast_target.created` simulcast); the rest
//! (`video.mediaAI.*`, anything unknown) are in no family, which metrics
//! count as `other`.

use super::subject::{EventType, SubjectFilter, SubjectPrefix, checked_type_matches_pattern};

/// A family of event types, as the FastPix webhook page groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Media,
    Upload,
    LiveStream,
    Simulcast,
}

/// The metric label of a type in no family.
pub const OTHER: &str = "other";

impl Family {
    /// Every family, in declaration order (`Family as usize` indexes it).
    pub const ALL: [Family; 4] = [
        Family::Media,
        Family::Upload,
        Family::LiveStream,
        Family::Simulcast,
    ];

    /// The name accepted as a filter by `subscribe` (`live_stream`), and the
    /// value of the metrics' `family` label.
    pub const fn name(self) -> &'static str {
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
    pub const fn patterns(self) -> &'static [&'static str] {
        match self {
            Family::Media => &["video.media.>"],
            // The seed lists `Video.media.live_stream.created` (capital V) with uploads.
            Family::Upload => &["video.upload.>", "Video.media.live_stream.created"],
            // ... and `video.asset.created` with live streams.
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
    pub const fn seed_types(self) -> &'static [&'static str] {
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

    /// The family an event type belongs to, if any: the family whose
    /// filters match the subject the type is published on. No allocation,
    /// so the metrics can classify every request.
    pub fn of_type(event_type: &str) -> Option<Family> {
        // Checked once here rather than once per pattern.
        EventType::check(event_type).ok()?;
        Family::ALL.into_iter().find(|f| {
            f.patterns()
                .iter()
                .any(|p| checked_type_matches_pattern(event_type, p))
        })
    }
}

/// The metric label of a family, `other` for none.
pub const fn label(family: Option<Family>) -> &'static str {
    match family {
        Some(f) => f.name(),
        None => OTHER,
    }
}

/// Every value of the `family` label, in index order: the families, then `other`.
pub const LABELS: [&str; 5] = [
    Family::Media.name(),
    Family::Upload.name(),
    Family::LiveStream.name(),
    Family::Simulcast.name(),
    OTHER,
];

/// The index of a family's label in [`LABELS`].
pub const fn label_index(family: Option<Family>) -> usize {
    match family {
        Some(f) => f as usize,
        None => Family::ALL.len(),
    }
}

/// Types FastPix's SDKs and newer docs send beyond the webhook page.
pub const NEWER_TYPES: &[&str] = &[
    "video.media.deleted",
    "video.media.upload",
    "video.media.upload.cancelled",
    "video.media.track.created",
    "video.media.track.ready",
    "video.media.track.updated",
    "video.media.track.deleted",
    "video.media.source.ready",
    "video.media.source.deleted",
    "video.media.subtitle.generated.ready",
    "video.media.mp4Support.ready",
    "video.media.intro.ready",
    "video.live_stream.simulcast_target.created",
    "video.live_stream.simulcast_target.updated",
    "video.live_stream.simulcast_target.deleted",
    "video.mediaAI.chapters.ready",
    "video.mediaAI.namedEntities.ready",
    "video.mediaAI.summary.ready",
];

/// Every event type the FastPix webhook page lists, family by family.
pub fn seed_types() -> impl Iterator<Item = &'static str> {
    Family::ALL
        .into_iter()
        .flat_map(|f| f.seed_types().iter().copied())
}

/// Every type the catalog knows: the webhook page's, then the newer ones.
pub fn known_types() -> impl Iterator<Item = &'static str> {
    seed_types().chain(NEWER_TYPES.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastpix::subject::subject_for_type;

    /// The family as a subscriber sees it: the one whose filters match the
    /// subject the type is published on.
    fn by_filters(prefix: &SubjectPrefix, event_type: &str) -> Option<Family> {
        let subject = subject_for_type(prefix, event_type).ok()?;
        let owners: Vec<Family> = Family::ALL
            .into_iter()
            .filter(|f| {
                f.filters(prefix)
                    .iter()
                    .any(|x| x.matches(subject.as_str()))
            })
            .collect();
        assert!(owners.len() <= 1, "{event_type} is in {owners:?}");
        owners.first().copied()
    }

    #[test]
    fn every_seed_type_is_in_the_family_the_page_lists_it_in() {
        for family in Family::ALL {
            for t in family.seed_types() {
                assert_eq!(Family::of_type(t), Some(family), "{t}");
            }
        }
        assert_eq!(seed_types().count(), 23);
    }

    #[test]
    fn newer_types_fall_into_the_family_of_their_pattern() {
        for (t, family) in [
            ("video.media.track.ready", Some(Family::Media)),
            ("video.media.mp4Support.ready", Some(Family::Media)),
            (
                "video.live_stream.simulcast_target.updated",
                Some(Family::Simulcast),
            ),
            ("video.mediaAI.summary.ready", None),
            ("", None),
        ] {
            assert_eq!(Family::of_type(t), family, "{t}");
        }
    }

    #[test]
    fn the_cheap_classification_is_the_filters_one_for_any_type() {
        let odd = [
            "",
            "video",
            "video.",
            ".",
            "video.media",
            "video.media.",
            "video.media..ready",
            "video.MEDIA.ready",
            "video.Media.ready",
            "audio.media.ready",
            "video.live stream.active",
            "video.live-stream.active",
            "video.live_stream",
            "video.live_stream.",
            "video.live_stream.*",
            "video.live_stream.>",
            "video.live_stream.a.b",
            "video.live_stream.simulcast",
            "video.live_stream.simulcast.",
            "video.live_stream.simulcast.a.b",
            "video.live_stream.simulcast target.created",
            "video.asset.created.x",
            "video.asset.ready",
            "video.asset.créated",
            "Video.media.live_stream.created",
            "Video.media.live_stream.created.x",
            "video.media.live_stream.created",
            "Video.media.live stream.created",
            "vidéo.media.ready",
            "video.upload",
            "video.upload.x.y.z",
            "video.media.ready\n",
            "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p",
            "video.media.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q",
        ];
        let long = format!("video.media.{}", "x".repeat(300));
        let acme = SubjectPrefix::new("acme.fastpix").unwrap();
        let mut types: Vec<&str> = known_types().chain(odd).collect();
        types.push(&long);
        for t in types {
            for prefix in [&SubjectPrefix::default(), &acme] {
                assert_eq!(Family::of_type(t), by_filters(prefix, t), "{t:?}");
            }
        }
    }

    #[test]
    fn labels_are_bounded_and_indexed_by_family() {
        for f in Family::ALL {
            assert_eq!(LABELS[label_index(Some(f))], f.name());
            assert_eq!(label(Some(f)), f.name());
            assert_eq!(Family::from_name(f.name()), Some(f));
        }
        assert_eq!(LABELS[label_index(None)], OTHER);
        assert_eq!(label(Family::of_type("video.mediaAI.summary.ready")), OTHER);
        assert_eq!(Family::from_name("Live-Stream"), Some(Family::LiveStream));
        assert_eq!(Family::from_name(OTHER), None);
    }
}
