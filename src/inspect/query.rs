//! What the API's queries mean, without I/O: the parameters read and
//! checked, a search for events turned into an [`EventPlan`] (what must
//! match, which sequences are in range, and whether the index or a scan
//! finds them), and the overview's counts folded into its windows.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::fastpix::catalog::{self, Family};
use crate::fastpix::subject::{SubjectFilter, SubjectPrefix};
use crate::inspect::error::ApiError;
use crate::inspect::index::{Counts, Granularity};
use crate::inspect::reader::{StoredMessage, filter_matches, rfc3339};
use crate::nats::headers;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

/// `GET /api/events`'s parameters.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub family: Option<String>,
    pub subject: Option<String>,
    pub object: Option<String>,
    pub id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub before_seq: Option<u64>,
    pub limit: Option<usize>,
}

/// A page of a stream: `limit` and `before_seq`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<usize>,
    pub before_seq: Option<u64>,
}

impl PageQuery {
    /// The page's size and where it ends.
    pub fn page(&self) -> Result<(usize, Option<u64>), ApiError> {
        Ok((limit_of(self.limit)?, self.before_seq))
    }
}

/// A limit as asked, defaulted and bounded.
pub fn limit_of(asked: Option<usize>) -> Result<usize, ApiError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if n == 0 || n > MAX_LIMIT => Err(ApiError::bad("limit must be from 1 to 500")),
        Some(n) => Ok(n),
    }
}

/// RFC 3339, or a duration meaning that long before `now` (`2h`).
pub fn time_param(
    name: &str,
    value: &str,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, ApiError> {
    if let Ok(t) = OffsetDateTime::parse(value.trim(), &Rfc3339) {
        return Ok(t);
    }
    match humantime::parse_duration(value.trim()) {
        Ok(d) => Ok(now - d),
        Err(_) => Err(ApiError::bad(format!(
            "{name} must be an RFC 3339 time or a duration such as 2h"
        ))),
    }
}

fn blank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// How the events of a search are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Through the index: the event with this id.
    Id(String),
    /// Through the index: this object's events.
    Object(String),
    /// A scan of the stream, the server applying these subject filters
    /// (none: every subject).
    Scan(Vec<String>),
}

/// A search for events, checked and ready to run.
#[derive(Debug)]
pub struct EventPlan {
    pub limit: usize,
    /// Each stored event must match one filter of every list (the type, the
    /// subject and the family asked for).
    checks: Vec<Vec<SubjectFilter>>,
    /// `family=other`: the subject prefix (with its dot) of events whose
    /// type is in no family of the catalog; kept by type, not by filter.
    other_under: Option<String>,
    object: Option<String>,
    id: Option<String>,
    /// Events stored at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Events stored at or before this time.
    pub until: Option<OffsetDateTime>,
    /// Sequences below this one.
    pub before_seq: Option<u64>,
}

impl EventPlan {
    /// Reads `q` for the stream under `prefix`; a bad parameter is a `400`
    /// naming it.
    pub fn new(
        q: &EventQuery,
        prefix: &SubjectPrefix,
        now: OffsetDateTime,
    ) -> Result<Self, ApiError> {
        let limit = limit_of(q.limit)?;
        let mut checks = Vec::new();
        for (name, value) in [
            ("type", blank(&q.event_type)),
            ("subject", blank(&q.subject)),
        ] {
            if let Some(v) = value {
                let f = prefix
                    .filter(v)
                    .map_err(|e| ApiError::bad(format!("{name}: {e}")))?;
                checks.push(vec![f]);
            }
        }
        let mut other_under = None;
        if let Some(name) = blank(&q.family) {
            if name.trim().eq_ignore_ascii_case(catalog::OTHER) {
                other_under = Some(format!("{}.", prefix.as_str()));
            } else {
                let family = Family::from_name(name).ok_or_else(|| {
                    ApiError::bad(format!(
                        "family must be one of {}",
                        catalog::LABELS.join(", ")
                    ))
                })?;
                checks.push(family.filters(prefix));
            }
        }
        let since = blank(&q.since)
            .map(|s| time_param("since", s, now))
            .transpose()?;
        let until = blank(&q.until)
            .map(|u| time_param("until", u, now))
            .transpose()?;
        Ok(EventPlan {
            limit,
            checks,
            other_under,
            object: blank(&q.object).map(str::to_owned),
            id: blank(&q.id).map(str::to_owned),
            since,
            until,
            before_seq: q.before_seq,
        })
    }

