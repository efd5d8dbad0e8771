//! `berth events`: the recent events asked for, then live ones, on a connection of their own.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use berth_proto::socket::{self as proto, Response};

use super::Shared;

/// `events`: the recent ones asked for, then live ones, until `until` or the client leaves.
pub(super) async fn stream(stream: &mut UnixStream, sup: &Shared, since: Option<i64>, until: Option<i64>) {
    let mut rx = sup.borrow().event_tx.subscribe();
    let past = since.map(|s| sup.borrow().events_since(s)).unwrap_or_default();
    let send = |e: proto::Event| proto::encode(&Response::Event(Box::new(e)));
    for (secs, frame) in past {
        if until.is_some_and(|u| secs > u) {
            return;
        }
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
    if until.is_some_and(|u| u <= berth_runtime::timefmt::now()) {
        return;
    }
    let deadline = until.map(|u| tokio::time::Instant::now() + Duration::from_secs((u - berth_runtime::timefmt::now()).max(0) as u64));
    loop {
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok(),
                None => Some(rx.recv().await),
            }
        };
        match next.await {
            Some(Ok(e)) => {
                let Ok(out) = send(e) else { return };
                if stream.write_all(&out).await.is_err() {
                    return;
                }
            }
            Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            _ => return,
        }
    }
}
