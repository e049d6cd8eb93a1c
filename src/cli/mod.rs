//! The client commands: `subscribe` reads events from NATS, `send` posts
//! signed test events to a bridge. Both load the bridge's own settings (see
//! [`crate::settings::Settings::load_client`]), so they need no setup of
//! their own beside a running bridge and NATS.

pub mod send;
pub mod subscribe;
pub mod templates;
