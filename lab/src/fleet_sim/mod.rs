//! `berth-lab fleet-sim`: N simulated devices in one process (one current-thread runtime, one MQTT
//! connection per device), each speaking berth's update protocol as a real agent does up to the
//! apply (see device.rs), so that `berth fleet push` can be run against a fleet of a thousand on
//! one machine: its wall time and the broker's traffic are what bench/rows/98-fleet-scale.sh
//! measures.

mod device;

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet};

use berth_proto::sign::PublicKey;
use device::{Device, Shared, Stats, Then};

pub const USAGE: &str = "Usage:  berth-lab fleet-sim --mqtt URL --devices N [OPTIONS]

Simulated berth devices in one process, for fleet tests and benchmarks: each connects as a real
agent does (client id = device id, persistent session, last will), checks signed updates, receives
the chunks, reports progress and resend requests, checks the tarball's sha256 and reports the
update committed (nothing is stored, loaded or run). Device ids are PREFIX1 ... PREFIXN.
It prints \"N devices online\" once every device is connected, a line per update once every
device has a result for it, and a summary when stopped (SIGINT, SIGTERM).

Options:
      --mqtt URL            Broker, mqtt://HOST[:PORT] (no TLS)
      --devices N           How many devices (1 to 10000)
      --prefix P            Device id prefix (default \"sim-\")
      --trust FILE          Public key (SPKI PEM, from 'berth fleet keygen') whose updates are
                            accepted (repeatable; without one every update is refused)
      --group G             A group every device is in (repeatable)
      --topic-prefix P      Topic prefix (default \"berth/v1/\")
      --fanout TOPIC        Instead of devices: N plain subscribers (QoS 1) of TOPIC that only
                            count what arrives, the broker's own fan-out for a benchmark's peer;
                            prints \"N subscribed\", and exits once each has --messages M
      --messages M          With --fanout: how many messages each subscriber waits for
      --help                Print usage
";

const MAX_DEVICES: usize = 10_000;
/// A chunk is at most 1 MiB plus its header; the agent's own limit.
const MAX_PACKET: usize = (1 << 20) + 4096;
const KEEP_ALIVE: Duration = Duration::from_secs(30);

struct Opts {
    host: String,
    port: u16,
    devices: usize,
    prefix: String,
    topic_prefix: String,
    keys: Vec<PublicKey>,
    groups: Vec<String>,
    fanout: Option<(String, u64)>,
}

fn parse(args: &[String]) -> Result<Option<Opts>, (u8, String)> {
    let usage = |m: String| (125, format!("fleet-sim: {m}\n{USAGE}"));
    let (mut url, mut devices) = (None, None);
    let mut o = Opts {
        host: String::new(),
        port: 1883,
        devices: 0,
        prefix: "sim-".into(),
        topic_prefix: "berth/v1/".into(),
        keys: Vec::new(),
        groups: Vec::new(),
        fanout: None,
    };
    let (mut fanout, mut messages) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| usage(format!("{name} needs a value")));
        match name {
            "--mqtt" => url = Some(value()?),
            "--devices" => {
                let v = value()?;
                devices = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_DEVICES).contains(n))
                        .ok_or_else(|| usage(format!("--devices {v:?} is not a number from 1 to {MAX_DEVICES}")))?,
                );
            }
            "--prefix" => o.prefix = value()?,
            "--topic-prefix" => {
                o.topic_prefix = value()?;
                if !o.topic_prefix.is_empty() && !o.topic_prefix.ends_with('/') {
                    o.topic_prefix.push('/');
                }
            }
            "--trust" => {
                let f = value()?;
                o.keys.push(PublicKey::load(std::path::Path::new(&f)).map_err(|e| (1, format!("fleet-sim: --trust {f}: {e}")))?);
            }
            "--group" => o.groups.push(value()?),
            "--fanout" => fanout = Some(value()?),
            "--messages" => {
                let v = value()?;
                messages = Some(
                    v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| usage(format!("--messages {v:?} is not a number above 0")))?,
                );
            }
            "--help" | "-h" => return Ok(None),
            other => return Err(usage(format!("unknown flag {other:?}"))),
        }
    }
    let url = url.ok_or_else(|| usage("--mqtt URL is required".into()))?;
    o.devices = devices.ok_or_else(|| usage("--devices N is required".into()))?;
    let rest = match url.split_once("://") {
        Some(("mqtt" | "tcp", r)) => r,
        Some((scheme, _)) => return Err(usage(format!("--mqtt {url}: {scheme}:// is not supported (mqtt://HOST[:PORT])"))),
        None => url.as_str(),
    };
    let rest = rest.trim_end_matches('/');
    (o.host, o.port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().map_err(|_| usage(format!("--mqtt {url}: bad port {p:?}")))?),
        None => (rest.to_string(), 1883),
    };
    if o.host.is_empty() {
        return Err(usage(format!("--mqtt {url}: no host")));
    }
    if o.topic_prefix.contains(['+', '#']) {
        return Err(usage(format!("--topic-prefix {:?} must not contain wildcards", o.topic_prefix)));
    }
    let last = format!("{}{}", o.prefix, o.devices);
    if !berth_proto::names::valid_device_id(&last) {
        return Err(usage(format!("--prefix {:?}: {last:?} is not a valid device id (letters, digits, - _ .)", o.prefix)));
    }
    o.fanout = match (fanout, messages) {
        (Some(t), Some(m)) if berth_proto::wire::valid_topic(&t) => Some((t, m)),
        (Some(t), Some(_)) => return Err(usage(format!("--fanout {t:?} is not a plain topic"))),
        (None, None) => None,
        _ => return Err(usage("--fanout TOPIC and --messages M go together".into())),
    };
    if o.groups.iter().any(|g| g.is_empty() || g.len() > 64) {
        return Err(usage("--group takes a name of 1 to 64 characters".into()));
    }
    Ok(Some(o))
}

