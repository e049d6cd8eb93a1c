//! Realistic FastPix events for `send`: the envelope FastPix posts (fresh
//! `id`, `createdAt` with nanoseconds, `object`, `workspace`, `status`,
//! `data`, `attempts`), with a `data` shaped like the family's object.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

use crate::fastpix::catalog::Family;

/// `createdAt` as FastPix writes it: UTC, always nine fractional digits.
const CREATED_AT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

/// The workspace every test event claims to come from.
pub const TEST_WORKSPACE_ID: &str = "6f1b7c52-3c2e-4bfa-9d55-0f7e6a1c2b90";
pub const TEST_WORKSPACE_NAME: &str = "fastpix-nats-bridge test events";

/// The objects one run of `send` talks about, so that a run reads as the
/// story of one media, one upload, one live stream and one simulcast.
#[derive(Debug, Clone)]
pub struct Objects {
    pub media_id: String,
    pub upload_id: String,
    pub live_stream_id: String,
    pub simulcast_id: String,
    pub playback_id: String,
}

impl Objects {
    /// Fresh ids, in the forms FastPix uses (32 hex digits for media and
    /// live streams, UUIDs for uploads and playback ids).
    pub fn fresh() -> Self {
        Self {
            media_id: uuid::Uuid::new_v4().simple().to_string(),
            upload_id: uuid::Uuid::new_v4().to_string(),
            live_stream_id: uuid::Uuid::new_v4().simple().to_string(),
            simulcast_id: uuid::Uuid::new_v4().simple().to_string(),
            playback_id: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// `time` formatted as FastPix's `createdAt`.
pub fn created_at(time: OffsetDateTime) -> String {
    time.to_offset(time::UtcOffset::UTC)
        .format(CREATED_AT)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000000Z".to_owned())
}

/// The last token of a type, which names what happened (`ready`, `active`).
fn action(event_type: &str) -> &str {
    event_type.rsplit('.').next().unwrap_or(event_type)
}

/// A full event of `event_type` with the given `id`, created at `now`.
pub fn event(event_type: &str, id: &str, objects: &Objects, now: OffsetDateTime) -> Value {
    let at = created_at(now);
    let act = action(event_type);
    let lower = event_type.to_ascii_lowercase();
    let (object_type, object_id, status, data) = match Family::of_type(event_type) {
        Some(Family::Simulcast) => simulcast(act, objects, &at),
        Some(Family::LiveStream) if act == "created" && lower.contains("asset") => {
            recorded_asset(objects, &at)
        }
        Some(Family::LiveStream) => live_stream(act, objects, &at),
        // The seed files this one under uploads, but it announces a live stream.
        Some(Family::Upload) if lower.contains("live_stream") => live_stream(act, objects, &at),
        Some(Family::Upload) => upload(act, objects, &at),
        _ => media(act, objects, &at),
    };
    json!({
        "type": event_type,
        "id": id,
        "object": { "type": object_type, "id": object_id },
        "workspace": { "id": TEST_WORKSPACE_ID, "name": TEST_WORKSPACE_NAME },
        "status": status,
        "data": data,
        "createdAt": at,
        "attempts": [],
    })
}

type Parts = (&'static str, String, &'static str, Value);

fn media(act: &str, o: &Objects, at: &str) -> Parts {
    let status = match act {
        "created" | "upload" => "created",
        "failed" => "failed",
        "delete" | "deleted" | "cancelled" => "deleted",
        _ => "ready",
    };
    let mut data = json!({
        "id": o.media_id,
        "workspaceId": TEST_WORKSPACE_ID,
        "status": status,
        "metadata": { "title": "Test event from fastpix-nats-bridge send" },
        "createdAt": at,
        "updatedAt": at,
    });
    if status == "ready" {
        data["playbackIds"] = json!([{
            "id": o.playback_id,
            "accessPolicy": "public",
            "accessRestrictions": {
                "domains": { "defaultPolicy": "allow", "allow": [], "deny": [] },
                "userAgents": { "defaultPolicy": "allow", "allow": [], "deny": [] }
            }
        }]);
        data["duration"] = json!("00:01:02");
        data["frameRate"] = json!("30/1");
        data["aspectRatio"] = json!("16:9");
        data["maxResolution"] = json!("1080p");
        data["sourceResolution"] = json!("1080p");
        data["mediaQuality"] = json!("standard");
        data["tracks"] = json!([
            { "id": uuid::Uuid::new_v4().to_string(), "type": "video", "width": 1920, "height": 1080, "frameRate": "30/1" },
            { "id": uuid::Uuid::new_v4().to_string(), "type": "audio", "channels": 2 }
        ]);
    }
    if status == "failed" {
        data["error"] = json!({
            "type": "invalid_input",
            "messages": ["The input file could not be decoded."]
        });
    }
    ("media", o.media_id.clone(), status, data)
}

fn upload(act: &str, o: &Objects, at: &str) -> Parts {
    let status = match act {
        "created" => "waiting",
        "failed" => "failed",
        _ => "asset_created",
    };
    let mut data = json!({
        "uploadId": o.upload_id,
        "workspaceId": TEST_WORKSPACE_ID,
        "status": status,
        "url": format!("https://storage.example.com/uploads/{}?signature=test", o.upload_id),
        "timeout": 3600,
        "corsOrigin": "*",
        "pushMediaSettings": { "accessPolicy": "public", "maxResolution": "1080p" },
        "createdAt": at,
    });
    if status == "asset_created" {
        data["mediaId"] = json!(o.media_id);
    }
    if status == "failed" {
        data["error"] = json!({ "type": "upload_failed", "messages": ["The upload did not finish before the timeout."] });
    }
    ("upload", o.upload_id.clone(), status, data)
}

fn live_stream(act: &str, o: &Objects, at: &str) -> Parts {
    let status = match act {
        "connected" => "preparing",
        "recording" | "active" => "active",
        "disabled" => "disabled",
        "deleted" => "deleted",
        _ => "idle",
    };
    let data = json!({
        "streamId": o.live_stream_id,
        "workspaceId": TEST_WORKSPACE_ID,
        "status": status,
        "maxResolution": "1080p",
        "maxDuration": 28800,
        "reconnectWindow": 60,
        "enableRecording": true,
        "enableDvrMode": false,
        "mediaPolicy": "public",
        "lowLatency": false,
        "metadata": { "title": "Test stream from fastpix-nats-bridge send" },
        "playbackIds": [{ "id": o.playback_id, "accessPolicy": "public" }],
        "srtPlaybackResponse": { "srtPlaybackStreamId": format!("play{}", o.live_stream_id) },
        "createdAt": at,
    });
    ("live_stream", o.live_stream_id.clone(), status, data)
}

/// `video.asset.created`: the recording of a live stream became a media.
fn recorded_asset(o: &Objects, at: &str) -> Parts {
    let data = json!({
        "id": o.media_id,
        "workspaceId": TEST_WORKSPACE_ID,
        "liveStreamId": o.live_stream_id,
        "status": "created",
        "sourceAccess": false,
        "createdAt": at,
    });
    ("media", o.media_id.clone(), "created", data)
}

fn simulcast(act: &str, o: &Objects, at: &str) -> Parts {
    let status = if matches!(act, "deleted") {
        "deleted"
    } else {
        "idle"
    };
    let data = json!({
        "simulcastId": o.simulcast_id,
        "liveStreamId": o.live_stream_id,
        "workspaceId": TEST_WORKSPACE_ID,
        "url": "rtmps://live.example.com/app",
        "isEnabled": status != "deleted",
        "metadata": { "platform": "example" },
        "createdAt": at,
    });
    ("simulcast", o.simulcast_id.clone(), status, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::{Event, seed_types};

    #[test]
    fn every_seed_type_gets_a_full_envelope_that_consumers_read() {
        let objects = Objects::fresh();
        let now = OffsetDateTime::now_utc();
        for t in seed_types() {
            let body = event(t, "evt-1", &objects, now);
            let e: Event = serde_json::from_value(body.clone()).unwrap();
            assert_eq!(e.event_type, t);
            assert_eq!(e.id.as_deref(), Some("evt-1"));
            assert!(e.object_id().is_some_and(|id| !id.is_empty()), "{t}");
            assert_eq!(e.workspace_id(), Some(TEST_WORKSPACE_ID));
            assert!(e.status.is_some() && e.data.is_object(), "{t}");
            assert_eq!(body["attempts"], json!([]));
            assert_eq!(
                e.created_at_time().map(|c| c.unix_timestamp()),
                Some(now.unix_timestamp())
            );
        }
        let ls = event("video.live_stream.active", "x", &objects, now);
        assert_eq!(ls["object"]["type"], "live_stream");
        assert_eq!(ls["status"], "active");
        assert_eq!(ls["object"]["id"], json!(objects.live_stream_id));
        let ready = event("video.media.ready", "x", &objects, now);
        assert_eq!(
            ready["data"]["playbackIds"][0]["id"],
            json!(objects.playback_id)
        );
        let unknown = event("video.mediaAI.summary.ready", "x", &objects, now);
        assert_eq!(unknown["type"], "video.mediaAI.summary.ready");
    }

    #[test]
    fn created_at_always_has_nine_fractional_digits() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_778_532_136_361_817_248).unwrap();
        assert_eq!(created_at(t), "2026-05-11T20:42:16.361817248Z");
        let round = OffsetDateTime::from_unix_timestamp(1_778_532_136).unwrap();
        assert_eq!(created_at(round), "2026-05-11T20:42:16.000000000Z");
    }
}
