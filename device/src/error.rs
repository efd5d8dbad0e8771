//! berth's error convention (see `berth_runtime::error`) for this crate, which cannot depend on the
//! runtime (the runtime depends on it): a kind and a one-line, lower-case message naming the device
//! or file. The runtime converts it into its own `Error`, keeping the kind.

use std::fmt;
use std::io;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A device, file or USB id that is not there.
    NotFound,
    /// Bad input: a malformed spec, rule or profile.
    Invalid,
    /// Any failure of the system underneath.
    Io,
}

#[derive(Debug)]
pub struct Error {
    kind: Kind,
    msg: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: Kind, msg: impl Into<String>) -> Self {
        Error { kind, msg: msg.into() }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(Kind::Invalid, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, msg)
    }
    pub fn io(what: impl fmt::Display, e: io::Error) -> Self {
        Self::new(Kind::Io, format!("{what}: {e}"))
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.msg
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}
