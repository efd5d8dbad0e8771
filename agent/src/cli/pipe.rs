//! A closed stdout (`berth ps | head -1`) ends the CLI as it ends Go programs: killed by SIGPIPE,
//! quietly. Go's rule, kept here: a broken pipe on stdout or stderr ends the process, on any other
//! descriptor (a broker's or a registry's socket, the agent's) it is an EPIPE error the command
//! reports or recovers from. So the CLI catches SIGPIPE, and its handler ends the process only
//! when stdout or stderr is the pipe whose reader is gone. The agent ignores SIGPIPE: a client or
//! an exec session going away must never end it.
//!
//! Not a panic hook on "failed printing to stdout", as berth had before: the firmware aborts on a
//! panic without running any hook (scripts/xbuild).

/// True when fd 1 or 2 is a pipe or socket whose reader is gone (poll reports POLLERR or POLLHUP
/// on it). Async-signal-safe: poll only.
fn stdio_closed() -> bool {
    let mut p = [libc::pollfd { fd: 1, events: 0, revents: 0 }, libc::pollfd { fd: 2, events: 0, revents: 0 }];
    // SAFETY: two valid pollfds, zero timeout.
    let n = unsafe { libc::poll(p.as_mut_ptr(), 2, 0) };
    n > 0 && p.iter().any(|f| f.revents & (libc::POLLERR | libc::POLLHUP) != 0)
}

extern "C" fn on_sigpipe(_: libc::c_int) {
    if stdio_closed() {
        // SAFETY: signal and raise are async-signal-safe; the default action ends the process.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::raise(libc::SIGPIPE);
        }
    }
}

/// The CLI's disposition: SIGPIPE ends the process when stdout or stderr is a closed pipe.
pub fn default_action() {
    // SAFETY: a zeroed sigaction with our handler (async-signal-safe, above) and an empty mask.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigpipe as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGPIPE, &sa, std::ptr::null_mut());
    }
}

/// The agent's disposition: a write to a closed pipe is an EPIPE error.
pub fn ignore() {
    // SAFETY: setting a signal's disposition to "ignore"; no handler, no Rust state.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}
