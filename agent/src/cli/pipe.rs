//! A closed stdout (`berth ps | head -1`) ends the CLI as it ends coreutils and Go programs: killed
//! by SIGPIPE, quietly. The CLI runs with SIGPIPE's default action for that. Sockets are not
//! affected: std sends on them with MSG_NOSIGNAL, so a peer closing one (the agent, a broker) stays
//! an error the CLI reports. The agent ignores SIGPIPE again, Rust's default: a client or an exec
//! session going away must never end it.
//!
//! Not Rust's default plus a panic hook that turns "failed printing to stdout" into the signal, as
//! berth did before: the firmware aborts on a panic without running any hook (scripts/xbuild).

/// The CLI's disposition: a write to a closed pipe ends the process.
pub fn default_action() {
    // SAFETY: setting a signal's disposition to the default; no handler, no Rust state.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// The agent's disposition: a write to a closed pipe is an EPIPE error.
pub fn ignore() {
    // SAFETY: setting a signal's disposition to "ignore"; no handler, no Rust state.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}
