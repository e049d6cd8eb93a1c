//! Operations a consuming service shares with the bridge: [`shutdown`]
//! waits for Ctrl-C or SIGTERM, and [`telemetry`] sets up logs.

pub mod shutdown;
pub mod telemetry;

pub use shutdown::shutdown_signal;
