//! Where the bridge keeps records of refused deliveries: no keys of its
//! own, but a rule over the others, named here so that it is found.

use std::time::Duration;

use super::{JetStreamSettings, Settings};
use crate::fastpix::subject::SubjectPrefix;

/// What the bridge's records of refused deliveries need, from the sections
/// they depend on.
#[derive(Debug, Clone)]
pub struct RefusalsSettings {
    /// `jetstream.enabled`: in core mode nothing would keep the records, so
    /// none are made. The records' stream is named after `jetstream.stream`
    /// and shares its storage and replicas.
    pub jetstream: JetStreamSettings,
    /// The records' subject prefix: **the first webhook's** (in name order;
    /// the only one for the single `[webhook]` section). One records stream
    /// serves the whole bridge, and each record's `path` tells the webhooks
    /// apart.
    pub prefix: SubjectPrefix,
    /// `nats.publish_timeout`: how long startup waits to put the records'
    /// stream in place.
    pub setup_timeout: Duration,
}

impl Settings {
    /// The settings of the records of refused deliveries.
    pub fn refusals(&self) -> RefusalsSettings {
        RefusalsSettings {
            jetstream: self.jetstream.clone(),
            prefix: self.webhooks[0].prefix.clone(),
            setup_timeout: self.nats.publish_timeout,
        }
    }
}
