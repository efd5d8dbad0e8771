//! A closed stdout (`berth ps | head -1`) ends the CLI as it ends Go programs and coreutils: killed
//! by SIGPIPE, quietly, with no panic or backtrace. SIGPIPE itself stays ignored (Rust's default)
//! so that a peer closing a socket (the agent, a broker) is an error the CLI reports; only a write
//! to stdout or stderr that fails with EPIPE, Go's rule, turns into the signal.

fn closed_pipe_message(msg: &str) -> bool {
    // std's println! panics with "failed printing to stdout: Broken pipe (os error 32)".
    (msg.starts_with("failed printing to stdout") || msg.starts_with("failed printing to stderr")) && msg.contains("os error 32")
}

/// Ends the process as a default SIGPIPE would (exit status 128+13 for the shell).
pub fn die_by_sigpipe() -> ! {
    // SAFETY: restoring the default disposition and raising the signal; no Rust state involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}

/// Installs the panic hook that turns a print into a closed pipe into SIGPIPE.
pub fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p.downcast_ref::<String>().map(String::as_str).or_else(|| p.downcast_ref::<&str>().copied()).unwrap_or("");
        if closed_pipe_message(msg) {
            die_by_sigpipe();
        }
        default(info)
    }));
}

/// An error that is really "stdout went away" (a `write_all` to it failed with EPIPE) ends the
/// same way as a failed print.
pub fn is_closed_stdout(msg: &str) -> bool {
    msg.contains("os error 32") && stdout_closed()
}

/// True when fd 1 is a pipe or socket whose reader is gone (poll reports POLLERR on it).
fn stdout_closed() -> bool {
    let mut p = libc::pollfd { fd: 1, events: 0, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_std_print_failures_only() {
        assert!(closed_pipe_message("failed printing to stdout: Broken pipe (os error 32)"));
        assert!(closed_pipe_message("failed printing to stderr: Broken pipe (os error 32)"));
        assert!(!closed_pipe_message("failed printing to stdout: No space left on device (os error 28)"));
        assert!(!closed_pipe_message("index out of bounds"));
    }
}
