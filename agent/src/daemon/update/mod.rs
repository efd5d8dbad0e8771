//! Updates over MQTT, the agent's side: transfer, journal, apply, and the broker session. The wire
//! format and signatures, shared with `berth fleet`, are in `berth_proto::{wire, sign}`.

pub mod apply;
pub mod apply_app;
pub mod clock;
pub mod host;
pub mod journal;
pub mod manager;
pub mod session;
pub mod snapshot;
pub mod targets;
pub mod transfer;

#[cfg(test)]
mod apply_tests;
