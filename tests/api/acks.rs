//! The publish path's ack routing, on a real nats-server: acks that come
//! out of order, late, never, and across a reconnect each reach their own
//! request or none. A responder on the published subject stands in for
//! JetStream here, so that the order and timing of acks are the test's to
//! choose; it answers each message with the number the message carries as
//! its sequence, so a request that got another's ack would see the wrong
//! number. Real JetStream acks (dedup, storage full, no stream) are proven
//! through the bridge in `webhook`, `storage` and `faults`.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use fastpix_nats_bridge::nats::acks::{Ack, AckError, AckRouter};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::helpers::NatsServer;

/// Long enough for any answered request on a slow, shared machine.
const ANSWERED: Duration = Duration::from_secs(60);

/// A client, connected, that reconnects to the same server for ever.
async fn client(nats: &NatsServer) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .max_reconnects(None)
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .connect(nats.url())
        .await
        .expect("connect")
}

/// Subscribes the responder, and returns once a request through `router`
/// has reached it and been answered.
async fn responder(
    nats: &NatsServer,
    router: &AckRouter,
    subject: &'static str,
) -> (async_nats::Client, async_nats::Subscriber) {
    let c = client(nats).await;
    let mut sub = c.subscribe(subject).await.expect("subscribe");
    answered_through(router, &c, &mut sub, subject).await;
    (c, sub)
}

/// Takes `n` requests off the subscription: (the number each carries, its reply subject).
async fn take(sub: &mut async_nats::Subscriber, n: usize) -> Vec<(u64, Subject)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let m = tokio::time::timeout(ANSWERED, sub.next())
            .await
            .unwrap_or_else(|_| panic!("the requests arrive: {} of {n}", got.len()))
            .expect("subscription open");
        let id: u64 = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        // 0 is a probe of `answered_through`, answered there or late.
        if id != 0 {
            got.push((id, m.reply.expect("a reply subject")));
        }
    }
    got
}

async fn ack(c: &async_nats::Client, reply: Subject, seq: u64) {
    let body = format!(
        r#"{{"stream":"S","seq":{seq},"duplicate":{}}}"#,
        seq.is_multiple_of(2)
    );
    c.publish(reply, body.into()).await.unwrap();
}

/// What a request ended with: its ack or error, or `None` when it gave up.
type Outcome = (u64, Option<Result<Ack, AckError>>);

/// Publishes `id` and waits for its ack, until `give_up` says to stop
/// waiting (the test says so once the request has surely been sent), or
/// for [`ANSWERED`] when it has none.
fn publish(
    set: &mut JoinSet<Outcome>,
    router: &AckRouter,
    subject: &str,
    id: u64,
    give_up: Option<watch::Receiver<bool>>,
) {
    let router = router.clone();
    let subject = Subject::from(subject.to_owned());
    set.spawn(async move {
        let payload = Bytes::from(id.to_string());
        let publish = router.publish(subject, HeaderMap::new(), payload);
        let r = match give_up {
            Some(mut give_up) => tokio::select! {
                r = publish => Some(r),
                _ = give_up.wait_for(|g| *g) => None,
            },
            None => Some(
                tokio::time::timeout(ANSWERED, publish)
                    .await
                    .expect("answered in time"),
            ),
        };
        (id, r)
    });
}

/// Acks answered in an order unlike the requests', some never and some
/// after their request gave up: every answered request gets its own ack,
/// the others time out, and the late acks find no one.
#[tokio::test]
async fn out_of_order_late_and_missing_acks_each_reach_their_own_request_or_none() {
    let nats = NatsServer::start();
    let router = AckRouter::start(client(&nats).await).await.unwrap();
    let (resp, mut sub) = responder(&nats, &router, "acks.order").await;

    // 1..=60: multiples of 6 never answered, multiples of 5 answered late.
    let n = 60u64;
    let unanswered = |id: u64| id.is_multiple_of(6);
    let late = |id: u64| id.is_multiple_of(5) && !id.is_multiple_of(6);
    let (give_up, waiting) = watch::channel(false);
    let mut set = JoinSet::new();
    for id in 1..=n {
        let patience = (unanswered(id) || late(id)).then(|| waiting.clone());
        publish(&mut set, &router, "acks.order", id, patience);
    }
    let mut requests = take(&mut sub, n as usize).await;
    // Out of order: the last request is answered first, odd ids before even.
    requests.reverse();
    requests.sort_by_key(|(id, _)| id % 2 == 0);
    let mut held = Vec::new();
    for (id, reply) in requests {
        if unanswered(id) {
            continue;
        }
        if late(id) {
            held.push((id, reply));
            continue;
        }
        ack(&resp, reply, id).await;
    }
    resp.flush().await.unwrap();

    let want_answered: BTreeSet<u64> = (1..=n).filter(|&i| !unanswered(i) && !late(i)).collect();
    let mut answered = BTreeSet::new();
    let mut gave_up = BTreeSet::new();
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            (id, Some(Ok(a))) => {
                assert_eq!(a.seq, id, "request {id} got the ack of {}", a.seq);
                assert_eq!(a.stream, "S");
                assert_eq!(
                    a.duplicate,
                    id.is_multiple_of(2),
                    "request {id}'s duplicate flag"
                );
                answered.insert(id);
                // Every answerable request has its ack: the others stop waiting.
                if answered == want_answered {
                    give_up.send_replace(true);
                }
            }
            (id, Some(Err(e))) => panic!("request {id} failed: {e}"),
            (id, None) => {
                gave_up.insert(id);
            }
        }
    }
    assert_eq!(answered, want_answered);
    assert_eq!(
        gave_up,
        (1..=n).filter(|&i| unanswered(i) || late(i)).collect()
    );
    assert_eq!(router.waiting(), 0, "requests that gave up are forgotten");

    // Now the late acks come: nobody waits for them.
    // (Counted from here: a probe answered after it gave up is late too.)
    let late_count = router.late_acks() + held.len() as u64;
    for (id, reply) in held {
        ack(&resp, reply, id).await;
    }
    resp.flush().await.unwrap();
    wait_for(
        || router.late_acks() >= late_count,
        "the late acks are counted",
    )
    .await;

    // And the next requests still get their own acks, not the late ones.
    let mut set = JoinSet::new();
    for id in 1001..=1010 {
        publish(&mut set, &router, "acks.order", id, None);
    }
    for (id, reply) in take(&mut sub, 10).await {
        ack(&resp, reply, id).await;
    }
    while let Some(r) = set.join_next().await {
        let (id, r) = r.unwrap();
        assert_eq!(r.unwrap().unwrap().seq, id);
    }
}