    /// By id or object through the index, never a scan; else a scan with
    /// the first filter list applied by the server.
    pub fn lookup(&self) -> Lookup {
        if let Some(id) = &self.id {
            return Lookup::Id(id.clone());
        }
        if let Some(object) = &self.object {
            return Lookup::Object(object.clone());
        }
        let server = self
            .checks
            .first()
            .map(|fs| fs.iter().map(|f| f.as_str().to_owned()).collect())
            .unwrap_or_default();
        Lookup::Scan(server)
    }

    /// True when `m` is one of the events asked for (every filter, the
    /// object and the id; the sequence range is the caller's).
    pub fn keeps(&self, m: &StoredMessage) -> bool {
        self.checks.iter().all(|fs| filter_matches(fs, &m.subject))
            && self.other_under.as_ref().is_none_or(|under| {
                // An event (it has a type) in no family; not a kept invalid body.
                m.header(headers::EVENT_TYPE).is_some()
                    && m.subject
                        .strip_prefix(under.as_str())
                        .is_some_and(|t| Family::of_type(t).is_none())
            })
            && self
                .object
                .as_ref()
                .is_none_or(|o| m.header(headers::OBJECT_ID).as_ref() == Some(o))
            && self
                .id
                .as_ref()
                .is_none_or(|i| m.header(headers::EVENT_ID).as_ref() == Some(i))
    }

    /// The sequences `lo <= seq < hi` of an index lookup, newest first.
    pub fn candidates(seqs: Vec<u64>, lo: u64, hi: u64) -> Vec<u64> {
        let mut kept: Vec<u64> = seqs.into_iter().filter(|&s| s >= lo && s < hi).collect();
        kept.reverse();
        kept
    }

    /// The first sequence past `until`: the instant just after it.
    pub fn until_bound(until: OffsetDateTime) -> OffsetDateTime {
        until + Duration::from_nanos(1)
    }
}

/// The buckets the overview reads, oldest first within each granularity:
/// 12 of five minutes (the last hour), 24 hours, 30 days.
pub fn overview_buckets(now: OffsetDateTime) -> Vec<(Granularity, OffsetDateTime)> {
    let mut keys = Vec::new();
    for (g, n) in [
        (Granularity::FiveMinutes, 12),
        (Granularity::Hour, 24),
        (Granularity::Day, 30),
    ] {
        let top = g.floor(now);
        for i in (0..n).rev() {
            keys.push((g, top - Duration::from_secs((g.seconds() * i) as u64)));
        }
    }
    keys
}

/// One window of the overview: counts per type and per family, and the total.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    pub total: u64,
    pub types: BTreeMap<String, u64>,
    pub families: BTreeMap<&'static str, u64>,
}

/// One bucket of a chart: its start and its counts per family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChartPoint {
    pub start: String,
    pub families: BTreeMap<&'static str, u64>,
}

/// The overview's windows (`hour`, `day`, `month`) and its two charts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub windows: BTreeMap<&'static str, Window>,
    pub hourly: Vec<ChartPoint>,
    pub daily: Vec<ChartPoint>,
}

/// The family label of a type, as the metrics count it.
fn family_name(event_type: &str) -> &'static str {
    Family::of_type(event_type).map_or("other", |f| f.name())
}

