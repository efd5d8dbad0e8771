use super::*;

use std::collections::BTreeMap;

/// A network as the agent would see it: members with names, aliases and short IDs.
#[derive(Default)]
struct Table {
    /// (network, lower-case name) → addresses.
    names: BTreeMap<(String, String), Vec<IpAddr>>,
    ptr: BTreeMap<(String, IpAddr), Vec<String>>,
}

impl Table {
    fn add(&mut self, net: &str, names: &[&str], ip: &str) {
        let ip: IpAddr = ip.parse().expect("test address");
        for n in names {
            self.names.entry((net.into(), n.to_ascii_lowercase())).or_default().push(ip);
        }
        self.ptr.entry((net.into(), ip)).or_default().push(format!("{}.{net}", names[0]));
    }
}

impl Lookup for Table {
    fn lookup(&self, network: &str, name: &str) -> Vec<IpAddr> {
        assert_eq!(name, name.to_ascii_lowercase(), "names reach the lookup lower-cased");
        assert!(!name.ends_with('.'), "names reach the lookup without the final dot");
        self.names.get(&(network.to_string(), name.to_string())).cloned().unwrap_or_default()
    }
    fn reverse(&self, network: &str, addr: IpAddr) -> Vec<String> {
        self.ptr.get(&(network.to_string(), addr)).cloned().unwrap_or_default()
    }
}

fn table() -> Table {
    let mut t = Table::default();
    t.add("n1", &["peer", "pal", "f3424439bf09"], "172.18.0.2");
    t.add("n1", &["web"], "172.18.0.3");
    t.add("n1", &["web"], "fd00::3");
    t.add("n2", &["other"], "172.19.0.2");
    t
}

fn client() -> SocketAddr {
    "172.18.0.5:40000".parse().expect("addr")
}

fn upstream(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)), 53)
}

fn t0() -> Instant {
    Instant::now()
}

/// A query written out by hand, as RFC 1035 4.1 lays it out: id 0x1234, RD, one question
/// `PEER` (upper case, as a client may send it), type A, class IN.
const QUERY_PEER_A: &[u8] = &[
    0x12, 0x34, // id
    0x01, 0x00, // flags: RD
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // qd=1 an=0 ns=0 ar=0
    0x04, b'P', b'E', b'E', b'R', 0x00, // PEER.
    0x00, 0x01, 0x00, 0x01, // A, IN
];

/// The expected answer, also by hand: QR AA RD RA, the question as sent, one A record whose owner
/// is a pointer to offset 12, TTL 600, 172.18.0.2.
const ANSWER_PEER_A: &[u8] = &[
    0x12, 0x34, //
    0x85, 0x80, // QR, opcode 0, AA, RD, RA, rcode 0
    0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, //
    0x04, b'P', b'E', b'E', b'R', 0x00, 0x00, 0x01, 0x00, 0x01, //
    0xC0, 0x0C, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x58, 0x00, 0x04, 172, 18, 0, 2,
];

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&encode_name(name).expect("test name"));
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&[0, 1]);
    v
}

