//! The embedded DNS responder of user networks, as Docker's 127.0.0.11 or podman's aardvark-dns:
//! it answers A, AAAA and PTR questions about a network's members (container name, aliases, short
//! ID) from the agent's live state, and forwards every other question to the host's resolvers.
//!
//! This module is pure and synchronous: [`Responder`] turns one datagram into one [`Action`] (a
//! reply, a forward, or nothing) and never blocks, so the agent's single-threaded event loop owns
//! the sockets and drives it ([`serve_blocking`] is the same loop over std sockets, for tests and
//! tools). Names are answered through the [`Lookup`] trait at the moment a question arrives, so a
//! container restarted with a new address is seen by the next question.
//!
//! Hostile input is expected (any container on the network can send anything): every packet is
//! parsed with bounded work and memory (names at most 255 bytes, compression pointers must point
//! strictly backwards, at most 8 additional records looked at), a response never grows past the
//! client's UDP size (TC set instead), the table of forwarded questions is bounded overall and per
//! source, and a token bucket per source drops a flood before it costs more than a header parse.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Where the responder listens on the network's gateway address.
pub const DNS_PORT: u16 = 53;
/// Time to live of the records we answer (Docker's embedded DNS uses 600 s).
pub const TTL: u32 = 600;
/// Questions forwarded and not answered yet, over all clients.
pub const MAX_INFLIGHT: usize = 256;
/// Of which one client may hold at most this many.
pub const MAX_INFLIGHT_PER_SOURCE: usize = 32;
/// How long an upstream resolver has to answer before the next one is asked (or SERVFAIL sent).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many upstream resolvers are used (glibc and musl read three).
pub const MAX_UPSTREAMS: usize = 3;
/// A client may send this many questions per second on average ...
pub const RATE_PER_SEC: u32 = 200;
/// ... with bursts up to this many.
pub const RATE_BURST: u32 = 400;
/// Sources the rate limiter remembers; the one idle longest is forgotten first.
const RATE_SOURCES: usize = 256;
/// A datagram larger than this is not a question anyone sends; it is dropped unread.
pub const MAX_QUERY: usize = 1232;
/// The largest UDP response we build ourselves (the DNS flag day's 1232 bytes), when the client's
/// EDNS record allows it; 512 without EDNS (RFC 1035).
const MAX_EDNS_PAYLOAD: u16 = 1232;
const PLAIN_UDP: usize = 512;
/// At most this many addresses in one answer (a name shared by many containers).
const MAX_ANSWERS: usize = 64;

const HEADER: usize = 12;
const MAX_NAME: usize = 255;
const MAX_POINTERS: usize = 64;
const MAX_ADDITIONAL: u16 = 8;

pub const TYPE_A: u16 = 1;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;

/// Response codes we send (RFC 1035 4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

/// Why a packet could not be read. Only ever counted, never shown to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The packet ends inside a field.
    Truncated,
    /// A label over 63 bytes, a name over 255, or a reserved label type.
    BadLabel,
    /// A compression pointer that does not point strictly backwards, or too many of them.
    BadPointer,
    /// A query whose question count is not 1.
    QuestionCount,
}

/// The fixed 12-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;

impl Header {
    pub fn parse(pkt: &[u8]) -> Result<Header, ParseError> {
        if pkt.len() < HEADER {
            return Err(ParseError::Truncated);
        }
        let w = |i: usize| u16::from_be_bytes([pkt[i], pkt[i + 1]]);
        Ok(Header { id: w(0), flags: w(2), qdcount: w(4), ancount: w(6), nscount: w(8), arcount: w(10) })
    }
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xF) as u8
    }
    pub fn rcode(&self) -> u8 {
        (self.flags & 0xF) as u8
    }
    pub fn truncated(&self) -> bool {
        self.flags & FLAG_TC != 0
    }
}

/// A domain name as read from a packet: lower-case, dot-separated, without the final dot (the root
/// is the empty name), in a fixed buffer: reading one never allocates.
#[derive(Clone, Copy)]
pub struct Name {
    buf: [u8; MAX_NAME],
    len: u8,
    labels: u8,
    /// Every label is made of letters, digits, `-` and `_`: only such a name can be a member's.
    plain: bool,
}

impl Name {
    fn empty() -> Name {
        Name { buf: [0; MAX_NAME], len: 0, labels: 0, plain: true }
    }

    /// The dotted text, if the name is plain (see [`Name::is_plain`]).
    pub fn as_str(&self) -> Option<&str> {
        if !self.plain {
            return None;
        }
        std::str::from_utf8(&self.buf[..self.len as usize]).ok()
    }

