//! One error type for a command, the kind of failure that crosses the socket, and the one place
//! that turns a kind into Docker's exit code.

use serde::{Deserialize, Serialize};

use crate::args::UsageError;

/// What kind of failure ended a command, as far as its exit code goes. The agent sends it in
/// `Response::Error`; the CLI ends with `exit_code(kind)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Bad flags or arguments, or berth itself could not act on a container it was asked to
    /// create or run (Docker's 125).
    Usage,
    /// The operation failed: no such container, not running, I/O (1).
    Failed,
    /// The container's command exists but cannot be invoked (126).
    CannotInvoke,
    /// The container's command was not found (127).
    CommandNotFound,
    /// The container's (or exec'd process's) own exit code, or a code already reported.
    Exit(i32),
}

/// Docker's exit codes: 125 bad usage or the engine failed, 126 cannot invoke, 127 not found,
/// 1 a failed operation, or the container's own.
pub fn exit_code(kind: Kind) -> i32 {
    match kind {
        Kind::Usage => 125,
        Kind::Failed => 1,
        Kind::CannotInvoke => 126,
        Kind::CommandNotFound => 127,
        Kind::Exit(code) => code,
    }
}

/// How a command failed.
#[derive(Debug)]
pub enum CliError {
    Usage(UsageError),
    Op(berth_runtime::Error),
    /// Already reported; exit with this code.
    Exit(i32),
}

impl CliError {
    pub fn kind(&self) -> Kind {
        match self {
            CliError::Usage(_) => Kind::Usage,
            CliError::Op(_) => Kind::Failed,
            CliError::Exit(code) => Kind::Exit(*code),
        }
    }
}

impl From<berth_runtime::Error> for CliError {
    fn from(e: berth_runtime::Error) -> Self {
        CliError::Op(e)
    }
}

impl From<UsageError> for CliError {
    fn from(e: UsageError) -> Self {
        CliError::Usage(e)
    }
}

/// A failed operation (exit 1) with this message.
pub fn op_err(msg: impl Into<String>) -> CliError {
    CliError::Op(berth_runtime::Error::invalid(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_exit_codes() {
        assert_eq!(exit_code(Kind::Usage), 125);
        assert_eq!(exit_code(Kind::Failed), 1);
        assert_eq!(exit_code(Kind::CannotInvoke), 126);
        assert_eq!(exit_code(Kind::CommandNotFound), 127);
        assert_eq!(exit_code(Kind::Exit(3)), 3);
        assert_eq!(exit_code(op_err("x").kind()), 1);
    }
}
