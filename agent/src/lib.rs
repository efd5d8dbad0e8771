//! The `berth` binary: the Docker-like CLI and the agent it talks to.

pub mod agent;
pub mod cli;
pub mod config;
pub mod log;
pub mod mqtt;
pub mod proto;
pub mod signal;
pub mod update;
