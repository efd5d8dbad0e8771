//! `run -t`: the CLI opens a pseudo-terminal, gives its slave side to the container as stdio,
//! and copies between its own terminal (in raw mode) and the master side.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use berth_runtime::Error;

pub struct Pty {
    pub master: File,
    pub slave: OwnedFd,
}

pub fn open() -> Result<Pty, Error> {
    // The slave's number from the TIOCGPTN ioctl, as ptsname_r gets it: musl's ptsname_r then
    // formats the path with snprintf, which alone links printf's float formatting into the firmware.
    let mut n: libc::c_uint = 0;
    // SAFETY: posix_openpt/grantpt/unlockpt/ioctl(TIOCGPTN) on a descriptor we own; TIOCGPTN
    // writes one unsigned int, `n`.
    let master = unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            return Err(Error::io("open a pseudo-terminal", io::Error::last_os_error()));
        }
        let master = File::from_raw_fd(m);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 || libc::ioctl(m, libc::TIOCGPTN, &mut n) != 0 {
            return Err(Error::io("set up the pseudo-terminal", io::Error::last_os_error()));
        }
        master
    };
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(format!("/dev/pts/{n}"))
        .map_err(|e| Error::io("open the pseudo-terminal's slave", e))?;
    Ok(Pty { master, slave: slave.into() })
}

/// Puts the CLI's terminal in raw mode until dropped.
pub struct Raw {
    saved: Option<libc::termios>,
}

impl Raw {
    pub fn enter() -> Raw {
        // SAFETY: tcgetattr/tcsetattr on stdin with a termios struct we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return Raw { saved: None };
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            Raw { saved: Some(saved) }
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: restores the attributes saved in `enter`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
    }
}

/// Gives the pty the size of the CLI's terminal.
pub fn copy_size(master: &File) {
    // SAFETY: TIOCGWINSZ fills `ws`; TIOCSWINSZ reads it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Copies master → stdout until the container side closes, and (with `stdin`) stdin → master.
pub fn pump(master: &File, stdin: bool) {
    if stdin {
        if let Ok(mut m) = master.try_clone() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut input = io::stdin().lock();
                while let Ok(n) = input.read(&mut buf) {
                    if n == 0 || m.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    }
    let mut m = master;
    let mut buf = [0u8; 8192];
    let mut out = io::stdout().lock();
    // EIO means every slave descriptor is closed: the container has exited.
    while let Ok(n) = m.read(&mut buf) {
        if n == 0 || out.write_all(&buf[..n]).is_err() {
            break;
        }
        let _ = out.flush();
    }
}
