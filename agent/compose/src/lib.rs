//! Compose files for berth (`berth compose`): read, interpolate, merge, validate, print as
//! `docker compose config` does, and translate each service into the `run` words berth already
//! parses. No daemon access here: the CLI drives the containers.
#![forbid(unsafe_code)]

pub mod yaml;
pub mod interp;
pub mod dotenv;
pub mod units;
pub mod value;
pub mod model;
pub mod merge;
pub mod project;
pub mod validate;
pub mod config;
pub mod translate;
