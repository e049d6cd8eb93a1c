//! The inspector (`fastpix-nats-bridge inspect`): a web page and a JSON API
//! showing what is stored, what the bridge refused, and how the consumers
//! keep up. It reads from NATS only, so any number can run and the bridge's
//! path does not change. [`index`] keeps the lookup index in a KV bucket,
//! [`reader`] reads messages and pages of the streams, [`query`] says what
//! the API's queries mean (unit-tested, no I/O), [`live`] follows new
//! events, [`consumers`] reports and replays durable consumers, [`auth`]
//! guards it all with a token, [`redact`] hides the credentials payloads
//! carry, [`api`] is the HTTP side, [`error`] its one error type, and
//! [`assets`] the page.

pub mod api;
pub mod assets;
pub mod auth;
pub mod consumers;
pub mod error;
pub mod index;
pub mod live;
pub mod query;
pub mod reader;
pub mod redact;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::fastpix::subject::SubjectPrefix;
use crate::nats::connection::{self, ConnectError, Patience};
use crate::ops::serve::{ListenError, Timeouts, bind, serve};
use crate::settings::Settings;

/// What a test send got back from the bridge.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SendAnswer {
    pub url: String,
    pub event_type: String,
    pub id: String,
    pub status: u16,
    pub answer: String,
}

/// Posts one signed test event of the given type to the bridge (supplied by
/// the command line, which owns `send`).
pub type TestSender =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<SendAnswer, String>> + Send + Sync>;

/// What every handler shares.
pub struct Shared {
    pub js: jetstream::Context,
    client: async_nats::Client,
    pub prefix: SubjectPrefix,
    pub events: reader::Reader,
    pub refused: reader::Reader,
    /// Signed bodies that were not events (`<stream>_INVALID`).
    pub invalid: reader::Reader,
    pub dead: reader::Reader,
    /// Where the consumer workers keep dead letters (`dead` reads its stream).
    pub dead_letters: consumers::DeadLetters,
    index: RwLock<Option<index::Index>>,
    index_open: AtomicBool,
    pub live: broadcast::Sender<Arc<str>>,
    pub history: consumers::History,
    pub auth: auth::Auth,
    pub sender: Option<TestSender>,
    pub bridge_url: Option<String>,
    /// Hides credentials in payloads unless `inspect.reveal_secrets`.
    pub redactor: redact::Redactor,
}

impl Shared {
    pub fn index(&self) -> Option<index::Index> {
        self.index.read().ok().and_then(|i| i.clone())
    }

    pub fn is_ready(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
            && self.index_open.load(Ordering::SeqCst)
    }