    /// Letters, digits, `-` and `_` only (no dots inside labels, no control bytes).
    pub fn is_plain(&self) -> bool {
        self.plain
    }

    pub fn labels(&self) -> usize {
        self.labels as usize
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.bytes() == other.bytes() && self.labels == other.labels
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Name({:?})", String::from_utf8_lossy(self.bytes()))
    }
}

/// Reads the name at `start`. Returns it and the offset just past it where it was written (past
/// the first pointer if compressed). Terminates on any input: every pointer must point before the
/// previous pointer's target (so targets strictly decrease), and at most 64 are followed.
pub fn read_name(pkt: &[u8], start: usize) -> Result<(Name, usize), ParseError> {
    let mut name = Name::empty();
    let mut pos = start;
    let mut end = None;
    let mut limit = start; // every pointer must point strictly before this
    let mut wire = 1usize; // the length of the name uncompressed, the root byte included
    let mut jumps = 0;
    loop {
        let len = *pkt.get(pos).ok_or(ParseError::Truncated)?;
        match len & 0xC0 {
            0x00 => {
                if len == 0 {
                    return Ok((name, end.unwrap_or(pos + 1)));
                }
                let l = len as usize;
                let label = pkt.get(pos + 1..pos + 1 + l).ok_or(ParseError::Truncated)?;
                wire += l + 1;
                if wire > MAX_NAME {
                    return Err(ParseError::BadLabel);
                }
                let mut at = name.len as usize;
                if name.labels > 0 {
                    name.buf[at] = b'.';
                    at += 1;
                }
                for &b in label {
                    if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                        name.plain = false;
                    }
                    name.buf[at] = b.to_ascii_lowercase();
                    at += 1;
                }
                // `wire` counts one length byte per label where the text has one dot fewer, so
                // the text always fits in the 255-byte buffer.
                name.len = at as u8;
                name.labels += 1;
                pos += 1 + l;
            }
            0xC0 => {
                let low = *pkt.get(pos + 1).ok_or(ParseError::Truncated)?;
                let target = (((len & 0x3F) as usize) << 8) | low as usize;
                if end.is_none() {
                    end = Some(pos + 2);
                }
                jumps += 1;
                if target >= limit || jumps > MAX_POINTERS {
                    return Err(ParseError::BadPointer);
                }
                limit = target;
                pos = target;
            }
            // 0x40 (extended label types, RFC 6891 deprecated them) and 0x80 (reserved).
            _ => return Err(ParseError::BadLabel),
        }
    }
}

/// The one question of a query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Question {
    pub name: Name,
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just past the question: the header and question are `pkt[..end]`.
    pub end: usize,
}

/// What we need of a query: its header, its question, and the client's EDNS UDP size if it sent
/// an OPT record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Query {
    pub header: Header,
    pub question: Question,
    pub edns_udp: Option<u16>,
}

/// Parses a query with exactly one question. Answer and authority records are not expected in a
/// query; the first few additional records are scanned for OPT.
pub fn parse_query(pkt: &[u8]) -> Result<Query, ParseError> {
    let header = Header::parse(pkt)?;
    if header.qdcount != 1 {
        return Err(ParseError::QuestionCount);
    }
    let question = read_question(pkt, HEADER)?;
    let mut edns_udp = None;
    if header.ancount == 0 && header.nscount == 0 {
        let mut pos = question.end;
        for _ in 0..header.arcount.min(MAX_ADDITIONAL) {
            let (_, after) = read_name(pkt, pos)?;
            let fixed = pkt.get(after..after + 10).ok_or(ParseError::Truncated)?;
            let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
            let class = u16::from_be_bytes([fixed[2], fixed[3]]);
            let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
            if rtype == TYPE_OPT && edns_udp.is_none() {
                edns_udp = Some(class);
            }
            pos = after + 10 + rdlen;
            if pos > pkt.len() {
                return Err(ParseError::Truncated);
            }
        }
    }
    Ok(Query { header, question, edns_udp })
}

fn read_question(pkt: &[u8], at: usize) -> Result<Question, ParseError> {
    let (name, after) = read_name(pkt, at)?;
    let f = pkt.get(after..after + 4).ok_or(ParseError::Truncated)?;
    Ok(Question { name, qtype: u16::from_be_bytes([f[0], f[1]]), qclass: u16::from_be_bytes([f[2], f[3]]), end: after + 4 })
}

