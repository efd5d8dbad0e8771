//! The `berth` binary: the Docker-like CLI, the agent (daemon) it talks to, and the fleet tool.
//!
//! Dependencies point one way: `cli` → `daemon` → `berth_proto`/`berth_runtime`; `fleet` →
//! `berth_proto`; `term` (what the CLI and fleet print), `mqtt` and `log` are leaves any side
//! may use. `scripts/check-deps` enforces it.

pub mod cli;
pub mod daemon;
#[cfg(feature = "fleet")]
pub mod fleet;
pub mod log;
pub mod mqtt;
pub mod term;
