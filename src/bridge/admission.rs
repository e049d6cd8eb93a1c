//! Admission: which deliveries are handled now, which wait in line, and
//! what happens to a connection answered before its body was read. Built
//! from `[http]`.
//!
//! - A delivery takes one of `http.max_in_flight` slots before a byte of
//!   its body is read, so at most `max_in_flight × max_body_bytes` of body
//!   is held. When none is free it waits in line (first come, first served)
//!   for at most `http.queue_timeout`, behind at most `http.max_queued`
//!   others; beyond either it is refused at once.
//! - After an early answer (`413`, `401`, `503`, `408`) the rest of the body
//!   is read and thrown away for a short while before the connection is
//!   closed, as nginx's lingering close does, for at most
//!   [`LINGERING_MAX`] connections at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ops::metrics::Metrics;
use crate::settings::HttpSettings;

/// Connections allowed to linger after an early answer at once; beyond it a
/// connection is closed at once, as before lingering existed. With
/// [`READ_BUFFER_MAX`](crate::ops::serve::READ_BUFFER_MAX) that bounds lingering to 4 MiB.
pub const LINGERING_MAX: usize = 64;

/// Closing at once with unread bytes makes the kernel send a reset, and a
/// client that writes its whole body before reading (Python's urllib, many
/// others) then sees a broken pipe instead of the answer. Discarded bytes go
/// through one small buffer, and no slot is held.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 16 * 1024 * 1024;

/// Every slot was taken, and the line was full or the wait too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests in flight")]
pub struct Overloaded;

/// The bridge's admission state; cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Admission {
    /// Bounds the deliveries handled at once (`http.max_in_flight`).
    in_flight: Arc<Semaphore>,
    /// Deliveries waiting for a slot now, bounded by `max_queued`.
    queued: Arc<AtomicUsize>,
    /// `http.queue_timeout`.
    queue_timeout: Duration,
    /// `http.max_queued`.
    max_queued: usize,
    /// `http.body_timeout`: how long a client has to deliver its body.
    body_timeout: Duration,
    /// Bounds the connections lingering after an early answer at once.
    lingering: Arc<Semaphore>,
    metrics: Metrics,
}

impl Admission {
    pub fn new(http: &HttpSettings, metrics: Metrics) -> Self {
        Admission {
            in_flight: Arc::new(Semaphore::new(http.max_in_flight)),
            queued: Arc::default(),
            queue_timeout: http.queue_timeout,
            max_queued: http.max_queued,
            body_timeout: http.body_timeout,
            lingering: Arc::new(Semaphore::new(LINGERING_MAX)),
            metrics,
        }
    }

    /// `http.body_timeout`.
    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    /// A slot of `http.max_in_flight`: at once when one is free, else after
    /// waiting in line (tokio's semaphore serves waiters first come, first
    /// served, and a newcomer never takes a slot ahead of them) for at most
    /// `http.queue_timeout`, behind at most `http.max_queued` others.
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, Overloaded> {
        if let Ok(permit) = self.in_flight.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let ahead = self.queued.fetch_add(1, Ordering::Relaxed);
        let _queued = Queued(&self.queued);
        if ahead >= self.max_queued || self.queue_timeout.is_zero() {
            return Err(Overloaded);
        }
        let _wait = self.metrics.waiting_for_slot();
        match tokio::time::timeout(self.queue_timeout, self.in_flight.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out, or the semaphore closed (never: it is not closed).
            _ => Err(Overloaded),
        }
    }

    /// Drains what is left of `unread` in the background, within the linger
    /// time and [`LINGER_BYTES`], when fewer than [`LINGERING_MAX`]
    /// connections linger already; false when it is dropped at once
    /// (hyper then closes the connection).
    pub fn linger(&self, unread: Body) -> bool {
        let Ok(permit) = self.lingering.clone().try_acquire_owned() else {
            return false;
        };
        let time = LINGER_TIME.min(self.body_timeout);
        tokio::spawn(async move {
            discard(unread, time).await;
            drop(permit);
        });
        true
    }
}

/// Counts a waiting request in [`Admission::queued`] while it lives.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads and discards what is left of a body, within `time` and [`LINGER_BYTES`].
async fn discard(mut body: Body, time: Duration) {
    let drain = async {
        let mut discarded = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                discarded += data.len() as u64;
                if discarded > LINGER_BYTES {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(time, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_in_flight: usize, queue_timeout: Duration, max_queued: usize) -> Admission {
        let http = HttpSettings {
            max_in_flight,
            queue_timeout,
            max_queued,
            ..HttpSettings::default()
        };
        Admission::new(&http, Metrics::new())
    }

    #[tokio::test]
    async fn a_free_slot_is_taken_at_once_and_a_full_house_refuses_without_a_line() {
        let a = admission(2, Duration::ZERO, 0);
        let first = a.slot().await.unwrap();
        let _second = a.slot().await.unwrap();
        assert_eq!(a.slot().await.unwrap_err(), Overloaded);
        drop(first);
        assert!(a.slot().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_next_free_slot_within_the_queue_timeout() {
        let a = admission(1, Duration::from_secs(1), 4);
        let held = a.slot().await.unwrap();
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.slot().await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        // With the slot held past the timeout, the waiter is refused.
        let _held = a.slot().await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(a.slot().await.unwrap_err(), Overloaded);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_line_is_bounded_by_max_queued_and_frees_its_place_when_done() {
        let a = admission(1, Duration::from_secs(60), 1);
        let _held = a.slot().await.unwrap();
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.slot().await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert_eq!(a.queued.load(Ordering::Relaxed), 1);
        // The line is full: refused at once, not after the timeout.
        assert_eq!(a.slot().await.unwrap_err(), Overloaded);
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(a.queued.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn lingering_is_bounded() {
        let a = admission(1, Duration::ZERO, 0);
        // Bodies that never end hold their lingering place until the linger time.
        let silent = || {
            Body::from_stream(futures_util::stream::pending::<
                Result<bytes::Bytes, std::io::Error>,
            >())
        };
        let lingered = (0..LINGERING_MAX + 3)
            .filter(|_| a.linger(silent()))
            .count();
        assert_eq!(lingered, LINGERING_MAX);
    }
}
