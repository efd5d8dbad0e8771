//! Which chunk to publish next, for all targets of one update at once. Pure bookkeeping (the
//! caller passes the time in), so the rules are tested without a broker:
//! - chunks go out in order, at most `window` beyond the smallest `next` of the targets still
//!   receiving (a slow board paces the stream instead of losing chunks in broker queues);
//! - the `missing` ranges a target reports are resent, and nothing else;
//! - no index is sent twice within `DEDUPE` (several targets, or successive progress messages,
//!   report the same gap while its resend is still on its way);
//! - a target whose count has not moved for `STALL` gets its `next` onward again: it may have
//!   restarted and lost the subscription's queue, or lost the last chunks (a gap at the end is
//!   not in `missing`, which covers only what lies below the highest index it has);
//! - a resend is skipped once every target receiving reports a `next` beyond it (chunks the
//!   client queued before a broker restart arrive after it, while the gap they fill is still
//!   queued for resending);
//! - while the broker is away no target can move: the stall clocks restart when it is back;
//! - nothing goes out before every target has said it is receiving (its first progress message
//!   comes once it has subscribed to the chunk topic; what is published before is lost for it),
//!   unless the caller stops waiting (`start`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use berth_proto::wire::Progress;

/// Long enough for a resend to cross a loaded broker and show in the target's next progress
/// (the device repeats its progress every 2 s): a shorter one sent ranges twice under load.
pub const DEDUPE: Duration = Duration::from_secs(5);
/// Longer than `DEDUPE`: a stalled target's resend must not be swallowed as a duplicate.
pub const STALL: Duration = Duration::from_secs(6);

/// How many chunks may be beyond the slowest target: about 16 MiB of them, which bounds the
/// sender's memory (they wait in the client's queue) and keeps loopback transfers near the
/// broker's own rate (progress comes every 250 ms: the window must cover that much streaming).
pub fn window_for(chunk_size: u32) -> u32 {
    // At most 500 in flight: mosquitto queues 1000 messages per client by default, and a
    // target's progress, resends and the next window must fit beside them.
    ((16u32 << 20) / chunk_size.max(1)).clamp(8, 500)
}

/// One past the highest chunk a report says the target holds. A device lists its gaps below
/// that index (`missing`), so it holds `have` plus their sizes below it; when the list was cut
/// at `MAX_RANGES` nothing is known beyond the first gap, and `next` is the answer.
fn held_below(p: &Progress, total: u32) -> u32 {
    if p.missing.len() >= berth_proto::wire::MAX_RANGES {
        return p.next;
    }
    let gaps: u64 = p.missing.iter().map(|&(a, b)| u64::from(b.saturating_sub(a)) + 1).sum();
    (u64::from(p.have) + gaps).min(u64::from(total)) as u32
}

#[derive(Debug, Clone)]
struct Target {
    next: u32,
    receiving: bool,
    /// Has reported progress at least once.
    ready: bool,
    have: u32,
    /// One past the highest chunk it holds, when its report says (see `held_below`); else `next`.
    seen: u32,
    /// The gaps below `seen` it reported last.
    missing: Vec<(u32, u32)>,
    /// When `have` last changed (or the target was last asked again).
    moved: Instant,
}

#[derive(Debug)]
pub struct Window {
    total: u32,
    window: u32,
    /// Every index below this has been sent at least once.
    cursor: u32,
    targets: HashMap<String, Target>,
    /// Inclusive ranges to resend, oldest request first.
    resend: VecDeque<(u32, u32)>,
    last_sent: HashMap<u32, Instant>,
    started: bool,
    pub sent: u64,
    pub resent: u64,
}

impl Window {
    pub fn new(total: u32, window: u32, targets: &[String], now: Instant) -> Window {
        let targets = targets
            .iter()
            .map(|t| (t.clone(), Target { next: 0, receiving: true, ready: false, have: 0, seen: 0, missing: Vec::new(), moved: now }))
            .collect();
        Window {
            total,
            window: window.max(1),
            cursor: 0,
            targets,
            resend: VecDeque::new(),
            last_sent: HashMap::new(),
            started: false,
            sent: 0,
            resent: 0,
        }
    }

    /// The smallest `next` among targets still receiving; None when none is.
    fn slowest(&self) -> Option<u32> {
        self.targets.values().filter(|t| t.receiving).map(|t| t.next).min()
    }

