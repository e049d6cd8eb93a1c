//! The bridge inside the test process.

use std::net::SocketAddr;

use fastpix_nats_bridge::bridge::startup::Application;
use fastpix_nats_bridge::settings::{Purpose, Settings, SettingsError};

use super::*;

/// Settings for a test bridge: loopback port 0, the given NATS, the test
/// secret, plus `overrides` as `FASTPIX_BRIDGE__…` variables (the real
/// loading path).
pub fn test_settings(nats_url: &str, overrides: &[(&str, &str)]) -> Settings {
    test_settings_for(Purpose::Bridge, nats_url, overrides).expect("test settings are valid")
}

/// As [`test_settings`], loaded for `purpose` (the inspector checks its own rules).
pub fn test_settings_for(
    purpose: Purpose,
    nats_url: &str,
    overrides: &[(&str, &str)],
) -> Result<Settings, SettingsError> {
    let mut env: config::Map<String, String> = [
        ("FASTPIX_BRIDGE__HTTP__LISTEN", "127.0.0.1:0"),
        ("FASTPIX_BRIDGE__HTTP__ADMIN_LISTEN", "127.0.0.1:0"),
        ("FASTPIX_BRIDGE__NATS__URL", nats_url),
        ("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET),
        ("FASTPIX_BRIDGE__NATS__PUBLISH_TIMEOUT", "2s"),
        ("FASTPIX_BRIDGE__NATS__CONNECT_TIMEOUT", "2s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in overrides {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    Settings::load_for(purpose, None, Some(env))
}

/// A bridge running inside the test process.
pub struct TestApp {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub http: reqwest::Client,
    pub settings: Settings,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(nats: &NatsServer) -> Self {
        Self::spawn_with(&nats.url(), &[]).await
    }

    pub async fn spawn_with(nats_url: &str, overrides: &[(&str, &str)]) -> Self {
        Self::spawn_settings(test_settings(nats_url, overrides)).await
    }

    /// Starts a bridge with `settings` exactly as given (named webhooks,
    /// secrets files), without the single-webhook defaults of `spawn_with`.
    pub async fn spawn_settings(settings: Settings) -> Self {
        init_logs();
        let app = Application::build(settings.clone())
            .await
            .expect("bridge starts");
        let (addr, admin_addr) = (app.local_addr(), app.admin_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            admin_addr,
            http: reqwest::Client::new(),
            settings,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin_addr, path)
    }

    /// The admin listener's `/metrics`, parsed.
    pub async fn scrape(&self) -> Scrape {
        let resp = self
            .http
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("request reaches the admin listener");
        assert_eq!(resp.status(), 200);
        Scrape(resp.text().await.expect("metrics text"))
    }

    pub fn webhook_url(&self) -> String {
        self.url(&self.settings.webhooks[0].path)
    }

    /// POSTs `body` signed with the test secret.
    pub async fn post_signed(&self, body: &str) -> reqwest::Response {
        self.post(body, Some(&sign(SECRET, body.as_bytes()))).await
    }

    pub async fn post(&self, body: &str, signature: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.webhook_url())
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(sig) = signature {
            req = req.header("FastPix-Signature", sig);
        }
        req.send().await.expect("request reaches the bridge")
    }

    pub async fn get_status(&self, path: &str) -> u16 {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("request reaches the bridge")
            .status()
            .as_u16()
    }

    /// Stops the bridge the way SIGTERM would, and waits for it.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.expect("bridge task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}