/// Folds the counts of each bucket into the windows: five-minute buckets
/// make the last hour, hours the last day, days the last month; hours and
/// days are also charted.
pub fn tally(buckets: impl IntoIterator<Item = (Granularity, OffsetDateTime, Counts)>) -> Tally {
    let mut out = Tally::default();
    for (g, start, counts) in buckets {
        let window = match g {
            Granularity::FiveMinutes => "hour",
            Granularity::Hour => "day",
            Granularity::Day => "month",
        };
        let w = out.windows.entry(window).or_default();
        let mut families: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (t, n) in &counts.counts {
            *w.types.entry(t.clone()).or_default() += n;
            *w.families.entry(family_name(t)).or_default() += n;
            *families.entry(family_name(t)).or_default() += n;
            w.total += n;
        }
        let point = ChartPoint {
            start: rfc3339(start),
            families,
        };
        match g {
            Granularity::Hour => out.hourly.push(point),
            Granularity::Day => out.daily.push(point),
            Granularity::FiveMinutes => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use async_nats::HeaderMap;
    use bytes::Bytes;

    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-05-11T20:42:16Z", &Rfc3339).unwrap()
    }

    fn plan(q: EventQuery) -> Result<EventPlan, String> {
        EventPlan::new(&q, &SubjectPrefix::default(), now()).map_err(|e| e.to_string())
    }

    fn message(subject: &str, object: Option<&str>, id: Option<&str>) -> StoredMessage {
        let mut h = HeaderMap::new();
        if let Some(o) = object {
            h.insert(headers::OBJECT_ID, o);
        }
        if let Some(i) = id {
            h.insert(headers::EVENT_ID, i);
        }
        StoredMessage {
            seq: 1,
            subject: subject.to_owned(),
            stored_at: now(),
            headers: Some(h),
            payload: Bytes::new(),
        }
    }

    #[test]
    fn limits_default_to_50_and_stay_from_1_to_500() {
        assert_eq!(limit_of(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit_of(Some(500)).unwrap(), 500);
        for bad in [0, 501] {
            let err = limit_of(Some(bad)).unwrap_err();
            assert_eq!(err.to_string(), "limit must be from 1 to 500");
        }
    }

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        let t = time_param("since", "2026-05-11T18:00:00+02:00", now()).unwrap();
        assert_eq!(rfc3339(t), "2026-05-11T18:00:00+02:00");
        let ago = time_param("since", " 2h ", now()).unwrap();
        assert_eq!(now() - ago, time::Duration::hours(2));
        let err = time_param("until", "yesterday", now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "until must be an RFC 3339 time or a duration such as 2h"
        );
    }

    #[test]
    fn an_id_or_an_object_goes_through_the_index_and_the_rest_is_a_scan() {
        let by_id = plan(EventQuery {
            id: Some("e1".into()),
            object: Some("m1".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(by_id.lookup(), Lookup::Id("e1".into()));
        let by_object = plan(EventQuery {
            object: Some(" m1 ".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(by_object.lookup(), Lookup::Object("m1".into()));
        let typed = plan(EventQuery {
            event_type: Some("video.media.*".into()),
            family: Some("media".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            typed.lookup(),
            Lookup::Scan(vec!["fastpix.video.media.*".into()])
        );
        let all = plan(EventQuery {
            id: Some("  ".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(all.lookup(), Lookup::Scan(vec![]));
    }

    #[test]
    fn every_family_of_the_catalog_can_be_filtered_on_other_included() {
        let other = plan(EventQuery {
            family: Some("other".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(other.lookup(), Lookup::Scan(vec![]));
        let typed = |subject: &str, t: &str| {
            let mut m = message(subject, None, None);
            if let Some(h) = m.headers.as_mut() {
                h.insert(headers::EVENT_TYPE, t);
            }
            m
        };
        assert!(other.keeps(&typed(
            "fastpix.video.mediaAI.summary.ready",
            "video.mediaAI.summary.ready"
        )));
        assert!(!other.keeps(&typed("fastpix.video.media.ready", "video.media.ready")));
        assert!(!other.keeps(&typed(
            "fastpix.video.live_stream.active",
            "video.live_stream.active"
        )));
        // A kept invalid body has no type: it is no family's, not even other's.
        assert!(!other.keeps(&message("fastpix.invalid", None, None)));
        for name in catalog::LABELS {
            let q = EventQuery {
                family: Some(name.into()),
                ..Default::default()
            };
            assert!(plan(q).is_ok(), "{name}");
        }
    }

    #[test]
    fn every_filter_the_object_and_the_id_must_match() {
        let p = plan(EventQuery {
            family: Some("media".into()),
            subject: Some("fastpix.video.>".into()),
            object: Some("m1".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(p.keeps(&message("fastpix.video.media.ready", Some("m1"), None)));
        assert!(!p.keeps(&message("fastpix.video.media.ready", Some("m2"), None)));
        assert!(!p.keeps(&message(
            "fastpix.video.live_stream.active",
            Some("m1"),
            None
        )));
        let p = plan(EventQuery {
            id: Some("e%201".into()),
            ..Default::default()
        })
        .unwrap();
        // Header values are compared decoded, as the event had them.
        assert!(!p.keeps(&message("fastpix.x", None, Some("e%201"))));
        let p = plan(EventQuery {
            id: Some("e 1".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(p.keeps(&message("fastpix.x", None, Some("e%201"))));
    }

    #[test]
    fn bad_parameters_are_named() {
        for (q, wanted) in [
            (
                EventQuery {
                    family: Some("video".into()),
                    ..Default::default()
                },
                "family must be one of media, upload, live_stream, simulcast, other",
            ),
            (
                EventQuery {
                    subject: Some("fastpix.video..x".into()),
                    ..Default::default()
                },
                "subject: ",
            ),
            (
                EventQuery {
                    since: Some("soon".into()),
                    ..Default::default()
                },
                "since must be",
            ),
            (
                EventQuery {
                    limit: Some(0),
                    ..Default::default()
                },
                "limit must be",
            ),
        ] {
            let err = plan(q).unwrap_err();
            assert!(err.starts_with(wanted), "{err}");
        }
    }

    #[test]
    fn index_candidates_are_in_range_newest_first() {
        assert_eq!(EventPlan::candidates(vec![1, 4, 7, 9], 4, 9), vec![7, 4]);
        assert_eq!(
            EventPlan::candidates(vec![], 1, u64::MAX),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn the_overview_reads_the_last_hour_day_and_month() {
        let keys = overview_buckets(now());
        assert_eq!(keys.len(), 12 + 24 + 30);
        assert_eq!(rfc3339(keys[11].1), "2026-05-11T20:40:00Z");
        assert_eq!(rfc3339(keys[0].1), "2026-05-11T19:45:00Z");
        assert_eq!(rfc3339(keys[12 + 23].1), "2026-05-11T20:00:00Z");
        assert_eq!(rfc3339(keys[65].1), "2026-05-11T00:00:00Z");
    }

    #[test]
    fn counts_fold_into_windows_by_type_and_family() {
        let counts = |pairs: &[(&str, u64)]| Counts {
            counts: pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            ..Counts::default()
        };
        let t = now();
        let tally = tally([
            (
                Granularity::FiveMinutes,
                t,
                counts(&[("video.media.ready", 2), ("video.mediaAI.x", 1)]),
            ),
            (
                Granularity::FiveMinutes,
                t,
                counts(&[("video.media.ready", 1)]),
            ),
            (
                Granularity::Hour,
                t,
                counts(&[("video.live_stream.active", 4)]),
            ),
            (Granularity::Day, t, counts(&[])),
        ]);
        let hour = &tally.windows["hour"];
        assert_eq!(hour.total, 4);
        assert_eq!(hour.types["video.media.ready"], 3);
        assert_eq!(hour.families["media"], 3);
        assert_eq!(hour.families["other"], 1);
        assert_eq!(tally.windows["day"].families["live_stream"], 4);
        assert_eq!(tally.windows["month"], Window::default());
        assert_eq!(tally.hourly.len(), 1);
        assert_eq!(tally.hourly[0].families["live_stream"], 4);
        assert_eq!(tally.daily.len(), 1);
        assert!(tally.daily[0].families.is_empty());
    }
}