/// The agent's view of a network's members, asked at the moment a question arrives.
pub trait Lookup {
    /// The addresses on `network` of the member called `name`: its container name, a
    /// `--network-alias`, or its short ID (12 hex digits). `name` is lower-case without the final
    /// dot; compare ASCII case-insensitively. Empty when nobody on the network has that name.
    fn lookup(&self, network: &str, name: &str) -> Vec<IpAddr>;
    /// The names of the member holding `addr` on `network`, as PTR answers (e.g. `web.mynet`,
    /// as Docker answers `<container>.<network>`); empty when nobody holds it.
    fn reverse(&self, network: &str, addr: IpAddr) -> Vec<String>;
}

/// A `RefCell` of a table answers through a shared borrow; while the agent holds it mutably
/// (never across an await), the question is treated as not a member's rather than panicking.
impl<T: Lookup> Lookup for std::cell::RefCell<T> {
    fn lookup(&self, network: &str, name: &str) -> Vec<IpAddr> {
        self.try_borrow().map(|t| t.lookup(network, name)).unwrap_or_default()
    }
    fn reverse(&self, network: &str, addr: IpAddr) -> Vec<String> {
        self.try_borrow().map(|t| t.reverse(network, addr)).unwrap_or_default()
    }
}

/// One container on a network, as its DNS names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The full container ID (64 hex digits); its first 12 are a name too.
    pub id: String,
    /// The container's name, without Docker's leading `/`.
    pub name: String,
    /// `--network-alias` on this network (several containers may share one).
    pub aliases: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// The members of one network: the table the agent keeps up to date as containers connect,
/// restart and leave, and the responder reads on every question.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    members: Vec<Member>,
}

impl Members {
    pub fn new() -> Members {
        Members::default()
    }

    /// Adds a container or replaces its entry (a restart with a new address).
    pub fn set(&mut self, m: Member) {
        match self.members.iter_mut().find(|x| x.id == m.id) {
            Some(x) => *x = m,
            None => self.members.push(m),
        }
    }

    /// The container left the network (or stopped).
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.members.len();
        self.members.retain(|m| m.id != id);
        self.members.len() != before
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl Lookup for Members {
    /// By container name, alias or short ID (exactly 12 hex digits, as Docker), any case; every
    /// member holding the name contributes its addresses (a shared alias).
    fn lookup(&self, _network: &str, name: &str) -> Vec<IpAddr> {
        let short_id = name.len() == 12 && name.bytes().all(|b| b.is_ascii_hexdigit());
        let mut out = Vec::new();
        for m in &self.members {
            let hit = m.name.eq_ignore_ascii_case(name)
                || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
                || (short_id && m.id.get(..12).is_some_and(|p| p.eq_ignore_ascii_case(name)));
            if !hit {
                continue;
            }
            for ip in &m.ips {
                if !out.contains(ip) {
                    out.push(*ip);
                }
            }
        }
        out
    }

    /// `<container name>.<network>`, as Docker answers.
    fn reverse(&self, network: &str, addr: IpAddr) -> Vec<String> {
        self.members.iter().filter(|m| m.ips.contains(&addr)).map(|m| format!("{}.{network}", m.name)).collect()
    }
}

/// What to do with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to send.
    Drop,
    /// Send `packet` to the client `to` from the listening socket.
    Reply { to: SocketAddr, packet: Vec<u8> },
    /// Send `packet` to the upstream resolver `to` from the forwarding socket.
    Forward { to: SocketAddr, packet: Vec<u8> },
}

/// What to do with a question that came over TCP (RFC 7766: clients retry there after a
/// truncated answer). There is no forwarding table: the driver sends the question unchanged over
/// TCP to the resolvers in turn and passes the first answer back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpAction {
    /// Nothing to send; close the connection.
    Drop,
    /// Write this answer back (without the length prefix).
    Reply(Vec<u8>),
    /// Ask these resolvers, in order.
    Forward(Vec<SocketAddr>),
}

/// The largest DNS message over TCP (its length prefix is 16 bits).
pub const MAX_TCP_MESSAGE: usize = 65535;

/// Counters, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub answered: u64,
    pub forwarded: u64,
    pub upstream_answers: u64,
    pub servfail: u64,
    pub malformed: u64,
    pub rate_limited: u64,
    pub table_full: u64,
    pub timeouts: u64,
    /// Upstream datagrams that matched nothing pending (late, spoofed, or from elsewhere).
    pub stray: u64,
}

