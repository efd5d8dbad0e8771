//! A small rtnetlink client: the few link, address and route requests container networks need
//! (bridge, veth pair, move into a namespace, up, MTU, MAC, master, addresses, default route,
//! delete), over one NETLINK_ROUTE socket. Our own because the crates that do this (rtnetlink,
//! neli) pull in async runtimes or large generic layers; this is a few hundred lines of plain
//! message building. Every request waits for the kernel's acknowledgement, and a failure becomes
//! one line naming the interface.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, Result};

// Message types and flags (linux/rtnetlink.h, linux/netlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;

// Link attributes (linux/if_link.h).
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_PROTINFO: u16 = 12;
/// IFLA_BRPORT_MODE inside IFLA_PROTINFO: the bridge port's hairpin mode.
const IFLA_BRPORT_MODE: u16 = 4;
const NLA_F_NESTED: u16 = 0x8000;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFF_UP: u32 = 0x1;

// Address and route attributes (linux/if_addr.h, linux/rtnetlink.h).
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;

/// One request being built: the netlink header, the family header, then attributes (nested ones
/// through `nest`/`end`).
pub(crate) struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16, family_header: &[u8]) -> Msg {
        Msg::exact(kind, flags | NLM_F_REQUEST | NLM_F_ACK, family_header)
    }

    /// A message with exactly these flags (the parts of an nf_tables batch).
    pub(crate) fn exact(kind: u16, flags: u16, family_header: &[u8]) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set when sent
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set by the socket
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        buf.extend_from_slice(family_header);
        Msg { buf }
    }

    pub(crate) fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub(crate) fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    pub(crate) fn str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(kind, &d)
    }

    pub(crate) fn u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    /// Opens a nested attribute; returns where its length goes.
    pub(crate) fn nest(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        at
    }

    pub(crate) fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// Raw bytes inside the message (a nested family header, as a veth peer's ifinfomsg).
    pub(crate) fn raw(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.pad();
    }
}

/// `struct ifinfomsg`: family, type, index, flags, change mask.
fn ifinfo(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0] = AF_UNSPEC;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

/// What to change on an existing link; `None` leaves it as it is.
#[derive(Debug, Default, Clone)]
pub struct LinkChange<'a> {
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    /// The bridge to enslave the link to.
    pub master: Option<u32>,
    /// A network namespace (its descriptor) to move the link into.
    pub netns: Option<RawFd>,
    pub rename: Option<&'a str>,
}

/// A route of the main table: destination and prefix length (0.0.0.0/0 for the default route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
}

