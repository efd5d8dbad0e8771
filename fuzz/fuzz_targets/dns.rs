//! The embedded DNS responder (`net::dns`) on arbitrary datagrams: `parse_query`, `read_name` at
//! every offset, and a `Responder` (members on a fixed table, one upstream) taking each input as a
//! client's question and as an upstream's answer. Errors are fine; panics are not, and neither is
//! a reply over 1232 bytes, a reply that is not a response, a forwarded packet that differs from
//! the question in more than its id, or a table of forwarded questions past its bound.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use berth_runtime::net::dns::{self, Action, Header, Lookup, Responder, MAX_INFLIGHT};
use libfuzzer_sys::fuzz_target;

struct Members;

impl Lookup for Members {
    fn lookup(&self, _network: &str, name: &str) -> Vec<IpAddr> {
        match name {
            "web" | "f3424439bf09" => vec![IpAddr::V4(Ipv4Addr::new(172, 18, 0, 2))],
            // Enough addresses to need truncation.
            "many" => (1..=100).map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))).collect(),
            _ => vec![],
        }
    }
    fn reverse(&self, _network: &str, addr: IpAddr) -> Vec<String> {
        if addr == IpAddr::V4(Ipv4Addr::new(172, 18, 0, 2)) {
            vec!["web.n1".into(), "x".repeat(70)]
        } else {
            vec![]
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = dns::parse_query(data);
    for at in 0..data.len().min(512) {
        if let Ok((name, end)) = dns::read_name(data, at) {
            assert!(end <= data.len() && end > at);
            assert!(name.as_str().map_or(true, |s| s.len() <= 253));
        }
    }
    let upstream = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 53);
    let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(172, 18, 0, 9)), 4000);
    let mut r = Responder::new("n1", vec![upstream]);
    let now = Instant::now();
    match r.handle_query(data, client, now, &Members) {
        Action::Reply { to, packet } => {
            assert_eq!(to, client);
            assert!(packet.len() <= 1232, "reply of {} bytes", packet.len());
            assert!(Header::parse(&packet).is_ok_and(|h| h.is_response()));
        }
        Action::Forward { to, packet } => {
            assert_eq!(to, upstream);
            assert_eq!(packet[2..], data[2..], "forwarded with more than the id changed");
            // The upstream answers with the question itself turned into a response.
            let mut answer = packet.clone();
            answer[2] |= 0x80;
            match r.handle_upstream(&answer, upstream, now) {
                Action::Reply { to, packet } => {
                    assert_eq!(to, client);
                    assert_eq!(packet[..2], data[..2], "the client's id restored");
                }
                other => panic!("the matching answer was not passed on: {other:?}"),
            }
        }
        Action::Drop => {}
    }
    // The input as an upstream's datagram: nothing is pending for it unless it guesses an id.
    let _ = r.handle_upstream(data, upstream, now);
    let _ = r.expire(now + Duration::from_secs(10));
    assert!(r.pending() <= MAX_INFLIGHT);
});
