//! `berth-lab`: tools for a lab or a demo on one machine, kept out of the device binary (the
//! broker alone would triple its size). `berth-lab broker`, an embedded MQTT broker (rumqttd)
//! set up for berth's update protocol: loopback only, messages large enough for chunks,
//! persistent sessions, retained messages and last wills. `berth-lab fleet-sim`, simulated
//! devices taking updates from `berth fleet push` (fleet_sim/).

mod fleet_sim;

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::ExitCode;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

const USAGE: &str = "Usage:  berth-lab broker [--port N] [--listen ADDR]
        berth-lab fleet-sim --mqtt URL --devices N [OPTIONS]   (see berth-lab fleet-sim --help)

An embedded MQTT 3.1.1 broker for labs and demos (loopback by default).
It prints \"listening on mqtt://ADDR:PORT\" once it accepts connections.

Options:
      --port N        TCP port (default 1883; 0 picks a free one)
      --listen ADDR   Address to listen on (default 127.0.0.1)
      --help          Print usage
";

/// A chunk is at most 1 MiB of data plus its header and topic (agent/proto/src/wire.rs).
const MAX_PAYLOAD: usize = (1 << 20) + 64 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("berth-lab: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run(args: &[String]) -> Result<(), (u8, String)> {
    let usage = |m: String| (125, format!("{m}\n{USAGE}"));
    match args.first().map(String::as_str) {
        Some("broker") => {}
        Some("fleet-sim") => return fleet_sim::main(&args[1..]),
        None | Some("--help" | "-h" | "help") => {
            print!("{USAGE}");
            return Ok(());
        }
        Some(other) => return Err(usage(format!("unknown command {other:?}"))),
    }
    let (mut port, mut host) = (1883u16, Ipv4Addr::LOCALHOST);
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| usage(format!("{name} needs a value")));
        match name {
            "--port" => {
                let v = value()?;
                port = v.parse().map_err(|_| usage(format!("bad port {v:?}")))?;
            }
            "--listen" => {
                let v = value()?;
                host = v.parse().map_err(|_| usage(format!("bad IPv4 address {v:?}")))?;
            }
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => return Err(usage(format!("unknown flag {other:?}"))),
        }
    }
    // rumqttd binds in its own thread and only logs a failure there: bind here first so that a
    // port in use is a clear error (and port 0 becomes a real free port).
    let probe = TcpListener::bind((host, port)).map_err(|e| (1, format!("cannot listen on {host}:{port}: {e}")))?;
    let addr = probe.local_addr().map_err(|e| (1, format!("local address: {e}")))?;
    drop(probe);

    let mut broker = Broker::new(config(addr));
    // The router link proves the router is up before we announce the address.
    let _link = broker.link("berth-lab").map_err(|e| (1, format!("broker router: {e}")))?;
    let server = std::thread::spawn(move || broker.start().map_err(|e| e.to_string()));
    wait_listening(addr).map_err(|e| (1, format!("broker did not start listening on {addr}: {e}")))?;
    println!("listening on mqtt://{addr}");
    let _ = std::io::stdout().flush();
    match server.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err((1, format!("broker: {e}"))),
        Err(_) => Err((1, "broker thread panicked".into())),
    }
}

fn config(addr: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_PAYLOAD,
        // A sender streams a window of QoS 1 chunks; too small a count stalls it on acks.
        max_inflight_count: 256,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings { name: "berth-lab-v4".into(), listen: addr, tls: None, next_connection_delay_ms: 1, connections };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: 256,
            // The router keeps each topic's messages in segments; a slow subscriber that falls
            // more than this behind loses the oldest (berth's receivers re-request what they
            // lack), and memory stays bounded whatever the size of an update.
            max_segment_size: 16 << 20,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    }
}

fn wait_listening(addr: SocketAddr) -> std::io::Result<()> {
    let mut last = None;
    for _ in 0..100 {
        match std::net::TcpStream::connect(addr) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("timed out")))
}