/// A NETLINK_ROUTE socket in the network namespace of the thread that opened it.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink> {
        Netlink::open_protocol(libc::NETLINK_ROUTE)
    }

    /// A socket of another netlink family (NETLINK_NETFILTER for nf_tables).
    pub(crate) fn open_protocol(protocol: i32) -> Result<Netlink> {
        // SAFETY: socket() returns a new descriptor or -1; we take ownership of it below.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
        if fd < 0 {
            return Err(Error::io("open rtnetlink socket", io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_nl is valid; the kernel assigns the port id.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: binds our socket to a sockaddr_nl of the stated size.
        let r = unsafe {
            libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_nl).cast(), std::mem::size_of::<libc::sockaddr_nl>() as u32)
        };
        if r != 0 {
            return Err(Error::io("bind rtnetlink socket", io::Error::last_os_error()));
        }
        Ok(Netlink { fd, seq: 1 })
    }

    /// Opens a socket inside the network namespace `netns` (a descriptor of `/proc/PID/ns/net` or
    /// `/run/netns/NAME`). A netlink socket stays bound to the namespace it was made in, so a
    /// short-lived thread enters the namespace, makes the socket and ends: the caller's own thread
    /// never changes namespace.
    pub fn open_in(netns: RawFd) -> Result<Netlink> {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a namespace descriptor the caller holds; it affects only this
                // thread, which ends right after making the socket.
                if unsafe { libc::setns(netns, libc::CLONE_NEWNET) } != 0 {
                    return Err(Error::io("enter network namespace", io::Error::last_os_error()));
                }
                Netlink::open()
            })
            .join()
            .unwrap_or_else(|_| Err(Error::new(crate::Kind::Io, "enter network namespace: thread panicked")))
        })
    }

    fn send(&mut self, mut msg: Msg) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let len = msg.buf.len() as u32;
        msg.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        msg.buf[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        // SAFETY: sends our buffer on our socket; the kernel is the default destination.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.buf.as_ptr().cast(), msg.buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `msgs` in one write (an nf_tables batch is one transaction) and returns the first
    /// error the kernel reported. The kernel handles a netlink write before `send` returns, so
    /// every error it has to report is queued by then: they are read without waiting.
    pub(crate) fn send_batch(&mut self, msgs: Vec<Msg>) -> io::Result<()> {
        let mut buf = Vec::new();
        for mut m in msgs {
            self.seq = self.seq.wrapping_add(1);
            let len = m.buf.len() as u32;
            m.buf[0..4].copy_from_slice(&len.to_ne_bytes());
            m.buf[8..12].copy_from_slice(&self.seq.to_ne_bytes());
            buf.extend_from_slice(&m.buf);
        }
        let size = (buf.len() + 64 * 1024) as libc::c_int;
        // SAFETY: sets an int option on our socket from a live value; a refusal leaves the
        // default, and a too-large batch then fails with EMSGSIZE below.
        unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        // SAFETY: sends our buffer on our socket; the kernel is the default destination.
        if unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut rbuf = vec![0u8; 32 * 1024];
        let mut first = None;
        loop {
            // SAFETY: receives into our buffer without blocking.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), rbuf.as_mut_ptr().cast(), rbuf.len(), libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break,
                    _ => return Err(e),
                }
            }
            let n = n as usize;
            let mut off = 0;
            while off + 20 <= n {
                let len = u32::from_ne_bytes([rbuf[off], rbuf[off + 1], rbuf[off + 2], rbuf[off + 3]]) as usize;
                let kind = u16::from_ne_bytes([rbuf[off + 4], rbuf[off + 5]]);
                if kind == NLMSG_ERROR {
                    let code = i32::from_ne_bytes([rbuf[off + 16], rbuf[off + 17], rbuf[off + 18], rbuf[off + 19]]);
                    if code != 0 && first.is_none() {
                        first = Some(io::Error::from_raw_os_error(-code));
                    }
                }
                if len < 16 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: receives into our buffer of the given length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Sends a request and reads replies until its acknowledgement (or, for dumps, the end),
    /// handing every other message (type, payload after the netlink header) to `each`.
    fn exchange(&mut self, msg: Msg, mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        self.send(msg)?;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = self.recv(&mut buf)?;
            let mut off = 0;
            while off + 16 <= n {
                let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
                let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let seq = u32::from_ne_bytes([buf[off + 8], buf[off + 9], buf[off + 10], buf[off + 11]]);
                if len < 16 || off + len > n {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated netlink reply"));
                }
                let payload = &buf[off + 16..off + len];
                off += (len + 3) & !3;
                if seq != self.seq {
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        let code = payload.get(0..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        return if code == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-code)) };
                    }
                    NLMSG_DONE => return Ok(()),
                    _ => each(kind, payload),
                }
            }
        }
    }

    fn request(&mut self, msg: Msg, what: impl FnOnce() -> String) -> Result<()> {
        self.exchange(msg, |_, _| {}).map_err(|e| netlink_error(what(), e))
    }

    /// The index of link `name`, or None when there is no such link.
    pub fn index(&mut self, name: &str) -> Result<Option<u32>> {
        let mut m = Msg::new(RTM_GETLINK, 0, &ifinfo(0, 0, 0));
        m.str(IFLA_IFNAME, name);
        let mut found = None;
        let r = self.exchange(m, |kind, p| {
            if kind == RTM_NEWLINK && p.len() >= 16 {
                found = Some(i32::from_ne_bytes([p[4], p[5], p[6], p[7]]) as u32);
            }
        });
        match r {
            Ok(()) => Ok(found),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(netlink_error(format!("look up interface {name}"), e)),
        }
    }

    fn must_index(&mut self, name: &str) -> Result<u32> {
        self.index(name)?.ok_or_else(|| Error::not_found(format!("interface {name}: no such device")))
    }

    /// Creates bridge `name` (down).
    pub fn create_bridge(&mut self, name: &str) -> Result<()> {
        self.create_link(name, "bridge")
    }

    /// Creates a link of `kind` with no other attributes. A kind the kernel has no driver for
    /// (its module missing) fails with EOPNOTSUPP, as a board without CONFIG_BRIDGE does.
    pub fn create_link(&mut self, name: &str, kind: &str) -> Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfo(0, 0, 0));
        m.str(IFLA_IFNAME, name);
        let info = m.nest(IFLA_LINKINFO);
        m.str(IFLA_INFO_KIND, kind);
        m.end(info);
        self.request(m, || format!("create {kind} {name}"))
    }

    /// Creates a veth pair: `host` here, `peer` here or, with `peer_netns`, directly inside that
    /// namespace (so a container's end never appears in the host's namespace).
    pub fn create_veth(&mut self, host: &str, peer: &str, peer_netns: Option<RawFd>) -> Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfo(0, 0, 0));
        m.str(IFLA_IFNAME, host);
        let info = m.nest(IFLA_LINKINFO);
        m.str(IFLA_INFO_KIND, "veth");
        let data = m.nest(IFLA_INFO_DATA);
        let p = m.nest(VETH_INFO_PEER);
        m.raw(&ifinfo(0, 0, 0));
        m.str(IFLA_IFNAME, peer);
        if let Some(fd) = peer_netns {
            m.u32(IFLA_NET_NS_FD, fd as u32);
        }
        m.end(p);
        m.end(data);
        m.end(info);
        self.request(m, || format!("create veth pair {host}/{peer}"))
    }

    /// Changes link `name` as `c` says, in one request.
    pub fn set_link(&mut self, name: &str, c: &LinkChange) -> Result<()> {
        let index = self.must_index(name)?;
        let (flags, change) = match c.up {
            Some(true) => (IFF_UP, IFF_UP),
            Some(false) => (0, IFF_UP),
            None => (0, 0),
        };
        let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfo(index as i32, flags, change));
        if let Some(mtu) = c.mtu {
            m.u32(IFLA_MTU, mtu);
        }
        if let Some(mac) = c.mac {
            m.attr(IFLA_ADDRESS, &mac);
        }
        if let Some(master) = c.master {
            m.u32(IFLA_MASTER, master);
        }
        if let Some(fd) = c.netns {
            m.u32(IFLA_NET_NS_FD, fd as u32);
        }
        if let Some(n) = c.rename {
            m.str(IFLA_IFNAME, n);
        }
        self.request(m, || format!("configure interface {name}"))
    }

    /// Turns on hairpin mode of bridge port `name`: the bridge may send a frame back out of the
    /// port it came in by, so a container reaches its own published port through a host
    /// address (DNAT sends the packet back to it).
    pub fn set_hairpin(&mut self, name: &str) -> Result<()> {
        let index = self.must_index(name)?;
        let mut h = ifinfo(index as i32, 0, 0);
        h[0] = libc::AF_BRIDGE as u8;
        let mut m = Msg::new(RTM_SETLINK, 0, &h);
        let at = m.nest(IFLA_PROTINFO | NLA_F_NESTED);
        m.attr(IFLA_BRPORT_MODE, &[1]);
        m.end(at);
        self.request(m, || format!("set hairpin mode on bridge port {name}"))
    }

    /// Deletes link `name`; a veth's peer goes with it. A missing link is not an error.
    pub fn delete_link(&mut self, name: &str) -> Result<()> {
        let Some(index) = self.index(name)? else { return Ok(()) };
        let m = Msg::new(RTM_DELLINK, 0, &ifinfo(index as i32, 0, 0));
        match self.exchange(m, |_, _| {}) {
            Err(e) if e.raw_os_error() != Some(libc::ENODEV) => Err(netlink_error(format!("delete interface {name}"), e)),
            _ => Ok(()),
        }
    }

    /// Adds `addr/prefix` to link `name` (with its broadcast address); already present is fine.
    pub fn add_address(&mut self, name: &str, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        let index = self.must_index(name)?;
        // struct ifaddrmsg: family, prefix length, flags, scope, index.
        let mut h = [0u8; 8];
        h[0] = AF_INET;
        h[1] = prefix;
        h[4..8].copy_from_slice(&index.to_ne_bytes());
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &h);
        m.attr(IFA_LOCAL, &addr.octets());
        m.attr(IFA_ADDRESS, &addr.octets());
        if prefix < 31 {
            let host_mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            m.attr(IFA_BROADCAST, &Ipv4Addr::from(u32::from(addr) | host_mask).octets());
        }
        match self.exchange(m, |_, _| {}) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => Err(netlink_error(format!("add address {addr}/{prefix} to {name}"), e)),
            _ => Ok(()),
        }
    }

    /// Adds the default route via `gateway` (through link `dev`).
    pub fn add_default_route(&mut self, dev: &str, gateway: Ipv4Addr) -> Result<()> {
        let index = self.must_index(dev)?;
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let h = [AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0, 0, 0, 0];
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &h);
        m.attr(RTA_GATEWAY, &gateway.octets());
        m.u32(RTA_OIF, index);
        match self.exchange(m, |_, _| {}) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => Err(netlink_error(format!("add default route via {gateway} on {dev}"), e)),
            _ => Ok(()),
        }
    }

    /// The IPv4 routes of the main table (for the subnet overlap check).
    pub fn routes(&mut self) -> Result<Vec<Route>> {
        let h = [AF_INET, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut m = Msg::new(RTM_GETROUTE, NLM_F_DUMP, &h);
        // A dump ends with NLMSG_DONE, not an acknowledgement.
        m.buf[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        let mut out = Vec::new();
        self.exchange(m, |kind, p| {
            if kind != RTM_NEWROUTE || p.len() < 12 {
                return;
            }
            let (prefix, mut table) = (p[1], u32::from(p[4]));
            let mut dst = Ipv4Addr::UNSPECIFIED;
            for (k, v) in attrs(&p[12..]) {
                match k {
                    RTA_DST if v.len() == 4 => dst = Ipv4Addr::new(v[0], v[1], v[2], v[3]),
                    RTA_TABLE if v.len() == 4 => table = u32::from_ne_bytes([v[0], v[1], v[2], v[3]]),
                    _ => {}
                }
            }
            if table == u32::from(RT_TABLE_MAIN) {
                out.push(Route { dst, prefix });
            }
        })
        .map_err(|e| netlink_error("list routes".to_string(), e))?;
        Ok(out)
    }
}

/// The attributes (type, value) of a netlink payload.
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((kind, &b[4..len]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

fn netlink_error(what: String, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EEXIST) => Error::conflict(format!("{what}: already exists")),
        Some(libc::EOPNOTSUPP) => Error::new(crate::Kind::Io, format!("{what}: not supported by this kernel")),
        _ => Error::io(what, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_carry_their_length() {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE, &ifinfo(0, 0, 0));
        let at = m.nest(IFLA_LINKINFO);
        m.str(IFLA_INFO_KIND, "veth");
        m.end(at);
        // header 16 + ifinfomsg 16, then the nest: 4 + ("veth\0" attr: 4 + 5, padded to 12).
        assert_eq!(m.buf.len(), 16 + 16 + 4 + 12);
        assert_eq!(u16::from_ne_bytes([m.buf[32], m.buf[33]]), 16);
        let parsed = attrs(&m.buf[32..]);
        assert_eq!(parsed.len(), 1);
        assert_eq!(attrs(parsed[0].1), vec![(IFLA_INFO_KIND, &b"veth\0"[..])]);
    }
}
