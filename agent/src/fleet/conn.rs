//! The operator's broker connection: rumqttc's event loop polled in its own task (it must never
//! wait on the request channel it drains), messages handed to the command through a channel,
//! every wait bounded. A connection lost mid-command is retried for `RECONNECT_FOR`; the
//! command resubscribes when it is back (clean session: the broker forgot the subscriptions).

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::mqtt::{self, Broker, TlsFiles};

const RECONNECT_FOR: Duration = Duration::from_secs(30);
const KEEP_ALIVE: Duration = Duration::from_secs(30);

pub enum Msg {
    Publish {
        topic: String,
        payload: Vec<u8>,
    },
    /// The connection dropped; the event loop is trying again.
    Lost,
    /// Connected again after a loss: subscriptions must be made again.
    Reconnected,
}

pub struct Conn {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Result<Msg, String>>,
    subs: Vec<(String, QoS)>,
    pub url: String,
    /// False between a loss and the reconnection.
    pub online: bool,
    /// How many times the connection came back (a sender restarts its clocks then).
    pub reconnects: u64,
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if berth_runtime::random::fill(&mut b).is_err() {
        // Only uniqueness matters here (ids, tokens): time and pid will do.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let seed = t ^ (u128::from(std::process::id()) << 64);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
        }
    }
    berth_runtime::digest::to_hex(&b)
}

pub fn random_id() -> String {
    random_hex(16)
}

pub fn token() -> String {
    random_hex(8)
}

impl Conn {
    /// Connects (clean session, id `berth-fleet-<random>`) and waits for the broker's ConnAck,
    /// at most `connect_timeout`.
    pub async fn open(url: &str, tls: &TlsFiles, connect_timeout: Duration) -> Result<Conn, String> {
        let broker = Broker::parse(url).map_err(|e| e.to_string())?;
        let any_tls = tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some();
        if any_tls && !broker.tls {
            return Err(format!("--mqtt-ca, --mqtt-cert and --mqtt-key need an mqtts:// broker URL, not {url}"));
        }
        let cfg = if broker.tls { Some(Arc::new(mqtt::tls_config(tls, mqtt::build_time()).map_err(|e| e.to_string())?)) } else { None };
        let id = format!("berth-fleet-{}", random_hex(6));
        let opts = mqtt::options(&broker, &id, cfg, KEEP_ALIVE, true, None).map_err(|e| e.to_string())?;
        // The request queue holds publishes (chunks) the event loop has not written yet; the
        // sender's window already bounds how many it adds.
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        eventloop.network_options.set_connection_timeout(connect_timeout.as_secs().max(1));
        let (tx, rx) = mpsc::unbounded_channel();
        let shown = url.to_string();
        tokio::spawn(async move {
            let mut connected = false;
            let mut lost: Option<Instant> = None;
            let mut attempt = 0;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        attempt = 0;
                        lost = None;
                        let msg = if connected { Msg::Reconnected } else { Msg::Publish { topic: String::new(), payload: Vec::new() } };
                        connected = true;
                        if tx.send(Ok(msg)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(Ok(Msg::Publish { topic: p.topic, payload: p.payload.to_vec() })).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => return,
                    Err(e) => {
                        if lost.is_none() && connected && tx.send(Ok(Msg::Lost)).is_err() {
                            return;
                        }
                        let since = *lost.get_or_insert_with(Instant::now);
                        if !connected || since.elapsed() >= RECONNECT_FOR {
                            let what = if connected { "lost the broker at" } else { "cannot connect to the broker at" };
                            let _ = tx.send(Err(format!("{what} {shown}: {}", describe(&e))));
                            return;
                        }
                        tokio::time::sleep(mqtt::backoff(attempt, Duration::from_secs(5))).await;
                        attempt += 1;
                    }
                }
            }
        });
        let mut conn = Conn { client, rx, subs: Vec::new(), url: url.to_string(), online: true, reconnects: 0 };
        // The first message is the ConnAck marker (an empty topic) or the error.
        match tokio::time::timeout(connect_timeout + Duration::from_secs(1), conn.rx.recv()).await {
            Ok(Some(Ok(_))) => Ok(conn),
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err(format!("cannot connect to the broker at {url}")),
            Err(_) => Err(format!("cannot connect to the broker at {url}: no answer in {} s", connect_timeout.as_secs())),
        }
    }

    pub async fn subscribe(&mut self, topic: &str) -> Result<(), String> {
        self.subscribe_qos(topic, QoS::AtLeastOnce).await
    }

    /// A fleet-wide subscription to the devices' retained `status` and `state`, at QoS 0. The
    /// broker sends every retained message at once when it takes the subscription: one or more
    /// per device. At QoS 1 those queue behind the client's in-flight window, and what exceeds the
    /// broker's per-client queue is dropped (mosquitto: max_queued_messages, 1,000 by default; a
    /// push to a group of 1,000 found 20 of them, and exited 0). QoS 0 messages to a connected
    /// client are not queued that way; the connection is TCP, and a reconnection resubscribes,
    /// which sends the retained messages again.
    pub async fn subscribe_retained(&mut self, topic: &str) -> Result<(), String> {
        self.subscribe_qos(topic, QoS::AtMostOnce).await
    }

    async fn subscribe_qos(&mut self, topic: &str, qos: QoS) -> Result<(), String> {
        self.subs.push((topic.to_string(), qos));
        let r = self.client.subscribe(topic, qos).await;
        r.map_err(|_| self.gone())
    }

    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), String> {
        let r = self.client.publish(topic, QoS::AtLeastOnce, false, payload).await;
        r.map_err(|_| self.gone())
    }

    /// The event loop has ended: its last message says why (the client's error only says that
    /// the queue is closed).
    fn gone(&mut self) -> String {
        while let Ok(m) = self.rx.try_recv() {
            if let Err(e) = m {
                return e;
            }
        }
        format!("lost the broker at {}", self.url)
    }

    /// The next message, or None once `deadline` passes. Reconnections are handled here.
    pub async fn next(&mut self, deadline: Instant) -> Result<Option<(String, Vec<u8>)>, String> {
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(format!("lost the broker at {}", self.url)),
                Ok(Some(Err(e))) => return Err(e),
                Ok(Some(Ok(Msg::Lost))) => self.online = false,
                Ok(Some(Ok(Msg::Reconnected))) => {
                    self.online = true;
                    self.reconnects += 1;
                    for (t, qos) in self.subs.clone() {
                        let r = self.client.subscribe(t, qos).await;
                        r.map_err(|_| self.gone())?;
                    }
                }
                Ok(Some(Ok(Msg::Publish { topic, payload }))) if !topic.is_empty() => return Ok(Some((topic, payload))),
                Ok(Some(Ok(Msg::Publish { .. }))) => {}
            }
        }
    }

    /// Lets the event loop write what is queued (the envelope, a command) before the process
    /// exits, bounded.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.disconnect()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// rumqttc's errors name the layer ("I/O: ..."); say what an operator needs.
fn describe(e: &rumqttc::ConnectionError) -> String {
    match e {
        rumqttc::ConnectionError::Io(io) => io.to_string(),
        rumqttc::ConnectionError::ConnectionRefused(code) => format!("the broker refused the connection ({code:?})"),
        rumqttc::ConnectionError::NetworkTimeout => "no answer (network timeout)".into(),
        other => other.to_string(),
    }
}