    #[cfg(test)]
    pub fn receiving(&self) -> bool {
        self.targets.values().any(|t| t.receiving)
    }

    /// Streams without waiting for the targets that have not reported yet.
    pub fn start(&mut self) {
        self.started = true;
    }

    /// A target that is past receiving (or gave up: refused, failed, timed out) paces nothing.
    pub fn finish(&mut self, target: &str) {
        if let Some(t) = self.targets.get_mut(target) {
            t.receiving = false;
        }
    }

    pub fn progress(&mut self, target: &str, p: &Progress, now: Instant) {
        let total = self.total;
        let cursor = self.cursor;
        let Some(t) = self.targets.get_mut(target) else { return };
        if p.have != t.have || !t.ready {
            t.moved = now;
            t.have = p.have;
        }
        t.ready = true;
        t.next = p.next.min(total);
        t.seen = held_below(p, total).max(t.next);
        t.missing.clone_from(&p.missing);
        if p.phase != "receiving" || p.next >= total {
            t.receiving = false;
            return;
        }
        t.receiving = true;
        for &(a, b) in &p.missing {
            // What was never sent goes out in order anyway; a bogus range is cut to the update.
            let b = b.min(cursor.saturating_sub(1)).min(total.saturating_sub(1));
            if a <= b && a < cursor {
                self.resend.push_back((a, b));
            }
        }
        // Bounded whatever a device says: the oldest requests give way.
        while self.resend.len() > 4096 {
            self.resend.pop_front();
        }
    }

    /// The broker connection came back: nothing could arrive while it was away, so each target
    /// gets a whole `STALL` to report again before its tail is resent.
    pub fn reconnected(&mut self, now: Instant) {
        for t in self.targets.values_mut() {
            t.moved = now;
        }
    }

    /// Whether every target still receiving is known to hold chunk `i`.
    fn all_have(&self, i: u32) -> bool {
        self.targets
            .values()
            .filter(|t| t.receiving)
            .all(|t| t.ready && (i < t.next || (i < t.seen && !t.missing.iter().any(|&(a, b)| a <= i && i <= b))))
    }

    /// Targets whose count has not moved for `STALL` while receiving get what lies beyond the
    /// highest chunk they hold (up to what was sent) again: the gaps below it are in `missing`,
    /// which each report queues anyway. Each is asked again only after another `STALL`.
    pub fn tick(&mut self, now: Instant) {
        let cursor = self.cursor;
        for t in self.targets.values_mut() {
            if t.receiving && now.duration_since(t.moved) >= STALL {
                t.moved = now;
                if t.seen < cursor {
                    self.resend.push_back((t.seen, cursor - 1));
                }
            }
        }
        self.last_sent.retain(|_, at| now.duration_since(*at) < DEDUPE);
    }

