//! What berth's parts say to each other, with no async runtime, no TLS and no unsafe code: the
//! `run` argument grammar and `RunOptions`, container names and device ids, the local socket's
//! requests and responses, the update wire format and its signatures, and the one mapping from
//! a kind of failure to Docker's exit code. The daemon, the CLI, the fleet tool, `tests/` and
//! `fuzz/` use it; it uses none of them.

#![forbid(unsafe_code)]

pub mod args;
pub mod error;
pub mod names;
pub mod run;
pub mod sign;
pub mod signal;
pub mod socket;
pub mod wire;
pub mod words;