/// The server restarts while requests wait: those fail or time out, none
/// is answered with another's ack, acks for them sent after the restart find
/// no one, and requests after the reconnect get their own acks through the
/// same subscription.
#[tokio::test]
async fn a_reconnect_in_the_middle_matches_no_ack_to_the_wrong_request() {
    let mut nats = NatsServer::start();
    let router = AckRouter::start(client(&nats).await).await.unwrap();
    let (resp, mut sub) = responder(&nats, &router, "acks.reconnect").await;

    let (give_up, waiting) = watch::channel(false);
    let mut before = JoinSet::new();
    for id in 1..=20 {
        publish(
            &mut before,
            &router,
            "acks.reconnect",
            id,
            Some(waiting.clone()),
        );
    }
    let held = take(&mut sub, 20).await;
    // Half answered before the restart, the other half after it.
    let (now, after) = held.split_at(10);
    for (id, reply) in now {
        ack(&resp, reply.clone(), *id).await;
    }
    resp.flush().await.unwrap();
    nats.restart();

    // Requests made after the restart, once both clients are back.
    answered_through(&router, &resp, &mut sub, "acks.reconnect").await;
    let mut later = JoinSet::new();
    for id in 101..=120 {
        publish(&mut later, &router, "acks.reconnect", id, None);
    }
    // The old requests' acks first, then the new ones', in reverse.
    for (id, reply) in after {
        ack(&resp, reply.clone(), *id).await;
    }
    let mut fresh = take(&mut sub, 20).await;
    fresh.reverse();
    for (id, reply) in fresh {
        ack(&resp, reply, id).await;
    }
    resp.flush().await.unwrap();

    while let Some(r) = later.join_next().await {
        let (id, r) = r.unwrap();
        let a = r.expect("answered").expect("an ack after the reconnect");
        assert_eq!(a.seq, id, "request {id} got the ack of {}", a.seq);
    }
    // The old requests: answered with their own ack, failed with the
    // connection, or still waiting for an ack that was lost.
    give_up.send_replace(true);
    while let Some(r) = before.join_next().await {
        if let (id, Some(Ok(a))) = r.unwrap() {
            assert_eq!(a.seq, id, "request {id} got the ack of {}", a.seq);
        }
    }
    wait_for(|| router.waiting() == 0, "no request is left waiting").await;
}

/// A subject nobody listens on is answered at once with "no responders",
/// which is not an ack.
#[tokio::test]
async fn a_subject_without_a_stream_is_no_stream_not_a_timeout() {
    let nats = NatsServer::start();
    let router = AckRouter::start(client(&nats).await).await.unwrap();
    let r = tokio::time::timeout(
        ANSWERED,
        router.publish(
            Subject::from("acks.nobody"),
            HeaderMap::new(),
            Bytes::from_static(b"1"),
        ),
    )
    .await
    .expect("answered before the timeout");
    assert!(matches!(r, Err(AckError::NoStream)), "{r:?}");
    assert_eq!(router.waiting(), 0);
}

/// A request still waiting when the connection is closed for good ends
/// then, not at its timeout.
#[tokio::test]
async fn requests_waiting_when_the_connection_closes_end_at_once() {
    let nats = NatsServer::start();
    let bridge = client(&nats).await;
    let router = AckRouter::start(bridge.clone()).await.unwrap();
    let (_resp, mut sub) = responder(&nats, &router, "acks.close").await;
    let mut set = JoinSet::new();
    publish(&mut set, &router, "acks.close", 7, None);
    // Sent, and never answered.
    take(&mut sub, 1).await;
    bridge.drain().await.unwrap();
    let (_, r) = set.join_next().await.unwrap().unwrap();
    assert!(matches!(r, Some(Err(AckError::Closed))), "{r:?}");
    assert_eq!(router.waiting(), 0);
}

async fn wait_for(cond: impl Fn() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + ANSWERED;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a probe published through the router is answered by the
/// responder: both clients are connected, with their subscriptions in
/// place at the server (a client's `flush` only empties its own buffer).
async fn answered_through(
    router: &AckRouter,
    resp: &async_nats::Client,
    sub: &mut async_nats::Subscriber,
    subject: &'static str,
) {
    let deadline = tokio::time::Instant::now() + ANSWERED;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the responder answers through the router"
        );
        let probe = {
            let router = router.clone();
            tokio::spawn(async move {
                let publish = router.publish(
                    Subject::from(subject),
                    HeaderMap::new(),
                    Bytes::from_static(b"0"),
                );
                tokio::time::timeout(Duration::from_secs(1), publish).await
            })
        };
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), sub.next()).await
            && &m.payload[..] == b"0"
        {
            ack(resp, m.reply.expect("a reply subject"), 1).await;
        }
        if let Ok(Ok(Ok(_))) = probe.await {
            return;
        }
    }
}
