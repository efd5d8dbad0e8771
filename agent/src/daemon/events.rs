//! `berth events`: the recent events asked for, then live ones, on a connection of their own.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::Shared;

/// `events`: the recent ones asked for, then live ones, until `until` or the client leaves.
pub(super) async fn stream(stream: &mut UnixStream, sup: &Shared, since: Option<i64>, until: Option<i64>) {
    // The recent events and the live subscription in one borrow: nothing falls between them.
    let (past, (mut next, mut rx)) = {
        let s = sup.borrow();
        (since.map(|t| s.events.since(t)).unwrap_or_default(), s.events.subscribe())
    };
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
        let changed = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, rx.changed()).await.ok(),
                None => Some(rx.changed().await),
            }
        };
        // Err: the agent is going away; None: `until` has come.
        let Some(Ok(())) = changed.await else { return };
        let (frames, n) = sup.borrow().events.after(next);
        next = n;
        for frame in frames {
            if stream.write_all(&frame).await.is_err() {
                return;
            }
        }
    }
}
