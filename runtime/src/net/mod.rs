//! Container networking: what the agent writes into containers and serves to them.

pub mod dns;
pub mod files;
