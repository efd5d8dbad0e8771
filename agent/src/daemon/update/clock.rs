//! A floor for the clock used in certificate checks. Boards without a real-time clock boot in
//! 1970 until NTP (which may need the very network the broker is on) sets the time; certificates
//! would all look not yet valid. The floor is the later of the build time and the last time the
//! agent reached its broker with a sane clock, kept in `<root>/clock`.

use std::path::Path;

use berth_runtime::timefmt;

/// Rewritten at most this often: each write wears the flash.
const WRITE_EVERY: i64 = 6 * 3600;

pub fn floor(root: &Path) -> u64 {
    let saved = std::fs::read_to_string(root.join("clock")).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
    saved.max(crate::mqtt::build_time())
}

/// Called when the broker was reached (so the certificate checks passed, or there were none).
pub fn contact(root: &Path) {
    let now = timefmt::now();
    if now <= 0 || (now as u64) < floor(root) {
        return;
    }
    let saved = std::fs::read_to_string(root.join("clock")).ok().and_then(|s| s.trim().parse::<i64>().ok()).unwrap_or(0);
    if now - saved >= WRITE_EVERY {
        if let Err(e) = berth_runtime::fsutil::replace(&root.join("clock"), format!("{now}\n").as_bytes()) {
            crate::debug!("{e}");
        }
    }
}
