//! The agent's log lines on stderr (journald or the init script's log takes them), filtered by
//! `--log-level` or `BERTH_LOG_LEVEL`: debug, info (default), warn, error.

use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(1);

pub fn set_level(name: &str) -> bool {
    let l = match name {
        "debug" => 0,
        "info" => 1,
        "warn" | "warning" => 2,
        "error" => 3,
        _ => return false,
    };
    LEVEL.store(l, Ordering::Relaxed);
    true
}

pub fn enabled(level: u8) -> bool {
    level >= LEVEL.load(Ordering::Relaxed)
}

#[macro_export]
macro_rules! log_at {
    ($lvl:expr, $tag:expr, $($arg:tt)*) => {
        if $crate::log::enabled($lvl) {
            eprintln!("berth agent: {}{}", $tag, format_args!($($arg)*));
        }
    };
}
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log_at!(0, "debug: ", $($arg)*) }; }
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log_at!(1, "", $($arg)*) }; }
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log_at!(2, "warning: ", $($arg)*) }; }