/// A forwarded question waiting for its answer.
#[derive(Debug)]
struct Pending {
    client: SocketAddr,
    client_id: u16,
    /// The client's query with our id in it, resent as is to the next upstream.
    packet: Vec<u8>,
    question: Question,
    /// Largest response the client takes over UDP.
    limit: usize,
    /// The resolvers for this question (the network's, or the client's `--dns`), and which one
    /// was asked last.
    upstreams: Vec<SocketAddr>,
    upstream: usize,
    deadline: Instant,
}

/// A token bucket per source address.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The responder of one network: its name, the names it answers under, and the forwarding state.
#[derive(Debug)]
pub struct Responder {
    network: String,
    /// Suffixes also answered locally: `web.<domain>` is looked up as `web` (the network's name by
    /// default, as Docker resolves `web.mynet`).
    domains: Vec<String>,
    upstreams: Vec<SocketAddr>,
    /// Containers started with `--dns`: their questions go to those resolvers instead.
    client_upstreams: HashMap<IpAddr, Vec<SocketAddr>>,
    pending: HashMap<u16, Pending>,
    buckets: HashMap<IpAddr, Bucket>,
    rng: u64,
    stats: Stats,
}

impl Responder {
    /// A responder for `network` that forwards to `upstreams` (at most [`MAX_UPSTREAMS`] are
    /// used; none means every question it cannot answer itself gets SERVFAIL, as Docker does).
    pub fn new(network: &str, upstreams: Vec<SocketAddr>) -> Responder {
        let mut upstreams = upstreams;
        upstreams.truncate(MAX_UPSTREAMS);
        // Forwarded ids must not be guessable by a container spoofing answers: seed from the
        // OS-randomised hasher keys.
        let mut h = RandomState::new().build_hasher();
        h.write_usize(std::process::id() as usize);
        let seed = h.finish() | 1;
        Responder {
            network: network.to_string(),
            domains: vec![network.to_ascii_lowercase()],
            upstreams,
            client_upstreams: HashMap::new(),
            pending: HashMap::new(),
            buckets: HashMap::new(),
            rng: seed,
            stats: Stats::default(),
        }
    }

    /// Adds a suffix under which members are also answered (e.g. a `--dns-search` domain).
    pub fn add_domain(&mut self, domain: &str) {
        let d = domain.trim_matches('.').to_ascii_lowercase();
        if !d.is_empty() && !self.domains.contains(&d) {
            self.domains.push(d);
        }
    }

    /// Replaces the upstream resolvers (the host's resolv.conf changed). Pending questions keep
    /// the resolver they were sent to.
    pub fn set_upstreams(&mut self, mut upstreams: Vec<SocketAddr>) {
        upstreams.truncate(MAX_UPSTREAMS);
        self.upstreams = upstreams;
    }

    /// The container at `client` was started with `--dns`: forward its questions there. Loopback
    /// addresses are left out (in Docker they mean the container's own loopback, which the
    /// responder cannot reach); nothing left means the network's resolvers.
    pub fn set_client_upstreams(&mut self, client: IpAddr, upstreams: &[SocketAddr]) {
        let mut list: Vec<SocketAddr> = upstreams.iter().filter(|u| !u.ip().is_loopback()).copied().collect();
        list.truncate(MAX_UPSTREAMS);
        if list.is_empty() {
            self.client_upstreams.remove(&client);
        } else {
            self.client_upstreams.insert(client, list);
        }
    }

