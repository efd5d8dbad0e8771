//! Compose files for berth (`berth compose`): read, interpolate, merge, validate, print as
//! `docker compose config` does, and translate each service into the `run` words berth already
//! parses. No daemon access here: the CLI drives the containers.
#![forbid(unsafe_code)]

pub mod config;
pub mod dotenv;
pub mod interp;
pub mod merge;
pub mod model;
pub mod project;
pub mod translate;
pub mod units;
pub mod validate;
pub mod value;
pub mod yaml;