pub fn main(args: &[String]) -> Result<(), (u8, String)> {
    let Some(o) = parse(args)? else {
        print!("{USAGE}");
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| (1, format!("fleet-sim: runtime: {e}")))?;
    let local = tokio::task::LocalSet::new();
    match o.fanout.clone() {
        Some((topic, messages)) => local.block_on(&rt, fanout(o, topic, messages)),
        None => local.block_on(&rt, run(o)),
    }
}

fn client_options(o: &Opts, id: &str) -> MqttOptions {
    let mut mo = MqttOptions::new(id, o.host.clone(), o.port);
    mo.set_keep_alive(KEEP_ALIVE);
    mo.set_max_packet_size(MAX_PACKET, 64 * 1024);
    mo
}

/// The peer of a fleet push in a benchmark: the same process model and client (one runtime
/// thread, one rumqttc connection each) as the simulated devices, without the protocol: each
/// subscriber only counts messages and bytes.
async fn fanout(o: Opts, topic: String, messages: u64) -> Result<(), (u8, String)> {
    let n = o.devices;
    let counts = Rc::new(RefCell::new((0usize, 0usize, 0u64)));
    for i in 1..=n {
        let (client, mut events) = AsyncClient::new(client_options(&o, &format!("{}{i}", o.prefix)), 8);
        let (counts, topic) = (counts.clone(), topic.clone());
        tokio::task::spawn_local(async move {
            let mut got = 0u64;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe(topic.clone(), rumqttc::QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let mut c = counts.borrow_mut();
                        c.0 += 1;
                        if c.0 == n {
                            println!("{n} subscribed");
                            let _ = std::io::stdout().flush();
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        got += 1;
                        let mut c = counts.borrow_mut();
                        c.2 += p.payload.len() as u64;
                        if got == messages {
                            c.1 += 1;
                            if c.1 == n {
                                let hwm = peak_rss_kib();
                                println!(
                                    "{n} subscribers received {messages} messages each ({} bytes in all); peak RSS {hwm} KiB ({:.1} KiB per subscriber)",
                                    c.2,
                                    hwm as f64 / n as f64
                                );
                                let _ = std::io::stdout().flush();
                                std::process::exit(0);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("fleet-sim --fanout: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| (1, format!("fleet-sim: signal handler: {e}")))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Err((1, format!("fleet-sim --fanout: stopped before every subscriber had {messages} messages")))
}

type Dev = Rc<RefCell<Device>>;

async fn run(o: Opts) -> Result<(), (u8, String)> {
    let shared = Rc::new(Shared { keys: o.keys.clone(), groups: o.groups.clone() });
    let stats = Rc::new(RefCell::new(Stats::default()));
    let mut devices: Vec<Dev> = Vec::with_capacity(o.devices);
    for i in 1..=o.devices {
        let id = format!("{}{i}", o.prefix);
        let root = format!("{}{id}/", o.topic_prefix);
        let mut mo = client_options(&o, &id);
        mo.set_clean_session(false);
        mo.set_last_will(rumqttc::LastWill::new(format!("{root}status"), b"offline".to_vec(), rumqttc::QoS::AtLeastOnce, true));
        // A device publishes a few small messages at a time (progress, result, state).
        let (client, events) = AsyncClient::new(mo, 32);
        let d = Rc::new(RefCell::new(Device::new(id, root, client)));
        devices.push(d.clone());
        tokio::task::spawn_local(session(d, events, shared.clone(), stats.clone()));
        // Connect a few at a time rather than a thousand in one burst.
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let n = devices.len();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| (1, format!("fleet-sim: signal handler: {e}")))?;
    let mut announced_online = false;
    let mut announced: std::collections::BTreeSet<String> = Default::default();
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for d in &devices {
                    d.borrow_mut().tick(&shared);
                }
                let st = stats.borrow();
                if !announced_online && st.online >= n {
                    announced_online = true;
                    let _ = writeln!(stdout, "{n} devices online");
                }
                for (id, [c, r, f]) in &st.outcomes {
                    if c + r + f >= n && announced.insert(id.clone()) {
                        let _ = writeln!(stdout, "update {id}: {c} committed, {r} refused, {f} failed (of {n} devices)");
                    }
                }
                let _ = stdout.flush();
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let st = stats.borrow();
    for (id, [c, r, f]) in st.outcomes.iter().filter(|(id, _)| !announced.contains(*id)) {
        let _ = writeln!(stdout, "update {id}: {c} committed, {r} refused, {f} failed (of {n} devices)");
    }
    let hwm = peak_rss_kib();
    let _ = writeln!(
        stdout,
        "fleet-sim: {n} devices; chunks {} received, {} duplicates, {} after the end, {} dropped (over {} out of order), {} malformed; peak RSS {hwm} KiB ({:.1} KiB per device)",
        st.chunks,
        st.duplicates,
        st.late,
        st.dropped,
        device::REORDER_MAX,
        st.malformed,
        hwm as f64 / n as f64
    );
    let _ = stdout.flush();
    Ok(())
}

/// One device's connection: rumqttc's event loop, polled here only (as the agent's session),
/// messages handed to the device; reconnects with a back-off of 1 to 8 s.
async fn session(d: Dev, mut events: EventLoop, shared: Rc<Shared>, stats: Rc<RefCell<Stats>>) {
    let (root, id) = {
        let d = d.borrow();
        (d.root.clone(), d.id.clone())
    };
    let (update, cmd) = (format!("{root}update"), format!("{root}cmd"));
    let mut seen_online = false;
    let mut failures = 0u32;
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                if !seen_online {
                    seen_online = true;
                    stats.borrow_mut().online += 1;
                }
                d.borrow_mut().connected(&shared);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let mut st = stats.borrow_mut();
                let mut dev = d.borrow_mut();
                let then = if p.topic == update {
                    dev.on_envelope(&shared, &mut st, &p.payload)
                } else if p.topic == cmd {
                    dev.on_command(&shared, &mut st, &p.payload)
                } else {
                    dev.on_chunk(&mut st, &p.payload)
                };
                if let Then::Unsubscribe(t) = then {
                    dev.unsubscribe(t);
                }
            }
            Ok(_) => {}
            Err(e) => {
                if failures == 0 {
                    eprintln!("fleet-sim: {id}: {e}");
                }
                failures += 1;
                tokio::time::sleep(Duration::from_secs(1 << failures.min(3))).await;
            }
        }
    }
}

/// VmHWM of this process, in KiB (0 when /proc says nothing).
fn peak_rss_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_are_checked() {
        let o = parse(&args(&["--mqtt", "mqtt://127.0.0.1:1999", "--devices=20", "--group", "g"])).unwrap().unwrap();
        assert_eq!((o.host.as_str(), o.port, o.devices, o.groups.clone()), ("127.0.0.1", 1999, 20, vec!["g".to_string()]));
        for bad in [
            &["--devices", "2"][..],
            &["--mqtt", "mqtt://h"],
            &["--mqtt", "mqtts://h:1", "--devices", "1"],
            &["--mqtt", "h:x", "--devices", "1"],
            &["--mqtt", "h", "--devices", "0"],
            &["--mqtt", "h", "--devices", "1", "--prefix", "a/b"],
            &["--mqtt", "h", "--devices", "1", "--bogus"],
        ] {
            assert_eq!(parse(&args(bad)).err().map(|e| e.0), Some(125), "{bad:?}");
        }
        assert!(parse(&args(&["--help"])).unwrap().is_none());
    }
}
