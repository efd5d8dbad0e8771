//! The one error convention of berth: a kind (what the CLI maps to an exit code) and a lower-case,
//! one-line message that names the thing involved (file, digest, image). Context is added where the
//! error is raised, never by re-wrapping a bare `io::Error` later.

use std::fmt;
use std::io;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unknown image, container, file or layer.
    NotFound,
    /// Bad input: malformed archive, wrong digest, escaping path, bad reference.
    Invalid,
    /// The request clashes with the current state (image in use, name taken).
    Conflict,
    /// The disk is full (ENOSPC or EDQUOT).
    NoSpace,
    /// Any other failure of the system underneath.
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
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::new(Kind::Conflict, msg)
    }
    /// Docker's words for a container that is not there (one function for its many callers).
    pub fn no_such_container(name: &str) -> Self {
        Self::not_found(format!("No such container: {name}"))
    }
    /// [`Error::io`] for "VERB PATH".
    #[inline(never)]
    pub fn io_at(verb: &str, path: &Path, e: io::Error) -> Self {
        Error::io(format!("{verb} {}", path.display()), e)
    }

    /// [`Error::io`] for "VERB FROM to TO".
    #[inline(never)]
    pub fn io_between(verb: &str, from: &Path, to: &Path, e: io::Error) -> Self {
        Error::io(format!("{verb} {} to {}", from.display(), to.display()), e)
    }

    /// An `io::Error` with what was being done; a full disk keeps its own kind so callers and
    /// tests can tell it from other failures.
    pub fn io(what: impl fmt::Display, e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Self::new(Kind::NoSpace, format!("{what}: no space left on device")),
            _ if e.kind() == io::ErrorKind::UnexpectedEof => {
                Self::new(Kind::Invalid, format!("{what}: unexpected end of data (truncated?)"))
            }
            _ => Self::new(Kind::Io, format!("{what}: {e}")),
        }
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.msg
    }
    /// Prefixes the message with where it happened, keeping the kind.
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        Error { kind: self.kind, msg: format!("{ctx}: {}", self.msg) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

/// `io::Result` → `Result` with a description of what was being done.
pub trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
    /// The common description, "VERB PATH" (`read /var/lib/berth/x: ...`). One shared function
    /// builds it: the `format!` that each of some 130 call sites inlined cost the armhf firmware
    /// about 5 KB.
    fn ctx_path(self, verb: &'static str, path: &Path) -> Result<T>;
    /// "VERB FROM to TO" (`rename`, `copy`), the same way.
    fn ctx_paths(self, verb: &'static str, from: &Path, to: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }

    fn ctx_path(self, verb: &'static str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io_at(verb, path, e))
    }

    fn ctx_paths(self, verb: &'static str, from: &Path, to: &Path) -> Result<T> {
        self.map_err(|e| Error::io_between(verb, from, to, e))
    }
}

/// The device crate's errors keep their kind (it cannot use this type: it sits below the runtime).
impl From<berth_device::Error> for Error {
    fn from(e: berth_device::Error) -> Self {
        let kind = match e.kind() {
            berth_device::Kind::NotFound => Kind::NotFound,
            berth_device::Kind::Invalid => Kind::Invalid,
            berth_device::Kind::Io => Kind::Io,
        };
        Error::new(kind, e.message())
    }
}
