//! The `berth` binary: the Docker-like CLI, and (by later issues) the agent it talks to.

pub mod cli;
