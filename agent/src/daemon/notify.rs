//! systemd's notify protocol (`Type=notify`): READY=1 once the socket serves, WATCHDOG=1 at half
//! the watchdog interval. A datagram to $NOTIFY_SOCKET; nothing happens outside systemd.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn send(msg: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else { return };
    let Ok(sock) = UnixDatagram::unbound() else { return };
    if let Some(abstract_name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()) {
            let _ = sock.send_to_addr(msg.as_bytes(), &addr);
        }
    } else {
        let _ = sock.send_to(msg.as_bytes(), &path);
    }
}

pub fn ready() {
    send(&format!("READY=1\nMAINPID={}", std::process::id()));
}

pub fn stopping() {
    send("STOPPING=1");
}

/// Half the watchdog interval systemd asked for, if it asked (and asked this process).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2)).filter(|d| !d.is_zero())
}

pub fn watchdog() {
    send("WATCHDOG=1");
}

#[cfg(test)]
mod tests {
    #[test]
    fn ready_reaches_the_notify_socket() {
        let dir = std::env::temp_dir().join(format!("berth-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("notify");
        let rx = std::os::unix::net::UnixDatagram::bind(&p).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &p);
        super::ready();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().starts_with("READY=1"));
        std::env::remove_var("NOTIFY_SOCKET");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