fn with_edns(mut q: Vec<u8>, size: u16) -> Vec<u8> {
    q[11] = 1;
    q.extend_from_slice(&[0, 0, 41]);
    q.extend_from_slice(&size.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    q
}

fn reply_of(a: Action) -> Vec<u8> {
    match a {
        Action::Reply { to, packet } => {
            assert_eq!(to, client());
            packet
        }
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// (rcode, flags, answers as (type, rdata)) read back with a parser independent of the builder.
fn decode(resp: &[u8]) -> (u8, u16, Vec<(u16, Vec<u8>)>) {
    let h = Header::parse(resp).expect("header");
    let q = read_question(resp, HEADER).expect("question");
    let mut pos = q.end;
    let mut out = Vec::new();
    for _ in 0..h.ancount {
        let (_, after) = read_name(resp, pos).expect("answer owner");
        let t = u16::from_be_bytes([resp[after], resp[after + 1]]);
        let len = u16::from_be_bytes([resp[after + 8], resp[after + 9]]) as usize;
        out.push((t, resp[after + 10..after + 10 + len].to_vec()));
        pos = after + 10 + len;
    }
    let mut more = 0;
    for _ in 0..h.arcount {
        let (_, after) = read_name(resp, pos).expect("additional owner");
        let len = u16::from_be_bytes([resp[after + 8], resp[after + 9]]) as usize;
        pos = after + 10 + len;
        more += 1;
    }
    assert_eq!(pos, resp.len(), "no trailing bytes ({more} additional)");
    (h.rcode(), h.flags, out)
}

#[test]
fn answers_a_hand_written_query_byte_for_byte() {
    let mut r = Responder::new("n1", vec![]);
    let resp = reply_of(r.handle_query(QUERY_PEER_A, client(), t0(), &table()));
    assert_eq!(resp, ANSWER_PEER_A);
    assert_eq!(r.stats().answered, 1);
}

#[test]
fn rfc1035_compression_example() {
    // RFC 1035 4.1.4: F.ISI.ARPA at 20, FOO.F.ISI.ARPA at 40 (FOO then a pointer to 20), ARPA at
    // 64 (a pointer to 26), the root at 92.
    let mut pkt = vec![0u8; 100];
    pkt[20..32].copy_from_slice(&[1, b'F', 3, b'I', b'S', b'I', 4, b'A', b'R', b'P', b'A', 0]);
    pkt[40..46].copy_from_slice(&[3, b'F', b'O', b'O', 0xC0, 20]);
    pkt[64..66].copy_from_slice(&[0xC0, 26]);
    pkt[92] = 0;
    let (n, end) = read_name(&pkt, 20).expect("F.ISI.ARPA");
    assert_eq!((n.as_str(), end), (Some("f.isi.arpa"), 32));
    let (n, end) = read_name(&pkt, 40).expect("FOO.F.ISI.ARPA");
    assert_eq!((n.as_str(), end, n.labels()), (Some("foo.f.isi.arpa"), 46, 4));
    let (n, end) = read_name(&pkt, 64).expect("ARPA");
    assert_eq!((n.as_str(), end), (Some("arpa"), 66));
    let (n, end) = read_name(&pkt, 92).expect("root");
    assert_eq!((n.as_str(), end, n.labels()), (Some(""), 93, 0));
}

#[test]
fn pointer_loops_and_forward_pointers_are_refused() {
    let mut pkt = vec![0u8; 40];
    // A pointer to itself.
    pkt[12..14].copy_from_slice(&[0xC0, 12]);
    assert_eq!(read_name(&pkt, 12).err(), Some(ParseError::BadPointer));
    // A pointer forwards.
    pkt[12..14].copy_from_slice(&[0xC0, 20]);
    assert_eq!(read_name(&pkt, 12).err(), Some(ParseError::BadPointer));
    // Two names pointing at each other: 20 → 12, 12 reads a label then points at 20 again.
    pkt[12..17].copy_from_slice(&[1, b'a', 0xC0, 20, 0]);
    pkt[20..22].copy_from_slice(&[0xC0, 12]);
    assert_eq!(read_name(&pkt, 20).err(), Some(ParseError::BadPointer));
    // A backwards chain that turns around: 30 → 20 → (label) → a pointer at 22 back to 21 → ...
    pkt[20..24].copy_from_slice(&[1, b'b', 0xC0, 21]);
    pkt[30..32].copy_from_slice(&[0xC0, 20]);
    assert!(read_name(&pkt, 30).is_err());
    // A pointer cut in half.
    assert_eq!(read_name(&[0xC0], 0).err(), Some(ParseError::Truncated));
}

#[test]
fn labels_and_names_over_the_limits_are_refused() {
    // 0x40 and 0x80 are not lengths (extended and reserved label types).
    let mut pkt = vec![64u8];
    pkt.extend_from_slice(&[b'a'; 64]);
    pkt.push(0);
    assert_eq!(read_name(&pkt, 0).err(), Some(ParseError::BadLabel));
    assert_eq!(read_name(&[0x80, 0], 0).err(), Some(ParseError::BadLabel));
    // 63 is the longest label.
    let mut pkt = vec![63u8];
    pkt.extend_from_slice(&[b'a'; 63]);
    pkt.push(0);
    assert!(read_name(&pkt, 0).is_ok());
    // Four labels of 63: 257 bytes on the wire, over 255.
    let mut long = Vec::new();
    for _ in 0..4 {
        long.push(63u8);
        long.extend_from_slice(&[b'x'; 63]);
    }
    long.push(0);
    assert_eq!(read_name(&long, 0).err(), Some(ParseError::BadLabel));
    // The same over pointers: each pointer adds a label to one name that grows past 255.
    let mut p = Vec::new();
    p.extend_from_slice(&[63]);
    p.extend_from_slice(&[b'y'; 63]);
    p.push(0); // 0: y*63.
    let mut prev = 0usize;
    for _ in 0..5 {
        let at = p.len();
        p.push(63);
        p.extend_from_slice(&[b'z'; 63]);
        p.extend_from_slice(&[0xC0 | (prev >> 8) as u8, prev as u8]);
        prev = at;
    }
    assert_eq!(read_name(&p, prev).err(), Some(ParseError::BadLabel));
    // Exactly 255 on the wire is fine: 3 labels of 63, one of 61.
    let mut ok = Vec::new();
    for l in [63u8, 63, 63, 61] {
        ok.push(l);
        ok.extend(std::iter::repeat_n(b'q', l as usize));
    }
    ok.push(0);
    assert_eq!(ok.len(), 255);
    assert_eq!(read_name(&ok, 0).map(|(n, _)| n.as_str().map(str::len)), Ok(Some(253)));
}

#[test]
fn every_truncation_of_a_query_is_refused_cleanly() {
    let mut r = Responder::new("n1", vec![]);
    for n in 0..QUERY_PEER_A.len() {
        let pkt = &QUERY_PEER_A[..n];
        assert!(parse_query(pkt).is_err(), "{n} bytes parse");
        match r.handle_query(pkt, client(), t0(), &table()) {
            Action::Drop => assert!(n < HEADER, "{n} bytes: a header is there, FORMERR expected"),
            Action::Reply { packet, .. } => {
                assert!(n >= HEADER);
                let h = Header::parse(&packet).expect("header");
                assert_eq!((h.rcode(), h.qdcount, h.ancount), (Rcode::FormErr as u8, 0, 0), "{n} bytes");
                assert_eq!(h.id, 0x1234);
            }
            a => panic!("{n} bytes: {a:?}"),
        }
    }
}

#[test]
fn names_case_search_domain_short_id_and_alias() {
    let t = table();
    let mut r = Responder::new("n1", vec![]);
    r.add_domain("example.com.");
    for (name, want) in [
        ("peer", "172.18.0.2"),
        ("PEER.", "172.18.0.2"),
        ("Pal", "172.18.0.2"),
        ("peer.n1", "172.18.0.2"),
        ("peer.N1.", "172.18.0.2"),
        ("f3424439BF09", "172.18.0.2"),
        ("peer.example.com", "172.18.0.2"),
        ("web", "172.18.0.3"),
    ] {
        let (rcode, flags, answers) = decode(&reply_of(r.handle_query(&query(7, name, TYPE_A), client(), t0(), &t)));
        assert_eq!(rcode, 0, "{name}");
        assert_ne!(flags & FLAG_AA, 0, "{name}: authoritative");
        let ip: Ipv4Addr = want.parse().expect("ip");
        assert_eq!(answers, vec![(TYPE_A, ip.octets().to_vec())], "{name}");
    }
    // Another network's member is not seen from n1, and without upstreams that is SERVFAIL.
    let (rcode, _, answers) = decode(&reply_of(r.handle_query(&query(8, "other", TYPE_A), client(), t0(), &t)));
    assert_eq!((rcode, answers.len()), (Rcode::ServFail as u8, 0));
    // The domain alone is not a member.
    let (rcode, _, _) = decode(&reply_of(r.handle_query(&query(9, "n1", TYPE_A), client(), t0(), &t)));
    assert_eq!(rcode, Rcode::ServFail as u8);
}

#[test]
fn aaaa_and_other_types_of_a_member() {
    let t = table();
    let mut r = Responder::new("n1", vec![upstream(1)]);
    // An IPv4-only member: NOERROR with no answer (not forwarded, not NXDOMAIN).
    let (rcode, flags, answers) = decode(&reply_of(r.handle_query(&query(1, "peer", TYPE_AAAA), client(), t0(), &t)));
    assert_eq!((rcode, answers.len()), (0, 0));
    assert_ne!(flags & FLAG_AA, 0);
    let (_, _, answers) = decode(&reply_of(r.handle_query(&query(2, "web", TYPE_AAAA), client(), t0(), &t)));
    let v6: Ipv6Addr = "fd00::3".parse().expect("v6");
    assert_eq!(answers, vec![(TYPE_AAAA, v6.octets().to_vec())]);
    // MX, TXT, HTTPS of a member: the name exists, no such record.
    for qtype in [15u16, 16, 65, 255] {
        let (rcode, _, answers) = decode(&reply_of(r.handle_query(&query(3, "peer", qtype), client(), t0(), &t)));
        assert_eq!((rcode, answers.len()), (0, 0), "type {qtype}");
    }
    assert_eq!(r.pending(), 0, "nothing was forwarded");
}

#[test]
fn ptr_for_members() {
    let t = table();
    let mut r = Responder::new("n1", vec![]);
    let (rcode, _, answers) = decode(&reply_of(r.handle_query(&query(5, "2.0.18.172.in-addr.arpa", TYPE_PTR), client(), t0(), &t)));
    assert_eq!(rcode, 0);
    assert_eq!(answers, vec![(TYPE_PTR, encode_name("peer.n1.").expect("name"))]);
    let v6 = "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa";
    let (_, _, answers) = decode(&reply_of(r.handle_query(&query(6, v6, TYPE_PTR), client(), t0(), &t)));
    assert_eq!(answers, vec![(TYPE_PTR, encode_name("web.n1").expect("name"))]);
    for bad in ["2.0.18.in-addr.arpa", "256.0.18.172.in-addr.arpa", "x.0.18.172.in-addr.arpa", "1.2.ip6.arpa"] {
        let (n, _) = read_name(&encode_name(bad).expect("name"), 0).expect("read");
        assert_eq!(reverse_addr(&n), None, "{bad}");
    }
}

#[test]
fn truncation_sets_tc_within_512_or_the_edns_size() {
    let mut t = Table::default();
    let ips: Vec<String> = (0..100).map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1)).collect();
    for ip in &ips {
        t.add("n1", &["many"], ip);
    }
    let mut r = Responder::new("n1", vec![]);
    let resp = reply_of(r.handle_query(&query(1, "many", TYPE_A), client(), t0(), &t));
    assert!(resp.len() <= 512, "{}", resp.len());
    let (rcode, flags, answers) = decode(&resp);
    assert_eq!(rcode, 0);
    assert_ne!(flags & FLAG_TC, 0, "TC set");
    assert!(answers.len() > 20 && answers.len() < 64, "{}", answers.len());

    let resp = reply_of(r.handle_query(&with_edns(query(2, "many", TYPE_A), 4096), client(), t0(), &t));
    assert!(resp.len() <= 1232 && resp.len() > 512, "{}", resp.len());
    let h = Header::parse(&resp).expect("header");
    assert_eq!(h.arcount, 1, "OPT echoed");
    let (_, flags, answers) = decode(&resp);
    assert_eq!(answers.len(), 64, "capped at 64 answers, all fitting in 1232 bytes");
    assert_eq!(flags & FLAG_TC, 0);

    // A client advertising less than 512 still gets 512.
    let resp = reply_of(r.handle_query(&with_edns(query(3, "many", TYPE_A), 100), client(), t0(), &t));
    assert!(resp.len() <= 512 && resp.len() > 400, "{}", resp.len());
}

#[test]
fn forwards_with_a_fresh_id_and_returns_the_answer() {
    let t = table();
    let mut r = Responder::new("n1", vec![upstream(1), upstream(2)]);
    let q = query(0xBEEF, "example.org", TYPE_A);
    let Action::Forward { to, packet } = r.handle_query(&q, client(), t0(), &t) else { panic!("not forwarded") };
    assert_eq!(to, upstream(1));
    assert_eq!(packet[2..], q[2..], "forwarded unchanged but for the id");
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    // The client's own retry while pending is dropped.
    assert_eq!(r.handle_query(&q, client(), t0(), &t), Action::Drop);

    let mut answer = packet.clone();
    answer[2] |= 0x80;
    answer[7] = 1;
    answer.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 93, 184, 216, 34]);
    // From the wrong resolver, with the wrong id, or about another name: dropped.
    assert_eq!(r.handle_upstream(&answer, upstream(2), t0()), Action::Drop);
    let mut wrong_id = answer.clone();
    wrong_id[..2].copy_from_slice(&id.wrapping_add(1).to_be_bytes());
    assert_eq!(r.handle_upstream(&wrong_id, upstream(1), t0()), Action::Drop);
    let mut other = query(0, "example.net", TYPE_A);
    other[..2].copy_from_slice(&id.to_be_bytes());
    other[2] |= 0x80;
    assert_eq!(r.handle_upstream(&other, upstream(1), t0()), Action::Drop);
    assert_eq!(r.stats().stray, 3);
    // The right one goes back with the client's id.
    let resp = reply_of(r.handle_upstream(&answer, upstream(1), t0()));
    assert_eq!(&resp[..2], &[0xBE, 0xEF]);
    assert_eq!(resp[2..], answer[2..]);
    assert_eq!(r.pending(), 0);
    // A second copy is late: dropped.
    assert_eq!(r.handle_upstream(&answer, upstream(1), t0()), Action::Drop);
}

