//! berth's registry client: the OCI Distribution API (Docker Registry HTTP API v2) for `pull`,
//! `push` and `login`, on a small HTTP/1.1 client of our own over std sockets and the rustls the
//! agent already links. Synchronous: it runs in the CLI process (`berth pull`), never inside the
//! agent's single-threaded runtime, so its worker threads never meet a fork.

pub mod auth;
pub mod client;
pub mod fetch;
pub mod http;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod tls;

pub use client::{Options, Registry};