    /// The container at `client` left the network.
    pub fn forget_client(&mut self, client: IpAddr) {
        self.client_upstreams.remove(&client);
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Questions forwarded and not yet answered.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// When [`Responder::expire`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// A datagram from a client on the network.
    pub fn handle_query(&mut self, pkt: &[u8], from: SocketAddr, now: Instant, lookup: &dyn Lookup) -> Action {
        let Ok(header) = Header::parse(pkt) else {
            self.stats.malformed += 1;
            return Action::Drop;
        };
        // Never answer a response: two responders must not ping-pong.
        if header.is_response() || pkt.len() > MAX_QUERY {
            self.stats.malformed += 1;
            return Action::Drop;
        }
        if !self.allow(from.ip(), now) {
            self.stats.rate_limited += 1;
            return Action::Drop;
        }
        if header.opcode() != 0 {
            return self.reply(from, header_only(&header, Rcode::NotImp));
        }
        let query = match parse_query(pkt) {
            Ok(q) => q,
            Err(_) => {
                self.stats.malformed += 1;
                return self.reply(from, header_only(&header, Rcode::FormErr));
            }
        };
        let limit = udp_limit(query.edns_udp);
        match self.answer_locally(pkt, &query, limit, lookup) {
            Some(resp) => {
                self.stats.answered += 1;
                Action::Reply { to: from, packet: resp }
            }
            None => self.forward(pkt, &query, from, limit, now),
        }
    }

    /// A question read from a TCP connection (without its length prefix).
    pub fn handle_tcp_query(&mut self, pkt: &[u8], from: SocketAddr, now: Instant, lookup: &dyn Lookup) -> TcpAction {
        let Ok(header) = Header::parse(pkt) else {
            self.stats.malformed += 1;
            return TcpAction::Drop;
        };
        if header.is_response() {
            self.stats.malformed += 1;
            return TcpAction::Drop;
        }
        if !self.allow(from.ip(), now) {
            self.stats.rate_limited += 1;
            return TcpAction::Drop;
        }
        if header.opcode() != 0 {
            return TcpAction::Reply(header_only(&header, Rcode::NotImp));
        }
        let Ok(query) = parse_query(pkt) else {
            self.stats.malformed += 1;
            return TcpAction::Reply(header_only(&header, Rcode::FormErr));
        };
        if let Some(resp) = self.answer_locally(pkt, &query, MAX_TCP_MESSAGE, lookup) {
            self.stats.answered += 1;
            return TcpAction::Reply(resp);
        }
        let upstreams = self.client_upstreams.get(&from.ip()).unwrap_or(&self.upstreams);
        if upstreams.is_empty() {
            self.stats.servfail += 1;
            return TcpAction::Reply(error_response(pkt, &query, Rcode::ServFail));
        }
        self.stats.forwarded += 1;
        TcpAction::Forward(upstreams.clone())
    }

    /// The SERVFAIL for a TCP question no resolver answered.
    pub fn tcp_servfail(&mut self, pkt: &[u8]) -> Option<Vec<u8>> {
        let q = parse_query(pkt).ok()?;
        self.stats.servfail += 1;
        Some(error_response(pkt, &q, Rcode::ServFail))
    }

    fn reply(&mut self, to: SocketAddr, packet: Vec<u8>) -> Action {
        Action::Reply { to, packet }
    }

    fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&src) && self.buckets.len() >= RATE_SOURCES {
            // Forget the source heard from least recently: a flood from many addresses costs at
            // most this scan, once per new address.
            if let Some(old) = self.buckets.iter().min_by_key(|(_, b)| b.last).map(|(a, _)| *a) {
                self.buckets.remove(&old);
            }
        }
        let b = self.buckets.entry(src).or_insert(Bucket { tokens: RATE_BURST as f64, last: now });
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + dt * RATE_PER_SEC as f64).min(RATE_BURST as f64);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The answer when the question is about a member (or the name is one but has no record of
    /// that type: NOERROR with no answer); `None` to forward.
    fn answer_locally(&self, pkt: &[u8], q: &Query, limit: usize, lookup: &dyn Lookup) -> Option<Vec<u8>> {
        let qs = &q.question;
        if qs.qclass != CLASS_IN && qs.qclass != CLASS_ANY {
            return None;
        }
        if qs.qtype == TYPE_PTR {
            let addr = reverse_addr(&qs.name)?;
            let names = lookup.reverse(&self.network, addr);
            if names.is_empty() {
                return None;
            }
            let mut r = Response::new(pkt, q, limit, Rcode::NoError);
            for n in names.iter().take(MAX_ANSWERS) {
                let Some(wire) = encode_name(n) else { continue };
                if !r.answer(TYPE_PTR, &wire) {
                    break;
                }
            }
            return Some(r.finish());
        }
        let addrs = self.members(&qs.name, lookup)?;
        let mut r = Response::new(pkt, q, limit, Rcode::NoError);
        let mut n = 0;
        for a in addrs {
            let ok = match (qs.qtype, a) {
                (TYPE_A, IpAddr::V4(v4)) => r.answer(TYPE_A, &v4.octets()),
                (TYPE_AAAA, IpAddr::V6(v6)) => r.answer(TYPE_AAAA, &v6.octets()),
                // A member has no other records (MX, TXT, HTTPS ...): the name exists, so NOERROR
                // with no answer, rather than an upstream's NXDOMAIN for a name it never knew.
                _ => continue,
            };
            n += 1;
            if !ok || n >= MAX_ANSWERS {
                break;
            }
        }
        Some(r.finish())
    }

    /// The member's addresses if the name (or the name without one of our domains) is a member's.
    fn members(&self, name: &Name, lookup: &dyn Lookup) -> Option<Vec<IpAddr>> {
        let text = name.as_str()?;
        if text.is_empty() {
            return None;
        }
        let found = lookup.lookup(&self.network, text);
        if !found.is_empty() {
            return Some(found);
        }
        for d in &self.domains {
            if let Some(short) = text.strip_suffix(d.as_str()).and_then(|s| s.strip_suffix('.')) {
                if short.is_empty() {
                    continue;
                }
                let found = lookup.lookup(&self.network, short);
                if !found.is_empty() {
                    return Some(found);
                }
            }
        }
        None
    }

    fn forward(&mut self, pkt: &[u8], q: &Query, from: SocketAddr, limit: usize, now: Instant) -> Action {
        let upstreams = self.client_upstreams.get(&from.ip()).unwrap_or(&self.upstreams);
        if upstreams.is_empty() {
            self.stats.servfail += 1;
            return Action::Reply { to: from, packet: error_response(pkt, q, Rcode::ServFail) };
        }
        // A client resending a question still pending (its own retry): the first one's answer
        // will do.
        let mut mine = 0;
        for p in self.pending.values() {
            if p.client == from {
                if p.client_id == q.header.id {
                    return Action::Drop;
                }
                mine += 1;
            }
        }
        if mine >= MAX_INFLIGHT_PER_SOURCE || self.pending.len() >= MAX_INFLIGHT {
            self.stats.table_full += 1;
            return Action::Drop;
        }
        let upstreams = upstreams.clone();
        let id = self.fresh_id();
        let mut packet = pkt.to_vec();
        packet[..2].copy_from_slice(&id.to_be_bytes());
        let to = upstreams[0];
        self.pending.insert(
            id,
            Pending {
                client: from,
                client_id: q.header.id,
                packet: packet.clone(),
                question: q.question,
                limit,
                upstreams,
                upstream: 0,
                deadline: now + UPSTREAM_TIMEOUT,
            },
        );
        self.stats.forwarded += 1;
        Action::Forward { to, packet }
    }

    fn fresh_id(&mut self) -> u16 {
        loop {
            // xorshift64*: cheap, and unpredictable enough with a random seed for 16-bit ids.
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let id = (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 48) as u16;
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// A datagram on the forwarding socket: an upstream's answer goes back to its client with the
    /// client's id; anything that does not match a pending question exactly (source, id,
    /// question) is dropped.
    pub fn handle_upstream(&mut self, pkt: &[u8], from: SocketAddr, now: Instant) -> Action {
        let Ok(h) = Header::parse(pkt) else {
            self.stats.stray += 1;
            return Action::Drop;
        };
        let matches = self.pending.get(&h.id).is_some_and(|p| {
            p.upstreams.get(p.upstream) == Some(&from)
                && h.is_response()
                && h.qdcount == 1
                && read_question(pkt, HEADER)
                    .is_ok_and(|q| q.name == p.question.name && q.qtype == p.question.qtype && q.qclass == p.question.qclass)
        });
        if !matches {
            self.stats.stray += 1;
            return Action::Drop;
        }
        let Some(p) = self.pending.remove(&h.id) else { return Action::Drop };
        // SERVFAIL or REFUSED from one resolver: ask the next, as the C libraries do.
        let rcode = h.rcode();
        if (rcode == Rcode::ServFail as u8 || rcode == Rcode::Refused as u8) && p.upstream + 1 < p.upstreams.len() {
            return self.resend(p, now);
        }
        self.stats.upstream_answers += 1;
        let mut packet = if pkt.len() > p.limit {
            // Larger than the client takes over UDP: the header and question, with TC set, so it
            // asks again over TCP.
            let end = read_question(pkt, HEADER).map(|q| q.end).unwrap_or(HEADER);
            let mut t = pkt[..end].to_vec();
            t[2] |= (FLAG_TC >> 8) as u8;
            t[6..12].fill(0);
            t
        } else {
            pkt.to_vec()
        };
        packet[..2].copy_from_slice(&p.client_id.to_be_bytes());
        Action::Reply { to: p.client, packet }
    }

    fn resend(&mut self, mut p: Pending, now: Instant) -> Action {
        p.upstream += 1;
        p.deadline = now + UPSTREAM_TIMEOUT;
        let id = self.fresh_id();
        p.packet[..2].copy_from_slice(&id.to_be_bytes());
        let to = p.upstreams[p.upstream];
        let packet = p.packet.clone();
        self.pending.insert(id, p);
        self.stats.forwarded += 1;
        Action::Forward { to, packet }
    }

    /// Questions whose upstream did not answer in time: each goes to the next resolver, or back to
    /// its client as SERVFAIL when none is left.
    pub fn expire(&mut self, now: Instant) -> Vec<Action> {
        let late: Vec<u16> = self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| *id).collect();
        let mut out = Vec::with_capacity(late.len());
        for id in late {
            let Some(p) = self.pending.remove(&id) else { continue };
            self.stats.timeouts += 1;
            if p.upstream + 1 < p.upstreams.len() {
                out.push(self.resend(p, now));
            } else {
                self.stats.servfail += 1;
                let header = Header { id: p.client_id, ..header_of(&p.packet) };
                let q = Query { header, question: p.question, edns_udp: None };
                out.push(Action::Reply { to: p.client, packet: error_response(&p.packet, &q, Rcode::ServFail) });
            }
        }
        out
    }
}

fn header_of(pkt: &[u8]) -> Header {
    Header::parse(pkt).unwrap_or(Header { id: 0, flags: 0, qdcount: 0, ancount: 0, nscount: 0, arcount: 0 })
}

/// The largest UDP response the client takes: 512 without EDNS, its advertised size (capped at
/// ours, never below 512) with it.
fn udp_limit(edns: Option<u16>) -> usize {
    match edns {
        None => PLAIN_UDP,
        Some(n) => (n.min(MAX_EDNS_PAYLOAD) as usize).max(PLAIN_UDP),
    }
}

/// Response flags: QR, the query's opcode and RD, RA (we recurse through the forwarder).
fn response_flags(h: &Header, rcode: Rcode, authoritative: bool) -> u16 {
    let mut f = FLAG_QR | (h.flags & 0x7800) | (h.flags & FLAG_RD) | FLAG_RA | rcode as u16;
    if authoritative {
        f |= FLAG_AA;
    }
    f
}

/// A header with no sections, for queries we cannot read a question from.
fn header_only(h: &Header, rcode: Rcode) -> Vec<u8> {
    let mut v = vec![0u8; HEADER];
    v[..2].copy_from_slice(&h.id.to_be_bytes());
    v[2..4].copy_from_slice(&response_flags(h, rcode, false).to_be_bytes());
    v
}

/// The header and question of the query with an error code.
fn error_response(pkt: &[u8], q: &Query, rcode: Rcode) -> Vec<u8> {
    let mut v = Vec::with_capacity(q.question.end);
    v.extend_from_slice(&q.header.id.to_be_bytes());
    v.extend_from_slice(&response_flags(&q.header, rcode, false).to_be_bytes());
    v.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&pkt[HEADER..q.question.end]);
    v
}

