//! One forwarder delivers for a destination at a time: it holds the
//! destination's lease, a key in the KV bucket `<stream>_FORWARD_LEASES`
//! ([`crate::nats::forward_leases`]) whose entries expire after [`TTL`]
//! unless renewed (every [`RENEW`]). Other processes wait to take it over:
//! per-object order then holds across processes, and extra forwarders are
//! failover. Each renewal also records the destination's state for the
//! inspector.

use std::time::Duration;

use async_nats::jetstream::{self, kv};

use crate::nats::forward_leases::{LeaseState, bucket_name};

/// A lease not renewed for this long is free.
pub const TTL: Duration = Duration::from_secs(20);
/// How often the holder renews it, and how often others try to take it.
pub const RENEW: Duration = Duration::from_secs(3);

/// The bucket, created when missing.
pub async fn bucket(js: &jetstream::Context, stream: &str) -> Result<kv::Store, async_nats::Error> {
    let name = bucket_name(stream);
    match js.get_key_value(&name).await {
        Ok(store) => Ok(store),
        Err(_) => Ok(js
            .create_key_value(kv::Config {
                bucket: name,
                description: "fastpix-nats-bridge: which forwarder delivers for each destination"
                    .to_owned(),
                history: 1,
                max_age: TTL,
                ..Default::default()
            })
            .await?),
    }
}

fn value(state: &LeaseState) -> bytes::Bytes {
    serde_json::to_vec(state).unwrap_or_default().into()
}

/// A lease held: renew it, or give it up.
pub struct Lease {
    store: kv::Store,
    key: String,
    revision: u64,
}

impl Lease {
    /// Takes the lease on `key` if it is free; `None` while another holds it.
    pub async fn try_take(
        store: &kv::Store,
        key: &str,
        state: &LeaseState,
    ) -> Result<Option<Lease>, async_nats::Error> {
        match store.create(key, value(state)).await {
            Ok(revision) => Ok(Some(Lease {
                store: store.clone(),
                key: key.to_owned(),
                revision,
            })),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Renews it with the state as of now; an error means it is lost
    /// (another took it, or NATS could not be told in time).
    pub async fn renew(&mut self, state: &LeaseState) -> Result<(), async_nats::Error> {
        self.revision = self
            .store
            .update(&self.key, value(state), self.revision)
            .await?;
        Ok(())
    }

    /// Gives it up at once, so another forwarder takes over without waiting
    /// for it to expire.
    pub async fn release(self) {
        let _ = self
            .store
            .purge_expect_revision(&self.key, Some(self.revision))
            .await;
    }
}