#[test]
fn servfail_moves_on_and_timeouts_end_in_servfail() {
    let t = table();
    let mut r = Responder::new("n1", vec![upstream(1), upstream(2)]);
    let start = t0();
    let q = query(42, "example.org", TYPE_AAAA);
    let Action::Forward { packet, .. } = r.handle_query(&q, client(), start, &t) else { panic!("not forwarded") };
    // Upstream 1 says SERVFAIL: the question goes to upstream 2 with another id.
    let mut fail = packet.clone();
    fail[2] |= 0x80;
    fail[3] = (fail[3] & 0xF0) | Rcode::ServFail as u8;
    let Action::Forward { to, packet: again } = r.handle_upstream(&fail, upstream(1), start) else { panic!("not resent") };
    assert_eq!(to, upstream(2));
    assert_eq!(again[2..], q[2..]);
    assert_eq!(r.next_deadline(), Some(start + UPSTREAM_TIMEOUT));
    // Upstream 2 stays silent: nothing before the deadline, SERVFAIL after it.
    assert!(r.expire(start + UPSTREAM_TIMEOUT / 2).is_empty());
    let out = r.expire(start + UPSTREAM_TIMEOUT);
    assert_eq!(out.len(), 1);
    let resp = reply_of(out.into_iter().next().expect("one"));
    let (rcode, _, answers) = decode(&resp);
    assert_eq!((rcode, answers.len()), (Rcode::ServFail as u8, 0));
    assert_eq!(&resp[..2], &[0, 42]);
    assert_eq!(r.pending(), 0);
    assert_eq!(r.stats().timeouts, 1);
}