/// A response being built: header, the question as the client wrote it (case kept), answers
/// whose owner is a pointer to that question, and an OPT record if the client sent one.
struct Response {
    buf: Vec<u8>,
    limit: usize,
    edns: bool,
    answers: u16,
}

impl Response {
    fn new(pkt: &[u8], q: &Query, limit: usize, rcode: Rcode) -> Response {
        let mut buf = Vec::with_capacity(limit.min(PLAIN_UDP));
        buf.extend_from_slice(&q.header.id.to_be_bytes());
        buf.extend_from_slice(&response_flags(&q.header, rcode, true).to_be_bytes());
        buf.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(&pkt[HEADER..q.question.end]);
        Response { buf, limit, edns: q.edns_udp.is_some(), answers: 0 }
    }

    /// Appends an answer; false (and TC set) when it does not fit.
    fn answer(&mut self, rtype: u16, rdata: &[u8]) -> bool {
        let opt = if self.edns { 11 } else { 0 };
        let size = 2 + 10 + rdata.len();
        if self.buf.len() + size + opt > self.limit {
            self.buf[2] |= (FLAG_TC >> 8) as u8;
            return false;
        }
        self.buf.extend_from_slice(&[0xC0, HEADER as u8]);
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.buf.extend_from_slice(&TTL.to_be_bytes());
        self.buf.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(rdata);
        self.answers += 1;
        true
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf[6..8].copy_from_slice(&self.answers.to_be_bytes());
        if self.edns {
            // OPT: root owner, our UDP size as class, extended rcode/version/flags 0, no options.
            self.buf.extend_from_slice(&[0, 0, 41]);
            self.buf.extend_from_slice(&MAX_EDNS_PAYLOAD.to_be_bytes());
            self.buf.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            self.buf[10..12].copy_from_slice(&1u16.to_be_bytes());
        }
        self.buf
    }
}