    /// Events not yet indexed: not yet delivered to an inspector, or
    /// delivered and not yet acked.
    pub async fn index_pending(&self) -> Option<u64> {
        let stream = self.js.get_stream_no_info(&self.events.name).await.ok()?;
        let mut c: jetstream::consumer::PullConsumer =
            stream.get_consumer(index::INDEX_CONSUMER).await.ok()?;
        c.info()
            .await
            .ok()
            .map(|i| i.num_pending + i.num_ack_pending as u64)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Bind(#[from] ListenError),
    #[error(transparent)]
    Nats(#[from] ConnectError),
    /// Several webhooks and none picked (`FASTPIX_BRIDGE_WEBHOOK`).
    #[error(transparent)]
    Webhook(#[from] crate::settings::SettingsError),
}

/// An inspector bound to its ports and connected (or connecting) to NATS.
pub struct Inspector {
    listener: TcpListener,
    admin_listener: TcpListener,
    shared: Arc<Shared>,
    max_age: Duration,
    replicas: usize,
    /// `http.header_timeout` and `http.shutdown_grace`, as the bridge's listeners.
    timeouts: Timeouts,
}

impl Inspector {
    /// `token` is `inspect.token`, or the one made for this run.
    pub async fn build(
        settings: &Settings,
        token: String,
        sender: Option<TestSender>,
    ) -> Result<Self, InspectError> {
        let webhook = settings.webhook_from_env()?;
        let listener = bind("inspect.listen", settings.inspect.listen).await?;
        let admin_listener = bind("inspect.admin_listen", settings.inspect.admin_listen).await?;
        let client =
            connection::connect(&settings.nats, "fastpix-inspector", Patience::Forever).await?;
        let js = jetstream::new(client.clone());
        let stream = webhook.stream.clone();
        let dead_letters = consumers::DeadLetters::of(&stream, &webhook.prefix);
        let shared = Arc::new(Shared {
            events: reader::Reader::new(js.clone(), stream.clone()),
            refused: reader::Reader::new(
                js.clone(),
                crate::nats::refused::stream_name(&settings.jetstream),
            ),
            invalid: reader::Reader::new(js.clone(), crate::nats::invalid::stream_name(&stream)),
            dead: reader::Reader::new(js.clone(), dead_letters.stream.clone()),
            dead_letters,
            js,
            client,
            prefix: webhook.prefix.clone(),
            index: RwLock::new(None),
            index_open: AtomicBool::new(false),
            live: broadcast::channel(live::BUFFER).0,
            history: consumers::History::default(),
            auth: auth::Auth::new(token),
            sender,
            bridge_url: settings.inspect.bridge_url.clone(),
            redactor: redact::Redactor::new(
                &settings.inspect.hidden_fields,
                settings.inspect.reveal_secrets,
            ),
        });
        if settings.inspect.reveal_secrets {
            tracing::warn!(
                "inspect.reveal_secrets=true: the page and the API show the stream keys and secrets events carry"
            );
        }
        Ok(Inspector {
            listener,
            admin_listener,
            shared,
            max_age: settings.jetstream.max_age,
            replicas: settings.jetstream.replicas,
            timeouts: Timeouts {
                header: settings.http.header_timeout,
                shutdown_grace: settings.http.shutdown_grace,
            },
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener.local_addr().ok()
    }

    /// Serves until `shutdown` completes.
    pub async fn run_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shared = self.shared.clone();
        let mut tasks = tokio::task::JoinSet::new();
        let (stop_index, index_stop) = tokio::sync::watch::channel(false);
        let indexer = tokio::spawn(keep_index(
            shared.clone(),
            self.max_age,
            self.replicas,
            index_stop,
        ));
        tasks.spawn(live::follow(
            shared.js.clone(),
            shared.events.name.clone(),
            shared.live.clone(),
        ));
        tasks.spawn(consumers::sample(
            shared.js.clone(),
            shared.events.name.clone(),
            shared.history.clone(),
        ));
        if let Some(addr) = self.local_addr() {
            tracing::info!(%addr, "inspector listening");
        }
        if let Some(addr) = self.admin_addr() {
            tracing::info!(%addr, "inspector admin listening: /metrics, /healthz, /readyz");
        }
        // Both listeners go through the bridge's hardened path: a timer on
        // every request head, and a stop bounded by the grace period (the
        // live page's event stream never ends by itself).
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = tokio::spawn(serve(
            "inspector admin",
            self.admin_listener,
            api::admin(shared.clone()),
            self.timeouts,
            async {
                let _ = admin_stopped.await;
            },
        ));
        serve(
            "inspector",
            self.listener,
            api::app(shared.clone()),
            self.timeouts,
            shutdown,
        )
        .await;
        let _ = stop_admin.send(());
        let _ = admin.await;
        // The index finishes the batch it holds; one stuck on a NATS that is
        // away is given up after the grace period (its events come back to
        // the next inspector after the consumer's ack wait).
        let _ = stop_index.send(true);
        let abort = indexer.abort_handle();
        if tokio::time::timeout(self.timeouts.shutdown_grace, indexer)
            .await
            .is_err()
        {
            abort.abort();
            tracing::warn!("index stopped before its last batch was applied");
        }
        tasks.shutdown().await;
        // The last ack is written before the connection goes.
        let _ = tokio::time::timeout(self.timeouts.shutdown_grace, shared.client.flush()).await;
        let _ = shared.client.drain().await;
        Ok(())
    }
}

/// Opens the index (waiting for the events stream to exist) and keeps it
/// current, starting over after any failure, until `stop` turns true.
async fn keep_index(
    shared: Arc<Shared>,
    max_age: Duration,
    replicas: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let opened = async {
            let stream = shared
                .js
                .get_stream(&shared.events.name)
                .await
                .map_err(|e| e.to_string())?;
            index::open(&shared.js, &stream, &shared.events.name, max_age, replicas)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match opened {
            Ok((idx, consumer)) => {
                if let Ok(mut slot) = shared.index.write() {
                    *slot = Some(idx.clone());
                }
                shared.index_open.store(true, Ordering::SeqCst);
                if let Err(e) = index::run(idx, consumer, &mut stop).await {
                    tracing::warn!(error = %e, "index consumer stopped; reopening");
                }
                shared.index_open.store(false, Ordering::SeqCst);
            }
            Err(e) => {
                tracing::info!(error = %e, "index not open yet (is the bridge's stream in place?)")
            }
        }
        if *stop.borrow() {
            break;
        }
        // Opening again after a second, unless told to stop meanwhile.
        let _ = tokio::time::timeout(Duration::from_secs(1), stop.changed()).await;
    }
}