#[test]
fn a_client_with_its_own_dns_servers() {
    let t = table();
    let mut r = Responder::new("n1", vec![upstream(1)]);
    r.set_client_upstreams(client().ip(), &[SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53), upstream(9)]);
    let Action::Forward { to, .. } = r.handle_query(&query(1, "a.example", TYPE_A), client(), t0(), &t) else { panic!("not forwarded") };
    assert_eq!(to, upstream(9), "the client's --dns, loopback left out");
    // Its members are still answered locally.
    assert!(matches!(r.handle_query(&query(2, "peer", TYPE_A), client(), t0(), &t), Action::Reply { .. }));
    let other: SocketAddr = "172.18.0.9:5353".parse().expect("addr");
    let Action::Forward { to, .. } = r.handle_query(&query(3, "a.example", TYPE_A), other, t0(), &t) else { panic!("not forwarded") };
    assert_eq!(to, upstream(1), "other clients use the network's resolvers");
    r.forget_client(client().ip());
    let Action::Forward { to, .. } = r.handle_query(&query(4, "b.example", TYPE_A), client(), t0(), &t) else { panic!("not forwarded") };
    assert_eq!(to, upstream(1));
}

#[test]
fn the_forward_table_is_bounded_per_source_and_overall() {
    let t = Table::default();
    let mut r = Responder::new("n1", vec![upstream(1)]);
    let now = t0();
    let mut forwarded = 0;
    for id in 0..100u16 {
        if matches!(r.handle_query(&query(id, "x.example", TYPE_A), client(), now, &t), Action::Forward { .. }) {
            forwarded += 1;
        }
    }
    assert_eq!(forwarded, MAX_INFLIGHT_PER_SOURCE);
    // Many sources: the table stops at MAX_INFLIGHT, then frees up as answers time out.
    for s in 0..40u16 {
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(172, 18, 1, s as u8)), 5000);
        for id in 0..20u16 {
            let _ = r.handle_query(&query(id, "x.example", TYPE_A), from, now, &t);
        }
    }
    assert_eq!(r.pending(), MAX_INFLIGHT);
    assert!(r.stats().table_full > 0);
    let out = r.expire(now + UPSTREAM_TIMEOUT);
    assert_eq!(out.len(), MAX_INFLIGHT);
    assert_eq!(r.pending(), 0);
    assert!(matches!(r.handle_query(&query(1, "x.example", TYPE_A), client(), now + UPSTREAM_TIMEOUT, &t), Action::Forward { .. }));
}