/// `web.mynet` (with or without the final dot) in wire form; `None` if a label is empty or
/// longer than 63 bytes, or the name longer than 255.
pub fn encode_name(name: &str) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut out = Vec::with_capacity(name.len() + 2);
    if !name.is_empty() {
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    (out.len() <= MAX_NAME).then_some(out)
}

/// The address a PTR question is about: `4.3.2.1.in-addr.arpa` or 32 nibbles `.ip6.arpa`.
pub fn reverse_addr(name: &Name) -> Option<IpAddr> {
    let text = name.as_str()?;
    if let Some(rest) = text.strip_suffix(".in-addr.arpa") {
        let mut o = [0u8; 4];
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            o[3 - i] = p.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(o)));
    }
    if let Some(rest) = text.strip_suffix(".ip6.arpa") {
        let nibbles: Vec<&str> = rest.split('.').collect();
        if nibbles.len() != 32 {
            return None;
        }
        let mut v = 0u128;
        for n in nibbles.iter().rev() {
            if n.len() != 1 {
                return None;
            }
            v = (v << 4) | u128::from(u8::from_str_radix(n, 16).ok()?);
        }
        return Some(IpAddr::V6(Ipv6Addr::from(v)));
    }
    None
}

/// The resolvers of a resolv.conf, port 53, in order, at most [`MAX_UPSTREAMS`]. Loopback
/// resolvers (127.0.0.53 of systemd-resolved, a local dnsmasq) are kept only with
/// `keep_loopback`: the responder lives in the agent's network namespace, where the host's
/// loopback resolvers answer, as Docker's resolver reaches them from the host's namespace; a
/// resolv.conf written into a container drops them (see `files`).
pub fn upstreams_from_resolv_conf(text: &str, keep_loopback: bool) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        if w.next() != Some("nameserver") {
            continue;
        }
        // `fe80::1%eth0`: a zone is not kept; a scoped address is useless from another namespace.
        let Some(ip) = w.next().and_then(|a| a.split('%').next()).and_then(|a| a.parse::<IpAddr>().ok()) else { continue };
        if ip.is_loopback() && !keep_loopback {
            continue;
        }
        if ip.is_unspecified() {
            continue;
        }
        let sa = SocketAddr::new(ip, DNS_PORT);
        if !out.contains(&sa) {
            out.push(sa);
        }
        if out.len() == MAX_UPSTREAMS {
            break;
        }
    }
    out
}

