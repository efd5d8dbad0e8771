//! The agent's MQTT session: one persistent session (QoS 1, clean session off), reconnects with
//! jittered back-off and broker failover, `offline` as last will and a retained `online` once
//! subscribed. Incoming messages are handed to the update manager on this one thread.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS};

use super::manager::{Manager, Then};
use crate::daemon::Shared;
use crate::mqtt::{self, Broker};

#[derive(Clone)]
pub struct Link {
    pub brokers: Vec<Broker>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub keep_alive: Duration,
}

type Upd = Rc<RefCell<Manager>>;

fn options(link: &Link, i: usize, device: &str, topic: &str) -> berth_runtime::Result<rumqttc::MqttOptions> {
    mqtt::options(&link.brokers[i], device, link.tls.clone(), link.keep_alive, false, Some((format!("{topic}status"), b"offline".to_vec())))
}

/// Runs the session until the agent stops.
pub async fn run(link: Link, upd: Upd, sup: Shared) {
    let (device, topic) = {
        let m = upd.borrow();
        (m.settings.device.clone(), m.settings.topic.clone())
    };
    let mut current = 0;
    let opts = match options(&link, current, &device, &topic) {
        Ok(o) => o,
        Err(e) => {
            crate::warn!("mqtt: {e}");
            return;
        }
    };
    let (client, mut events) = AsyncClient::new(opts, 512);
    upd.borrow_mut().set_client(Some(client.clone()));
    crate::daemon::spawn(ticker(upd.clone(), sup.clone()));
    let mut failures = 0u32;
    let mut last_error = String::new();
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                last_error.clear();
                let b = &link.brokers[current];
                crate::info!("mqtt: connected to {}:{} as {device}", b.host, b.port);
                let _ = client.try_subscribe(format!("{topic}update"), QoS::AtLeastOnce);
                let _ = client.try_subscribe(format!("{topic}cmd"), QoS::AtLeastOnce);
                let mut m = upd.borrow_mut();
                if let Some(t) = &m.transfer {
                    if let Some(i) = &t.manifest.image {
                        let _ = client.try_subscribe(i.topic.clone(), QoS::AtLeastOnce);
                    }
                    let p = t.progress("receiving", true);
                    m.publish_progress(&p, true);
                }
                let _ = client.try_publish(format!("{topic}status"), QoS::AtLeastOnce, true, b"online".to_vec());
                m.publish_state(true);
                super::clock::contact(&m.root);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let then = {
                    let mut m = upd.borrow_mut();
                    if p.topic == format!("{topic}update") {
                        m.on_envelope(&p.payload)
                    } else if p.topic == format!("{topic}cmd") {
                        m.on_command(&p.payload)
                    } else {
                        m.on_chunk(&p.payload)
                    }
                };
                match then {
                    Then::Nothing => {}
                    Then::Receive(t) => {
                        let _ = client.try_subscribe(t, QoS::AtLeastOnce);
                        let m = upd.borrow();
                        if let Some(tr) = &m.transfer {
                            m.publish_progress(&tr.progress("receiving", true), true);
                        }
                    }
                    Then::Unsubscribe(t) => {
                        let _ = client.try_unsubscribe(t);
                    }
                    Then::Apply(t) => {
                        if let Some(t) = t {
                            let _ = client.try_unsubscribe(t);
                        }
                        crate::daemon::spawn(super::apply::drive(upd.clone(), sup.clone()));
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                let b = &link.brokers[current];
                let msg = format!("mqtt: {}:{}: {e}", b.host, b.port);
                if msg != last_error {
                    crate::warn!("{msg}");
                    last_error = msg;
                }
                failures += 1;
                // Three failures in a row on one broker: the next one in the list.
                if failures.is_multiple_of(3) && link.brokers.len() > 1 {
                    current = (current + 1) % link.brokers.len();
                    match options(&link, current, &device, &topic) {
                        Ok(o) => events.mqtt_options = o,
                        Err(e) => crate::warn!("mqtt: {e}"),
                    }
                }
                tokio::time::sleep(mqtt::backoff(failures.saturating_sub(1), Duration::from_secs(60))).await;
            }
        }
    }
}

/// Progress while receiving (about four times a second) and the state when it changed.
async fn ticker(upd: Upd, sup: Shared) {
    let (_, mut events) = sup.borrow().events.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut slow = tokio::time::interval(Duration::from_secs(60));
    let mut last_have = u32::MAX;
    let mut quiet = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut m = upd.borrow_mut();
                if let Some(t) = &m.transfer {
                    let p = t.progress("receiving", false);
                    quiet += 1;
                    // Unchanged progress is repeated every 2 s: a sender that lost a message
                    // (or started after us) learns what to resend.
                    if p.have != last_have || quiet >= 8 {
                        last_have = p.have;
                        quiet = 0;
                        let urgent = !p.missing.is_empty();
                        m.publish_progress(&p, urgent);
                    }
                }
                m.publish_state(false);
            }
            e = events.changed() => {
                if e.is_err() {
                    return;
                }
                upd.borrow_mut().state_changed();
            }
            _ = slow.tick() => upd.borrow_mut().state_changed(),
        }
    }
}