#[test]
fn a_flooding_source_is_rate_limited_and_others_still_answered() {
    let t = table();
    let mut r = Responder::new("n1", vec![]);
    let now = t0();
    let flood: SocketAddr = "172.18.0.66:1000".parse().expect("addr");
    let mut answered = 0;
    for i in 0..5000u32 {
        if matches!(r.handle_query(&query(i as u16, "peer", TYPE_A), flood, now, &t), Action::Reply { .. }) {
            answered += 1;
        }
    }
    assert_eq!(answered, RATE_BURST);
    assert_eq!(r.stats().rate_limited, 5000 - RATE_BURST as u64);
    // Another client is answered at once; the flooder again after a second.
    assert!(matches!(r.handle_query(&query(1, "peer", TYPE_A), client(), now, &t), Action::Reply { .. }));
    assert!(matches!(r.handle_query(&query(1, "peer", TYPE_A), flood, now + Duration::from_secs(1), &t), Action::Reply { .. }));
    // Many sources: the limiter's memory stays bounded.
    for i in 0..2000u32 {
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i)), 53);
        let _ = r.handle_query(&query(1, "peer", TYPE_A), from, now, &t);
    }
    assert!(r.buckets.len() <= RATE_SOURCES);
}

#[test]
fn responses_opcodes_and_odd_questions() {
    let t = table();
    let mut r = Responder::new("n1", vec![upstream(1)]);
    // A response sent to us is never answered (no ping-pong between responders).
    let mut resp = QUERY_PEER_A.to_vec();
    resp[2] |= 0x80;
    assert_eq!(r.handle_query(&resp, client(), t0(), &t), Action::Drop);
    // NOTIFY (opcode 4): NOTIMP, header only.
    let mut notify = QUERY_PEER_A.to_vec();
    notify[2] = 4 << 3;
    let p = reply_of(r.handle_query(&notify, client(), t0(), &t));
    assert_eq!(p.len(), HEADER);
    assert_eq!(Header::parse(&p).map(|h| (h.rcode(), h.opcode())), Ok((Rcode::NotImp as u8, 4)));
    // Two questions: FORMERR.
    let mut two = QUERY_PEER_A.to_vec();
    two[5] = 2;
    let p = reply_of(r.handle_query(&two, client(), t0(), &t));
    assert_eq!(Header::parse(&p).map(|h| h.rcode()), Ok(Rcode::FormErr as u8));
    // Class CH (e.g. version.bind): not ours, forwarded.
    let mut ch = query(3, "peer", TYPE_A);
    let n = ch.len();
    ch[n - 1] = 3;
    assert!(matches!(r.handle_query(&ch, client(), t0(), &t), Action::Forward { .. }));
    // A name with a dot inside a label is never a member: forwarded.
    let mut dotted = vec![0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 6];
    dotted.extend_from_slice(b"pe.er\x01");
    dotted.extend_from_slice(&[0, 0, 1, 0, 1]);
    let q = parse_query(&dotted).expect("parses");
    assert!(!q.question.name.is_plain());
    assert!(matches!(r.handle_query(&dotted, client(), t0(), &t), Action::Forward { .. }));
    // Oversized datagrams are dropped unread.
    let mut big = query(4, "peer", TYPE_A);
    big.resize(MAX_QUERY + 1, 0);
    assert_eq!(r.handle_query(&big, client(), t0(), &t), Action::Drop);
}

