//! The agent's recent events (the last 256, as Docker keeps), for `events --since` and for live
//! subscribers: `berth events` connections and the update session (which republishes the device's
//! state when a container changes).
//!
//! Each event is kept once, as the frame `events` sends (about 200 bytes in one allocation), and
//! numbered. A live subscriber remembers the number it wants next and is woken through a `watch`
//! of the newest number; one that falls more than 256 events behind skips those it missed, as a
//! lagging `broadcast` receiver did. That `broadcast` channel allocated its 256 slots up front
//! (51 KB) and kept a second copy of each event as a dozen small strings; without it the agent's
//! anonymous memory fell from 184 to 92 kB idle (232 to 144 kB with a broker), tokio's signal
//! driver included (daemon/signals.rs).

use std::collections::VecDeque;

use berth_proto::socket::{encode, Event, Response};
use tokio::sync::watch;

const KEEP: usize = 256;

pub struct EventLog {
    /// (number, time in seconds, frame), oldest first.
    recent: VecDeque<(u64, i64, Box<[u8]>)>,
    /// The number the next event gets; what live subscribers watch.
    next: watch::Sender<u64>,
}

impl Default for EventLog {
    fn default() -> EventLog {
        EventLog { recent: VecDeque::new(), next: watch::channel(0).0 }
    }
}

impl EventLog {
    pub fn push(&mut self, e: Event) {
        let secs = e.secs;
        let Ok(frame) = encode(&Response::Event(Box::new(e))) else { return };
        self.push_frame(secs, frame.into_boxed_slice());
    }

    fn push_frame(&mut self, secs: i64, frame: Box<[u8]>) {
        if self.recent.len() >= KEEP {
            self.recent.pop_front();
        }
        let n = *self.next.borrow();
        self.recent.push_back((n, secs, frame));
        // send_replace: the number moves on whether or not anyone is watching.
        self.next.send_replace(n + 1);
    }

    /// The kept events at or after `since` (seconds), as (time, frame).
    pub fn since(&self, since: i64) -> Vec<(i64, Box<[u8]>)> {
        self.recent.iter().filter(|(_, secs, _)| *secs >= since).map(|(_, secs, f)| (*secs, f.clone())).collect()
    }

    /// A live subscription: the number of the next event, and a receiver that changes when it
    /// comes. Take the recent events ([`EventLog::since`]) in the same borrow, so that none
    /// falls between the two.
    pub fn subscribe(&self) -> (u64, watch::Receiver<u64>) {
        (*self.next.borrow(), self.next.subscribe())
    }

    /// The frames of events numbered `from` and later that are still kept, and the number to ask
    /// for next.
    pub fn after(&self, from: u64) -> (Vec<Box<[u8]>>, u64) {
        let frames = self.recent.iter().filter(|(n, _, _)| *n >= from).map(|(_, _, f)| f.clone()).collect();
        (frames, *self.next.borrow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(i: u64) -> Box<[u8]> {
        i.to_le_bytes().to_vec().into_boxed_slice()
    }

    #[test]
    fn keeps_the_last_256_and_a_late_subscriber_skips_what_it_missed() {
        let mut log = EventLog::default();
        let (start, mut rx) = log.subscribe();
        assert_eq!(start, 0);
        assert!(!rx.has_changed().unwrap());
        for i in 0..300 {
            log.push_frame(i as i64, frame(i));
        }
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 300);
        // Events 0..44 were dropped: a subscriber that wanted them gets the 256 kept.
        let (frames, next) = log.after(start);
        assert_eq!(frames.len(), KEEP);
        assert_eq!(frames[0], frame(44));
        assert_eq!(next, 300);
        assert!(log.after(next).0.is_empty());
        // --since by time.
        let recent = log.since(298);
        assert_eq!(recent.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![298, 299]);
        assert!(log.since(300).is_empty());
    }

    #[test]
    fn a_subscriber_sees_exactly_the_events_after_it_subscribed() {
        let mut log = EventLog::default();
        log.push_frame(1, frame(1));
        let (from, _rx) = log.subscribe();
        log.push_frame(2, frame(2));
        log.push_frame(3, frame(3));
        let (frames, next) = log.after(from);
        assert_eq!(frames, vec![frame(2), frame(3)]);
        assert!(log.after(next).0.is_empty());
    }
}
