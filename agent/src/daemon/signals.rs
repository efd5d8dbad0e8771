//! SIGCHLD, SIGTERM and SIGINT for the agent's loop: a handler notes the signal and writes a byte
//! to a pipe that the loop watches (the self-pipe trick). tokio's signal driver works the same
//! way, but allocates its bookkeeping for every signal number the kernel has, 22 KB of heap, to
//! serve these three.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use berth_runtime::{Error, Result};

/// Bits of the set [`Signals::next`] returns.
pub const CHILD: u32 = 1;
pub const TERMINATE: u32 = 2;
pub const INTERRUPT: u32 = 4;

const HANDLED: [(libc::c_int, u32); 3] = [(libc::SIGCHLD, CHILD), (libc::SIGTERM, TERMINATE), (libc::SIGINT, INTERRUPT)];

/// Signals that came and were not yet taken.
static PENDING: AtomicU32 = AtomicU32::new(0);
/// The pipe's write end (-1 before `install`).
static WAKE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let bit = HANDLED.iter().find(|(s, _)| *s == sig).map_or(0, |(_, b)| *b);
    PENDING.fetch_or(bit, Ordering::SeqCst);
    let fd = WAKE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: __errno_location returns this thread's errno, which a handler must leave as it
        // found it; write(2) is async-signal-safe, and a full pipe (EAGAIN) already holds a
        // wake-up.
        unsafe {
            let errno = *libc::__errno_location();
            libc::write(fd, b"s".as_ptr().cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

/// The read end of the pipe, registered with the loop.
pub struct Signals(AsyncFd<OwnedFd>);

impl Signals {
    /// Installs the handlers. Once per process: the agent's loop owns them until it exits.
    pub fn install() -> Result<Signals> {
        let mut fds = [-1; 2];
        // SAFETY: pipe2 writes two new descriptors into `fds`.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(Error::io("signal pipe", std::io::Error::last_os_error()));
        }
        // SAFETY: both descriptors are new and ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let old = WAKE.swap(write.into_raw_fd(), Ordering::SeqCst);
        if old >= 0 {
            // SAFETY: an earlier install's write end, which nothing else holds.
            drop(unsafe { OwnedFd::from_raw_fd(old) });
        }
        for (sig, _) in HANDLED {
            // SAFETY: sigaction is a plain C struct (all zeroes is valid); the handler only makes
            // async-signal-safe calls. SA_RESTART: a slow system call of the loop's is resumed,
            // not failed with EINTR.
            let rc = unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut())
            };
            if rc != 0 {
                return Err(Error::io(format!("handler for signal {sig}"), std::io::Error::last_os_error()));
            }
        }
        // SAFETY: the AsyncFd owns the descriptor for as long as it is registered.
        let fd = unsafe { AsyncFd::register_with_interest(read, Interest::READABLE) };
        Ok(Signals(fd.map_err(|e| Error::io("signal pipe", e.into_parts().1))?))
    }

    /// Waits for a signal; returns every one that came (`CHILD | TERMINATE | INTERRUPT` bits).
    pub async fn next(&self) -> u32 {
        loop {
            // The handler sets the bit before it writes: a bit seen here is never left behind by
            // a drained pipe.
            let got = PENDING.swap(0, Ordering::SeqCst);
            if got != 0 {
                return got;
            }
            let Ok(mut ready) = self.0.readable().await else {
                // The loop's driver is gone (shutting down): nothing will come.
                return std::future::pending().await;
            };
            let mut buf = [0u8; 64];
            // SAFETY: read into our own buffer from our own non-blocking pipe.
            while unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
            ready.clear_ready();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_wakes_the_loop_and_is_reported_once() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let s = Signals::install().unwrap();
            // SAFETY: raise sends to this thread, and our handler takes SIGTERM.
            assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), s.next()).await.unwrap();
            assert_eq!(got & TERMINATE, TERMINATE);
            // Taken: not reported again (other tests' children may still send SIGCHLD).
            assert_eq!(PENDING.load(Ordering::SeqCst) & TERMINATE, 0);
            // SAFETY: raise again; then the three signals go back to their defaults for the
            // rest of the test process.
            assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), s.next()).await.unwrap();
            assert_eq!(got & (INTERRUPT | TERMINATE), INTERRUPT);
            for (sig, _) in HANDLED {
                // SAFETY: restores the default disposition.
                unsafe { libc::signal(sig, libc::SIG_DFL) };
            }
        });
    }
}