#[test]
fn tcp_questions() {
    let mut t = Table::default();
    for i in 0..100u32 {
        t.add("n1", &["many"], &format!("10.0.{}.{}", i / 250, i % 250 + 1));
    }
    let mut r = Responder::new("n1", vec![upstream(1), upstream(2)]);
    // Over TCP a long answer is whole (still capped at 64 records), without TC.
    let TcpAction::Reply(resp) = r.handle_tcp_query(&query(1, "many", TYPE_A), client(), t0(), &t) else { panic!("no reply") };
    let (rcode, flags, answers) = decode(&resp);
    assert_eq!((rcode, flags & FLAG_TC, answers.len()), (0, 0, 64));
    assert_eq!(r.handle_tcp_query(&query(2, "x.example", TYPE_A), client(), t0(), &t), TcpAction::Forward(vec![upstream(1), upstream(2)]));
    let servfail = r.tcp_servfail(&query(2, "x.example", TYPE_A)).expect("servfail");
    assert_eq!(decode(&servfail).0, Rcode::ServFail as u8);
    assert_eq!(r.handle_tcp_query(&QUERY_PEER_A[..5], client(), t0(), &t), TcpAction::Drop);
    let mut none = Responder::new("n1", vec![]);
    let TcpAction::Reply(resp) = none.handle_tcp_query(&query(3, "x.example", TYPE_A), client(), t0(), &t) else { panic!("no reply") };
    assert_eq!(decode(&resp).0, Rcode::ServFail as u8);
}

