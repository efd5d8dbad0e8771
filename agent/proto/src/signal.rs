//! Signal names as Docker takes them: `SIGTERM`, `TERM`, `15`.

use berth_runtime::{Error, Result};

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

pub fn parse(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).ok_or_else(|| Error::invalid(format!("invalid signal: {s}")))
}

pub fn name(sig: i32) -> String {
    SIGNALS.iter().find(|(_, v)| *v == sig).map_or_else(|| sig.to_string(), |(n, _)| format!("SIG{n}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert_eq!(super::parse("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(super::parse("kill").unwrap(), libc::SIGKILL);
        assert_eq!(super::parse("9").unwrap(), 9);
        assert!(super::parse("SIGNOPE").is_err());
        assert!(super::parse("0").is_err());
        assert_eq!(super::name(15), "SIGTERM");
    }
}
