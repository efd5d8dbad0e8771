//! Kernel uevents (NETLINK_KOBJECT_UEVENT, multicast group 1): what udev itself listens to. The
//! static musl build has no libudev, and berth needs no udev rules to pass a node by major:minor,
//! so the kernel's own events are enough and work with or without a udev daemon.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, Result};
use crate::rule::Type;

/// A device node appearing or going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `change`, `bind`, ...
    pub action: String,
    pub devpath: String,
    pub subsystem: String,
    /// `/dev/<DEVNAME>`, when the event is about a device node.
    pub devname: Option<String>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub env: BTreeMap<String, String>,
}

impl Uevent {
    /// Parses one kernel message: `action@devpath\0KEY=VALUE\0...`. Messages from udevd
    /// (`libudev` header) are not kernel events and are ignored.
    pub fn parse(buf: &[u8]) -> Option<Uevent> {
        let mut parts = buf.split(|b| *b == 0).filter(|p| !p.is_empty());
        let head = std::str::from_utf8(parts.next()?).ok()?;
        let (action, devpath) = head.split_once('@')?;
        let mut env = BTreeMap::new();
        for p in parts {
            let Ok(s) = std::str::from_utf8(p) else { continue };
            if let Some((k, v)) = s.split_once('=') {
                env.insert(k.to_string(), v.to_string());
            }
        }
        let num = |k: &str| env.get(k).and_then(|v| v.parse::<u32>().ok());
        Some(Uevent {
            action: env.get("ACTION").cloned().unwrap_or_else(|| action.to_string()),
            devpath: env.get("DEVPATH").cloned().unwrap_or_else(|| devpath.to_string()),
            subsystem: env.get("SUBSYSTEM").cloned().unwrap_or_default(),
            devname: env.get("DEVNAME").map(|n| if n.starts_with('/') { n.clone() } else { format!("/dev/{n}") }),
            major: num("MAJOR"),
            minor: num("MINOR"),
            env,
        })
    }

    /// Block or char, for events that carry a device number.
    pub fn kind(&self) -> Type {
        if self.subsystem == "block" {
            Type::Block
        } else {
            Type::Char
        }
    }
}

/// A non-blocking netlink socket bound to the kernel's uevent group.
pub struct Monitor {
    fd: OwnedFd,
}

const NETLINK_KOBJECT_UEVENT: libc::c_int = 15;

impl Monitor {
    pub fn open() -> Result<Monitor> {
        // SAFETY: socket(2) with constant arguments; the descriptor is owned right away.
        let fd =
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT) };
        if fd < 0 {
            return Err(Error::io("open uevent netlink socket", io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_nl with family and group set, passed with its size.
        let rc = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            sa.nl_groups = 1;
            // Bursts (a USB hub with several devices) must not overflow the default buffer.
            let size: libc::c_int = 1 << 20;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(Error::io("bind uevent netlink socket", io::Error::last_os_error()));
        }
        Ok(Monitor { fd })
    }

    /// The next event, `Ok(None)` when none is waiting. Messages not sent by the kernel (a
    /// process spoofing events) are dropped.
    pub fn recv(&self) -> io::Result<Option<Uevent>> {
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: recvfrom into our buffer; `sa` is a zeroed sockaddr_nl of the size passed.
            let (n, sa) = unsafe {
                let mut sa: libc::sockaddr_nl = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
                let n = libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut sa as *mut libc::sockaddr_nl).cast(),
                    &mut len,
                );
                (n, sa)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if sa.nl_pid != 0 {
                continue;
            }
            if let Some(ev) = Uevent::parse(&buf[..n as usize]) {
                return Ok(Some(ev));
            }
        }
    }
}

impl AsRawFd for Monitor {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_messages() {
        let msg = b"add@/devices/virtual/block/loop9\0ACTION=add\0DEVPATH=/devices/virtual/block/loop9\0SUBSYSTEM=block\0MAJOR=7\0MINOR=9\0DEVNAME=loop9\0DEVTYPE=disk\0SEQNUM=1\0";
        let e = Uevent::parse(msg).unwrap();
        assert_eq!(e.action, "add");
        assert_eq!(e.devname.as_deref(), Some("/dev/loop9"));
        assert_eq!((e.major, e.minor, e.kind()), (Some(7), Some(9), Type::Block));
        let tty = b"remove@/devices/x/ttyUSB0/tty/ttyUSB0\0ACTION=remove\0SUBSYSTEM=tty\0MAJOR=188\0MINOR=0\0DEVNAME=ttyUSB0\0";
        let e = Uevent::parse(tty).unwrap();
        assert_eq!((e.action.as_str(), e.kind(), e.devpath.as_str()), ("remove", Type::Char, "/devices/x/ttyUSB0/tty/ttyUSB0"));
        assert_eq!(Uevent::parse(b"libudev\0\xfe\xed").map(|e| e.action), None);
        assert!(Uevent::parse(b"").is_none());
        let usb = b"add@/devices/u/1-1\0ACTION=add\0SUBSYSTEM=usb\0DEVNAME=bus/usb/001/004\0MAJOR=189\0MINOR=3\0";
        assert_eq!(Uevent::parse(usb).unwrap().devname.as_deref(), Some("/dev/bus/usb/001/004"));
    }
}