    /// The next chunk to publish, if any may go now. Counts it as sent.
    pub fn next_chunk(&mut self, now: Instant) -> Option<u32> {
        let slowest = self.slowest()?;
        if !self.started {
            if self.targets.values().any(|t| t.receiving && !t.ready) {
                return None;
            }
            self.started = true;
        }
        while let Some((a, b)) = self.resend.front_mut() {
            let i = *a;
            if *a >= *b {
                self.resend.pop_front();
            } else {
                *a += 1;
            }
            if self.last_sent.get(&i).is_some_and(|at| now.duration_since(*at) < DEDUPE) || self.all_have(i) {
                continue;
            }
            self.last_sent.insert(i, now);
            self.resent += 1;
            return Some(i);
        }
        if self.cursor < self.total && self.cursor < slowest.saturating_add(self.window) {
            let i = self.cursor;
            self.cursor += 1;
            self.last_sent.insert(i, now);
            self.sent += 1;
            return Some(i);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(next: u32, missing: &[(u32, u32)], phase: &str) -> Progress {
        Progress { id: "x".into(), have: next, total: 100, next, missing: missing.to_vec(), phase: phase.into() }
    }

    fn started(total: u32, window: u32, targets: &[&str], now: Instant) -> Window {
        let names: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        let mut w = Window::new(total, window, &names, now);
        for t in targets {
            w.progress(t, &prog(0, &[], "receiving"), now);
        }
        w
    }

    fn drain(w: &mut Window, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| w.next_chunk(now)).collect()
    }

    #[test]
    fn window_follows_the_slowest_target() {
        let t0 = Instant::now();
        let mut w = started(100, 10, &["a", "b"], t0);
        assert_eq!(drain(&mut w, t0), (0..10).collect::<Vec<_>>());
        w.progress("a", &prog(10, &[], "receiving"), t0);
        assert!(drain(&mut w, t0).is_empty(), "b still at 0");
        w.progress("b", &prog(4, &[], "receiving"), t0);
        assert_eq!(drain(&mut w, t0), (10..14).collect::<Vec<_>>());
        // b is done: only a paces the stream now.
        w.progress("b", &prog(100, &[], "verifying"), t0);
        assert_eq!(drain(&mut w, t0), (14..20).collect::<Vec<_>>());
        w.finish("a");
        assert!(!w.receiving());
        assert!(drain(&mut w, t0).is_empty());
        assert_eq!((w.sent, w.resent), (20, 0));
    }

    #[test]
    fn resends_exactly_the_missing_ranges_once_per_dedupe_period() {
        let t0 = Instant::now();
        let mut w = started(100, 20, &["a", "b"], t0);
        drain(&mut w, t0);
        let t1 = t0 + DEDUPE + Duration::from_secs(1);
        w.progress("a", &prog(3, &[(3, 4), (7, 7)], "receiving"), t1);
        w.progress("b", &prog(3, &[(3, 3)], "receiving"), t1);
        let got = drain(&mut w, t1);
        assert_eq!(&got[..3], [3, 4, 7], "the gaps first, 3 once although both lack it");
        assert_eq!(&got[3..], [20, 21, 22], "then the window moves on from next = 3");
        // The same report 2 s later (the device repeats itself): nothing again yet; after DEDUPE: resent.
        w.progress("a", &prog(3, &[(3, 4)], "receiving"), t1 + Duration::from_secs(2));
        assert!(drain(&mut w, t1 + Duration::from_secs(2)).is_empty());
        let t2 = t1 + DEDUPE + Duration::from_millis(100);
        w.progress("a", &prog(3, &[(3, 4)], "receiving"), t2);
        assert_eq!(drain(&mut w, t2), [3, 4]);
        assert_eq!(w.resent, 5);
    }

    #[test]
    fn ranges_beyond_what_was_sent_are_ignored() {
        let t0 = Instant::now();
        let mut w = started(100, 5, &["a"], t0);
        drain(&mut w, t0);
        let t1 = t0 + DEDUPE + Duration::from_secs(1);
        w.progress("a", &prog(2, &[(2, 99), (50, 60), (u32::MAX, u32::MAX)], "receiving"), t1);
        assert_eq!(drain(&mut w, t1), [2, 3, 4, 5, 6]);
        assert_eq!(w.resent, 3);
    }

    #[test]
    fn a_silent_target_gets_its_next_onward_again() {
        let t0 = Instant::now();
        let mut w = started(100, 10, &["a"], t0);
        drain(&mut w, t0);
        w.progress("a", &prog(6, &[], "receiving"), t0);
        assert_eq!(drain(&mut w, t0), (10..16).collect::<Vec<_>>());
        w.tick(t0 + Duration::from_secs(1));
        assert!(drain(&mut w, t0 + Duration::from_secs(1)).is_empty());
        let t2 = t0 + STALL + Duration::from_millis(1);
        w.tick(t2);
        assert_eq!(drain(&mut w, t2), (6..16).collect::<Vec<_>>());
        // Not again before another STALL.
        w.tick(t2 + Duration::from_secs(1));
        assert!(drain(&mut w, t2 + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn a_resend_is_dropped_once_the_targets_got_the_chunk_another_way() {
        let t0 = Instant::now();
        let mut w = started(100, 20, &["a", "b"], t0);
        drain(&mut w, t0);
        // Both stall at 5 (the broker restarted); 5..19 is queued again for both.
        w.progress("a", &prog(5, &[], "receiving"), t0);
        w.progress("b", &prog(5, &[], "receiving"), t0);
        let t1 = t0 + STALL + Duration::from_millis(1);
        w.tick(t1);
        // The client's own queue delivered 5..11 after the reconnection, to both.
        w.progress("a", &prog(12, &[], "receiving"), t1);
        w.progress("b", &prog(9, &[], "receiving"), t1);
        assert_eq!(&drain(&mut w, t1)[..11], (9..20).collect::<Vec<_>>(), "b still lacks 9..11, nobody 5..8");
        assert_eq!(w.resent, 11);
    }

    #[test]
    fn a_stalled_target_gets_only_what_lies_beyond_its_highest_chunk() {
        let t0 = Instant::now();
        let mut w = started(100, 40, &["a"], t0);
        drain(&mut w, t0);
        // It holds 0..9 and 20..29 (have 20): 10..19 is a gap, 30..39 never came.
        let mut p = prog(10, &[(10, 19)], "receiving");
        p.have = 20;
        w.progress("a", &p, t0);
        assert_eq!(drain(&mut w, t0), (40..50).collect::<Vec<_>>(), "the gap went out just now: not again");
        let t1 = t0 + STALL + Duration::from_millis(1);
        w.progress("a", &p, t1 - Duration::from_secs(1));
        w.tick(t1);
        let got = drain(&mut w, t1);
        assert!(got.iter().all(|i| !(20..30).contains(i)), "20..29 is held: {got:?}");
        assert_eq!(got, (10..20).chain(30..50).collect::<Vec<_>>(), "the gap (reported again) and the tail");
    }

    #[test]
    fn a_cut_gap_list_says_nothing_beyond_next() {
        let ranges: Vec<(u32, u32)> = (0..64).map(|k| (10 + 2 * k, 10 + 2 * k)).collect();
        let mut p = prog(10, &ranges, "receiving");
        p.have = 500;
        assert_eq!(held_below(&p, 1000), 10);
        p.missing.truncate(2);
        assert_eq!(held_below(&p, 1000), 502);
        assert_eq!(held_below(&p, 300), 300, "never past the update");
    }

    #[test]
    fn a_reconnection_restarts_the_stall_clock() {
        let t0 = Instant::now();
        let mut w = started(100, 10, &["a"], t0);
        drain(&mut w, t0);
        w.progress("a", &prog(6, &[], "receiving"), t0);
        drain(&mut w, t0);
        // The broker was away 5 s; back at t1. No resend until a STALL after t1.
        let t1 = t0 + Duration::from_secs(5);
        w.reconnected(t1);
        w.tick(t1 + Duration::from_secs(2));
        assert!(drain(&mut w, t1 + Duration::from_secs(2)).is_empty());
        let t2 = t1 + STALL + Duration::from_millis(1);
        w.tick(t2);
        assert_eq!(drain(&mut w, t2), (6..16).collect::<Vec<_>>());
    }

    #[test]
    fn lost_last_chunks_are_sent_again() {
        let t0 = Instant::now();
        let mut w = started(10, 20, &["a"], t0);
        assert_eq!(drain(&mut w, t0).len(), 10);
        // 7..9 never arrived: nothing is "missing" below the highest index the device has, and
        // it keeps repeating the same progress.
        let mut p = prog(7, &[], "receiving");
        p.have = 7;
        for s in 1..=7 {
            let t = t0 + Duration::from_secs(s);
            w.progress("a", &p, t);
            w.tick(t);
        }
        assert_eq!(drain(&mut w, t0 + Duration::from_secs(7)), [7, 8, 9]);
    }

    #[test]
    fn waits_for_every_target_to_subscribe() {
        let t0 = Instant::now();
        let mut w = Window::new(10, 4, &["a".into(), "b".into()], t0);
        assert!(w.next_chunk(t0).is_none());
        w.progress("a", &prog(0, &[], "receiving"), t0);
        assert!(w.next_chunk(t0).is_none(), "b has not subscribed yet");
        w.start();
        assert_eq!(drain(&mut w, t0), [0, 1, 2, 3]);
        let mut w = Window::new(10, 4, &["a".into(), "b".into()], t0);
        w.progress("a", &prog(0, &[], "receiving"), t0);
        w.finish("b");
        assert_eq!(drain(&mut w, t0), [0, 1, 2, 3], "a refused target is not waited for");
    }

    #[test]
    fn windows_are_about_16_mib() {
        assert_eq!(window_for(96 * 1024), 170);
        assert_eq!(window_for(1 << 20), 16);
        assert_eq!(window_for(16 * 1024), 500, "under mosquitto's default queue of 1000");
        assert_eq!(window_for(1), 500);
        assert_eq!(window_for(0), 500);
    }
}
