//! `[inspect]`: the inspector's page, API and admin port.

use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{SettingsError, invalid};

/// The inspector (`fastpix-nats-bridge inspect`): its page and API, and its
/// admin port. Read only by that command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectSettings {
    /// Address of the page and the JSON API.
    pub listen: SocketAddr,
    /// Address of `/metrics`, `/healthz`, `/readyz` (no token needed).
    pub admin_listen: SocketAddr,
    /// Bearer token of the API and the page. Required when `listen` is not
    /// loopback; on loopback without one, a random token is made at start
    /// and logged, so no route is ever open.
    pub token: Option<SecretString>,
    /// Webhook URL of the bridge the "send a test event" action posts to
    /// [default: the local bridge, from `http.listen` and `webhook.path`].
    pub bridge_url: Option<String>,
    /// Show the credentials events carry (live streams' `streamKey` and
    /// SRT secret, simulcast targets' keys) as stored. Off, the page and
    /// the API show them as `"•••• (hidden)"`; the stored bytes never change.
    pub reveal_secrets: bool,
    /// Field names hidden besides the built-in ones (`streamKey`,
    /// `srtSecret`, any name ending in `secret`, `password` or `token`, …),
    /// matched at any depth, case-insensitively.
    #[serde(deserialize_with = "super::raw::string_list")]
    pub hidden_fields: Vec<String>,
}

impl Default for InspectSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            token: None,
            bridge_url: None,
            reveal_secrets: false,
            hidden_fields: Vec::new(),
        }
    }
}

/// Shortest `inspect.token` accepted: it guards replay and test sends.
pub const INSPECT_TOKEN_MIN_LEN: usize = 16;

impl InspectSettings {
    /// The rules only the inspector needs, checked when it loads its
    /// settings: a token whenever the page can be reached from another host,
    /// and a usable bridge URL.
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        match &self.token {
            None if !self.listen.ip().is_loopback() => {
                return Err(invalid(
                    "inspect.token",
                    format!(
                        "required because inspect.listen ({}) is not a loopback address: anyone who reaches it would read every event",
                        self.listen
                    ),
                ));
            }
            Some(t) if t.expose_secret().trim().len() < INSPECT_TOKEN_MIN_LEN => {
                return Err(invalid(
                    "inspect.token",
                    format!("must be at least {INSPECT_TOKEN_MIN_LEN} characters"),
                ));
            }
            _ => {}
        }
        if let Some(url) = &self.bridge_url
            && !url.starts_with("http://")
            && !url.starts_with("https://")
        {
            return Err(invalid(
                "inspect.bridge_url",
                "must be an http:// or https:// URL",
            ));
        }
        let (page, admin) = (self.listen, self.admin_listen);
        if admin.port() != 0 && admin == page {
            return Err(invalid(
                "inspect.admin_listen",
                format!("{admin} clashes with inspect.listen; give it its own port"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::SECRET;
    use super::super::{Purpose, Settings};

    #[test]
    fn the_inspector_needs_a_token_off_loopback() {
        let inspector = |pairs: &[(&str, &str)]| {
            let mut pairs = pairs.to_vec();
            pairs.push(("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET));
            Settings::from_pairs(Purpose::Inspector, &pairs)
        };
        let s = inspector(&[]).unwrap();
        assert_eq!(s.inspect.listen.to_string(), "127.0.0.1:8090");
        assert_eq!(s.inspect.admin_listen.to_string(), "127.0.0.1:9091");
        let open = [("FASTPIX_BRIDGE__INSPECT__LISTEN", "0.0.0.0:8090")];
        let err = inspector(&open).unwrap_err().to_string();
        assert!(
            err.contains("inspect.token") && err.contains("FASTPIX_BRIDGE__INSPECT__TOKEN"),
            "{err}"
        );
        // Only the inspector's own load checks them: the bridge starts.
        let mut bridge = open.to_vec();
        bridge.push(("FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS", SECRET));
        assert!(Settings::from_pairs(Purpose::Bridge, &bridge).is_ok());
        let short = [open[0], ("FASTPIX_BRIDGE__INSPECT__TOKEN", "short")];
        assert!(inspector(&short).is_err());
        let long = [
            open[0],
            ("FASTPIX_BRIDGE__INSPECT__TOKEN", "a-long-enough-token-0123"),
        ];
        let s = inspector(&long).unwrap();
        assert!(!format!("{s:?}").contains("a-long-enough-token"));
        assert!(!s.inspect.reveal_secrets && s.inspect.hidden_fields.is_empty());
        let s = inspector(&[
            ("FASTPIX_BRIDGE__INSPECT__REVEAL_SECRETS", "true"),
            (
                "FASTPIX_BRIDGE__INSPECT__HIDDEN_FIELDS",
                "rtmpUrl, customerNote",
            ),
        ])
        .unwrap();
        assert!(s.inspect.reveal_secrets);
        assert_eq!(s.inspect.hidden_fields, ["rtmpUrl", "customerNote"]);
    }
}
