//! Building and running the bridge: bind both listeners, connect, serve until
//! the caller's shutdown future fires, finish in-flight requests, drain NATS.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::bridge::refused::Refusals;
use crate::bridge::routes::{AppState, admin, app};
use crate::nats::publisher::{Publisher, PublisherError};
use crate::ops::metrics::Metrics;
use crate::ops::serve::{ListenError, Timeouts, bind, serve};
use crate::settings::Settings;

/// How often recorded durations are folded into the histograms. They are
/// kept raw until then (16 bytes each, two per request), so a short period
/// keeps memory flat under load: at 25k requests/s, 1 s holds ~800 KB.
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Bind(#[from] ListenError),
    #[error(transparent)]
    Nats(#[from] PublisherError),
}

/// A bridge bound to its ports and connected (or connecting) to NATS.
pub struct Application {
    listener: TcpListener,
    admin_listener: TcpListener,
    state: AppState,
    settings: Settings,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let listener = bind("http.listen", settings.http.listen).await?;
        let admin_listener = bind("http.admin_listen", settings.http.admin_listen).await?;
        for w in settings.webhooks.iter().filter(|w| w.allow_unsigned) {
            tracing::warn!(
                webhook = w.name.as_str(),
                "allow_unsigned=true: UNSIGNED REQUESTS WILL BE PUBLISHED. Anyone who can reach this port can forge events. Never use this in production."
            );
        }
        let names: Vec<&str> = settings.webhooks.iter().map(|w| w.name.as_str()).collect();
        let metrics = Metrics::for_webhooks(&names);
        let publisher = Publisher::connect(
            &settings.nats,
            &settings.jetstream,
            &settings.webhooks,
            settings.http.max_body_bytes,
            metrics.clone(),
        )
        .await?;
        let refusal_settings = settings.refusals();
        if publisher.is_connected() {
            Refusals::prepare(publisher.client(), &refusal_settings).await;
        }
        let refusals = Refusals::start(
            publisher.client().clone(),
            &refusal_settings,
            metrics.clone(),
        );
        let state = AppState::new(
            settings.webhooks.clone().into(),
            publisher,
            &settings.http,
            metrics,
            refusals,
        );
        Ok(Self {
            listener,
            admin_listener,
            state,
            settings,
        })
    }

    /// The address actually bound (the port is chosen when `http.listen` has port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.settings.http.listen)
    }

    /// The admin listener's address (`http.admin_listen`, port chosen when 0).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or(self.settings.http.admin_listen)
    }

    pub fn publisher(&self) -> &Publisher {
        &self.state.publisher
    }

    /// Serves until `shutdown` completes, then stops accepting, lets
    /// in-flight requests finish (at most `http.shutdown_grace`) and drains
    /// the NATS connection. The admin listener answers until the end, so
    /// metrics can be scraped while the bridge drains; then it is drained
    /// the same way.
    pub async fn run_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let publisher = self.state.publisher.clone();
        let timeouts = Timeouts {
            header: self.settings.http.header_timeout,
            shutdown_grace: self.settings.http.shutdown_grace,
        };
        for w in self.settings.webhooks.iter() {
            tracing::info!(
                addr = %self.local_addr(),
                webhook = w.name.as_str(),
                path = %w.path,
                prefix = %w.prefix,
                "listening for FastPix webhooks"
            );
        }
        tracing::info!(
            addr = %self.admin_addr(),
            "admin listening: /metrics, /healthz, /readyz"
        );
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_server = tokio::spawn(serve(
            "admin",
            self.admin_listener,
            admin(self.state.clone()),
            timeouts,
            async {
                let _ = admin_stopped.await;
            },
        ));
        let reloads = tokio::spawn(crate::bridge::reload::watch(
            self.state.webhooks.clone(),
            self.state.metrics.clone(),
            self.settings.secrets.check_interval,
        ));
        let metrics = self.state.metrics.clone();
        let upkeep = tokio::spawn(async move {
            let mut every = tokio::time::interval(METRICS_UPKEEP_EVERY);
            loop {
                every.tick().await;
                metrics.run_upkeep();
            }
        });
        serve("public", self.listener, app(self.state), timeouts, shutdown).await;
        publisher.drain().await;
        let _ = stop_admin.send(());
        if let Err(e) = admin_server.await {
            tracing::warn!(error = %e, "the admin listener's task failed");
        }
        upkeep.abort();
        reloads.abort();
        tracing::info!("stopped");
        Ok(())
    }
}