/// One network's responder over blocking std sockets: `listen` (the gateway address, port 53)
/// takes questions, `upstream` (any address, in the same namespace) forwards them. Runs until
/// `stop` returns true, checked at least every 200 ms. The agent runs the same loop on its own
/// event loop; this one serves tests and tools.
pub fn serve_blocking(
    listen: &UdpSocket,
    upstream: &UdpSocket,
    responder: &mut Responder,
    lookup: &dyn Lookup,
    stop: &dyn Fn() -> bool,
) -> std::io::Result<()> {
    let tick = Duration::from_millis(200);
    listen.set_read_timeout(Some(Duration::from_millis(20)))?;
    upstream.set_nonblocking(true)?;
    let mut buf = vec![0u8; 65536];
    let mut last_expire = Instant::now();
    while !stop() {
        let now = Instant::now();
        match listen.recv_from(&mut buf) {
            Ok((n, from)) => {
                let action = responder.handle_query(&buf[..n], from, now, lookup);
                send(listen, upstream, action);
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // ICMP errors from a previous send surface here (ECONNREFUSED): not fatal.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
        loop {
            match upstream.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let action = responder.handle_upstream(&buf[..n], from, Instant::now());
                    send(listen, upstream, action);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        if now.duration_since(last_expire) >= tick || responder.next_deadline().is_some_and(|d| d <= now) {
            last_expire = now;
            for a in responder.expire(now) {
                send(listen, upstream, a);
            }
        }
    }
    Ok(())
}

fn send(listen: &UdpSocket, upstream: &UdpSocket, action: Action) {
    // A send that fails (a client gone, a full buffer) affects that one answer only.
    let _ = match action {
        Action::Drop => return,
        Action::Reply { to, packet } => listen.send_to(&packet, to),
        Action::Forward { to, packet } => upstream.send_to(&packet, to),
    };
}

#[cfg(test)]
mod tests;