#[test]
fn resolv_conf_upstreams() {
    let text = "# comment\nsearch example.com\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver  fe80::1%eth0\n\
                nameserver ::1\nnameserver bogus\nnameserver 192.0.2.53\nnameserver 0.0.0.0\nnameserver 192.0.2.54\nnameserver 192.0.2.55\n";
    let sa = |s: &str| -> SocketAddr { s.parse().expect("addr") };
    assert_eq!(upstreams_from_resolv_conf(text, false), vec![sa("192.0.2.53:53"), sa("[fe80::1]:53"), sa("192.0.2.54:53")]);
    assert_eq!(upstreams_from_resolv_conf(text, true), vec![sa("127.0.0.53:53"), sa("192.0.2.53:53"), sa("[fe80::1]:53")]);
    assert!(upstreams_from_resolv_conf("", true).is_empty());
}

#[test]
fn encode_name_limits() {
    assert_eq!(encode_name("a.bc"), Some(vec![1, b'a', 2, b'b', b'c', 0]));
    assert_eq!(encode_name("a.bc."), encode_name("a.bc"));
    assert_eq!(encode_name(""), Some(vec![0]));
    assert_eq!(encode_name("a..b"), None);
    assert_eq!(encode_name(&"x".repeat(64)), None);
    assert_eq!(encode_name(&vec!["y".repeat(63); 4].join(".")), None);
}

