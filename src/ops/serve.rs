//! Serving HTTP/1.1, for the bridge's listeners and the inspector's alike:
//! a read buffer of bounded size, a timer on every request head
//! (`http.header_timeout`), and a graceful stop bounded by
//! `http.shutdown_grace`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// hyper's read buffer per connection, and so the largest request head.
/// hyper's default (~400 KiB) is what a connection streaming a body grows
/// its buffer to; with many connections reading (admitted bodies, lingering
/// closes) that, not the bodies, would dominate memory. 64 KiB reads bodies
/// as fast and leaves room for any sane head (`431` beyond it).
pub const READ_BUFFER_MAX: usize = 64 * 1024;

/// A listener that could not be opened, named by its setting.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (setting `{key}`): {source}")]
pub struct ListenError {
    pub key: &'static str,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds `addr`, the value of setting `key`.
pub async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { key, addr, source })
}

/// `http.header_timeout` and `http.shutdown_grace`, which every listener obeys.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub shutdown_grace: Duration,
}

/// Serves `router` on `listener` until `stop` completes, then closes the
/// listener (new connections fail at once, so senders retry elsewhere) and
/// lets open connections finish their requests for at most
/// `shutdown_grace` before stopping them. Both listeners go through
/// here, and the inspector's.
///
/// Connections are served by hyper (HTTP/1.1) directly rather than by
/// `axum::serve`, which sets no timer and so cannot cut off a client that
/// sends its headers slowly or never (`http.header_timeout`).
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: axum::Router,
    timeouts: Timeouts,
    stop: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .max_buf_size(READ_BUFFER_MAX);
    let service = TowerToHyperService::new(router);
    let graceful = GracefulShutdown::new();
    // Kept so that what still runs after the grace period can be stopped.
    let mut connections = tokio::task::JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(listener = name, error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        // The peer address, for the records of refused deliveries.
        let svc = service.clone();
        let with_peer = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            hyper::service::Service::call(&svc, req)
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), with_peer));
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(listener = name, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        listener = name,
        "shutting down: no new connections; finishing in-flight requests"
    );
    if tokio::time::timeout(timeouts.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(listener = name, grace = ?timeouts.shutdown_grace, "in-flight requests still running after the grace period; stopping them");
        connections.shutdown().await;
    }
}
