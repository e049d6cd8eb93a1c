//! The admin listener (`/metrics`, `/healthz`, `/readyz`) is served the way
//! the public one is: slow headers are cut off, and on shutdown it answers
//! while the public side drains, then drains itself.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// Reads from `stream` until what arrived contains `needle`; the bytes read.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while !String::from_utf8_lossy(&buf).contains(needle) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    assert_eq!(found, Ok(true), "no {needle:?} in {text:?}");
    text
}

/// True when the peer closes `stream` (after any bytes still unread).
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    closed.await.is_ok()
}

#[tokio::test]
async fn slow_or_silent_headers_on_the_admin_port_are_cut_off_while_others_are_served() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[("FASTPIX_BRIDGE__HTTP__HEADER_TIMEOUT", "1s")],
    )
    .await;
    let port = app.admin_addr.port();
    let slow = tokio::spawn(raw_exchange(port, |mut wr| async move {
        // One byte every 200 ms: the headers would take two minutes.
        let _ = wr
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await;
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b"a").await.is_err() {
                return;
            }
        }
    }));
    let silent = tokio::spawn(raw_exchange(port, |wr| async move {
        // Holds the write half: dropping it would send FIN, which ends
        // the connection without any timer.
        let _open = wr;
        std::future::pending::<()>().await
    }));
    for _ in 0..5 {
        let resp = app.http.get(app.admin_url("/healthz")).send().await;
        assert_eq!(resp.expect("admin answers").status(), 200);
    }
    for (what, client) in [("slow", slow), ("silent", silent)] {
        let answer = tokio::time::timeout(Duration::from_secs(20), client)
            .await
            .unwrap_or_else(|_| panic!("{what} admin client not cut off"))
            .unwrap()
            .unwrap();
        assert!(answer.is_none(), "{what}: {answer:?}");
    }
    assert_eq!(app.scrape().await.get("fastpix_bridge_nats_connected"), 1.0);
}

#[tokio::test]
async fn on_shutdown_the_admin_port_answers_while_requests_drain_then_closes() {
    let nats = NatsServer::start();
    let app = TestApp::spawn_with(
        &nats.url(),
        &[
            ("FASTPIX_BRIDGE__HTTP__BODY_TIMEOUT", "60s"),
            ("FASTPIX_BRIDGE__HTTP__SHUTDOWN_GRACE", "60s"),
        ],
    )
    .await;
    let (public, admin_addr) = (app.addr, app.admin_addr);
    let admin_url = app.admin_url("/metrics");
    let http = app.http.clone();

    // An idle keep-alive connection to the admin port.
    let mut idle = TcpStream::connect(admin_addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        read_until(&mut idle, "\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 200")
    );

    // A webhook in flight: its handler is reading the body (hyper answers
    // `100 Continue` only then), and the body has not been sent.
    let body = event_body("video.media.ready", "drained-1");
    let mut in_flight = TcpStream::connect(public).await.unwrap();
    let head = format!(
        "POST /webhooks/fastpix HTTP/1.1\r\nHost: x\r\nFastPix-Signature: {}\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        sign(SECRET, body.as_bytes()),
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    read_until(&mut in_flight, "100 Continue\r\n\r\n").await;

    let shutdown = tokio::spawn(app.shutdown());
    // Draining waits for that webhook, and the admin port still answers.
    let scraped = http.get(&admin_url).send().await.expect("admin answers");
    assert_eq!(scraped.status(), 200);
    assert!(
        !shutdown.is_finished(),
        "shutdown finished with a request in flight"
    );

    in_flight.write_all(body.as_bytes()).await.unwrap();
    let answer = read_until(&mut in_flight, "\"seq\"").await;
    assert!(answer.contains("HTTP/1.1 200"), "{answer}");
    tokio::time::timeout(Duration::from_secs(30), shutdown)
        .await
        .expect("shutdown completes once the request is answered")
        .unwrap()
        .expect("clean shutdown");
    let stored = stream_messages(&nats.client().await, "FASTPIX").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].header("Nats-Msg-Id"), Some("drained-1"));

    // Then the admin port is drained too: its idle connection is closed,
    // and new ones are refused.
    assert!(
        closed_by_peer(&mut idle).await,
        "idle admin connection kept open"
    );
    assert!(TcpStream::connect(admin_addr).await.is_err());
}