/// xorshift, so the randomised tests are the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_and_mutated_packets_never_panic_and_replies_stay_bounded() {
    let t = table();
    let mut r = Responder::new("n1", vec![upstream(1)]);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seeds: Vec<Vec<u8>> = vec![
        QUERY_PEER_A.to_vec(),
        ANSWER_PEER_A.to_vec(),
        with_edns(query(1, "web.n1", TYPE_AAAA), 1232),
        query(2, "2.0.18.172.in-addr.arpa", TYPE_PTR),
        query(3, "a.b.c.d.example.org", 16),
    ];
    let now = t0();
    for i in 0..200_000u32 {
        let mut pkt = if i % 4 == 0 {
            let len = rng.below(80);
            (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>()
        } else {
            let mut p = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(4) {
                match rng.below(4) {
                    0 if !p.is_empty() => {
                        let at = rng.below(p.len());
                        p[at] = rng.next() as u8;
                    }
                    1 if !p.is_empty() => {
                        let at = rng.below(p.len());
                        p.truncate(at);
                    }
                    2 => {
                        let at = rng.below(p.len() + 1);
                        p.insert(at, [0xC0, 0x3F, 0, 63, 12][rng.below(5)]);
                    }
                    _ => p.extend_from_slice(&[0xC0, rng.next() as u8]),
                }
            }
            p
        };
        // Half of them with QR set also go through the upstream side.
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(172, 18, 2, (i % 200) as u8)), 1000);
        match r.handle_query(&pkt, from, now + Duration::from_millis(i as u64), &t) {
            Action::Reply { packet, .. } => {
                assert!(packet.len() <= 1232, "reply of {} bytes", packet.len());
                assert!(Header::parse(&packet).is_ok_and(|h| h.is_response()));
            }
            Action::Forward { packet, .. } => assert_eq!(packet.len(), pkt.len()),
            Action::Drop => {}
        }
        if i % 2 == 0 && pkt.len() > 2 {
            pkt[2] |= 0x80;
            if let Action::Reply { packet, .. } = r.handle_upstream(&pkt, upstream(1), now) {
                assert!(packet.len() <= 1232);
            }
        }
        if i % 1000 == 0 {
            let _ = r.expire(now + Duration::from_millis(i as u64));
        }
    }
    assert!(r.pending() <= MAX_INFLIGHT);
}

#[test]
fn members_table() {
    let mut m = Members::new();
    let id = "f3424439bf0911763a68336c86ca9b07585914468d6ee74c03f4f73217baee2c";
    m.set(Member { id: id.into(), name: "Peer".into(), aliases: vec!["pal".into(), "shared".into()], ips: vec![ip4("172.18.0.2")] });
    m.set(Member { id: "ab".repeat(32), name: "web".into(), aliases: vec!["shared".into()], ips: vec![ip4("172.18.0.3")] });
    assert_eq!(m.lookup("n1", "peer"), vec![ip4("172.18.0.2")]);
    assert_eq!(m.lookup("n1", "pal"), vec![ip4("172.18.0.2")]);
    assert_eq!(m.lookup("n1", "f3424439bf09"), vec![ip4("172.18.0.2")], "short ID");
    assert!(m.lookup("n1", "f3424439bf0").is_empty(), "11 digits are not a short ID");
    assert!(m.lookup("n1", &id[..13]).is_empty(), "13 digits are not either");
    assert_eq!(m.lookup("n1", "shared"), vec![ip4("172.18.0.2"), ip4("172.18.0.3")]);
    assert_eq!(m.reverse("n1", ip4("172.18.0.3")), vec!["web.n1".to_string()]);
    // A restart: same ID, new address; seen by the next question through the responder.
    let cell = std::cell::RefCell::new(m);
    let mut r = Responder::new("n1", vec![]);
    cell.borrow_mut().set(Member { id: id.into(), name: "Peer".into(), aliases: vec![], ips: vec![ip4("172.18.0.9")] });
    let (_, _, answers) = decode(&reply_of(r.handle_query(&query(1, "PEER", TYPE_A), client(), t0(), &cell)));
    assert_eq!(answers, vec![(TYPE_A, vec![172, 18, 0, 9])]);
    // While the agent holds the table mutably the name is not found (no panic).
    {
        let _held = cell.borrow_mut();
        let (rcode, _, _) = decode(&reply_of(r.handle_query(&query(2, "peer", TYPE_A), client(), t0(), &cell)));
        assert_eq!(rcode, Rcode::ServFail as u8);
    }
    assert!(cell.borrow_mut().remove(id));
    assert!(!cell.borrow_mut().remove(id));
    assert_eq!(cell.borrow().len(), 1);
}

fn ip4(s: &str) -> IpAddr {
    s.parse().expect("test address")
}
