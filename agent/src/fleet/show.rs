//! What `berth fleet` prints: the status table's cells, and push's progress, one line per device
//! redrawn in place on a terminal, plain lines otherwise (at each 10 % and each phase change:
//! a log or a UART must not fill with redraws).

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Device;
use crate::term::output::human_size;

pub fn short_image(s: &str) -> String {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    hex.chars().take(12).collect()
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(3)).collect();
    t.push_str("...");
    t
}

/// `name=image` per deployment (the image by the name the container was run with, else its
/// short id); the containers when nothing was deployed by update yet.
pub fn containers(d: &Device) -> String {
    let Some(state) = &d.state else { return String::new() };
    let list = |k: &str| state.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
    let containers = list("containers");
    // A deployment names its container (by name or id); the image is shown by the reference
    // it was run with.
    let image_of = |wanted: &str| {
        let is = |c: &&Value, k: &str| c.get(k).and_then(Value::as_str) == Some(wanted);
        containers.iter().find(|c| is(c, "name") || is(c, "id")).and_then(|c| c.get("image")).and_then(Value::as_str)
    };
    let deployments = list("deployments");
    let pairs: Vec<String> = if deployments.is_empty() {
        containers
            .iter()
            .filter_map(|c| Some(format!("{}={}", c.get("name")?.as_str()?, c.get("image").and_then(Value::as_str).unwrap_or("?"))))
            .collect()
    } else {
        deployments
            .iter()
            .filter_map(|dep| {
                let name = dep.get("name")?.as_str()?;
                if dep.get("app").and_then(Value::as_bool) == Some(true) {
                    return Some(app_summary(name, dep, &image_of));
                }
                let container = dep.get("container").and_then(Value::as_str).unwrap_or(name);
                let image = image_of(container)
                    .or_else(|| image_of(name))
                    .map(str::to_string)
                    .or_else(|| dep.get("image_id").and_then(Value::as_str).map(short_image))
                    .unwrap_or_else(|| "?".into());
                Some(format!("{name}={image}"))
            })
            .collect()
    };
    pairs.join(", ")
}

/// An application: `NAME@SEQ[SERVICE=IMAGE STATE (HEALTH), ...]`, services in start order.
fn app_summary<'a>(name: &str, dep: &Value, image_of: &dyn Fn(&str) -> Option<&'a str>) -> String {
    let services = dep.get("services").and_then(Value::as_array).cloned().unwrap_or_default();
    let parts: Vec<String> = services
        .iter()
        .map(|svc| {
            let get = |k: &str| svc.get(k).and_then(Value::as_str).unwrap_or("?");
            let image = image_of(get("name")).map(str::to_string).unwrap_or_else(|| short_image(get("image_id")));
            let health = svc.get("health").and_then(Value::as_str).map(|h| format!(" ({h})")).unwrap_or_default();
            format!("{}={image} {}{health}", get("service"), get("status"))
        })
        .collect();
    let seq = dep.get("seq").and_then(Value::as_u64).unwrap_or(0);
    format!("{name}@{seq}[{}]", parts.join(", "))
}

/// `committed`, `rolled_back: REASON` (cut to `max` characters), or `-`.
pub fn last_result(d: &Device, max: usize) -> String {
    let Some(r) = d.state.as_ref().and_then(|s| s.get("last_result")).filter(|v| v.is_object()) else { return "-".into() };
    let result = r.get("result").and_then(Value::as_str).unwrap_or("?");
    let reason = r.get("reason").and_then(Value::as_str).unwrap_or("");
    let seq = r.get("seq").and_then(Value::as_u64).map(|s| format!(" (seq {s})")).unwrap_or_default();
    let text = if reason.is_empty() { format!("{result}{seq}") } else { format!("{result}{seq}: {}", reason.replace('\n', " ")) };
    truncate(&text, max)
}

#[derive(Debug, Clone)]
struct Row {
    device: String,
    phase: String,
    have: u32,
    /// When the first chunk was reported and how many the device had then (for the rate).
    first: Option<(Instant, u32)>,
    /// When it stopped receiving: the rate shown stays the transfer's.
    until: Option<Instant>,
    decile: u32,
    /// A pull from a registry (`push --pull`): KiB so far and in all, as the device reports.
    pull: (u32, u32),
}

/// Push's progress for all targets of one update.
pub struct Board {
    tty: bool,
    rows: Vec<Row>,
    total: u32,
    chunk: u64,
    size: u64,
    drawn: usize,
    last_draw: Option<Instant>,
    width: usize,
}

impl Board {
    pub fn new(targets: &[String], total: u32, chunk: u32, size: u64, tty: bool) -> Board {
        let rows = targets
            .iter()
            .map(|t| Row { device: t.clone(), phase: "waiting".into(), have: 0, first: None, until: None, decile: 0, pull: (0, 0) })
            .collect();
        let width = targets.iter().map(|t| t.chars().count()).max().unwrap_or(0);
        Board { tty, rows, total, chunk: u64::from(chunk), size, drawn: 0, last_draw: None, width }
    }

    fn bytes(&self, chunks: u32) -> u64 {
        (u64::from(chunks) * self.chunk).min(self.size)
    }

    /// A device reported `have` chunks in `phase`; plain lines for what is worth a line.
    pub fn progress(&mut self, device: &str, have: u32, phase: &str, now: Instant, out: &mut impl Write) {
        let total = self.total.max(1);
        let Some(i) = self.rows.iter().position(|r| r.device == device) else { return };
        let before = self.rows[i].clone();
        let r = &mut self.rows[i];
        r.have = have.min(total);
        if r.first.is_none() && phase == "receiving" {
            r.first = Some((now, r.have));
        }
        if phase != "receiving" && r.first.is_some() && r.until.is_none() {
            r.until = Some(now);
        }
        r.phase = phase.to_string();
        if self.tty {
            return;
        }
        let decile = r.have * 10 / total;
        if phase != before.phase || (phase == "receiving" && decile > before.decile) {
            r.decile = decile;
            let _ = writeln!(out, "{}", self.plain(i, now));
        }
    }

    /// A device pulling from its registry has `have` of `total` KiB; a line at each 10 %.
    pub fn pulling(&mut self, device: &str, have: u32, total: u32, out: &mut impl Write) {
        let Some(r) = self.rows.iter_mut().find(|r| r.device == device) else { return };
        let before = (r.phase.clone(), r.decile);
        r.pull = (have.min(total), total);
        r.phase = "pulling".into();
        let decile = if total == 0 { 0 } else { (u64::from(r.pull.0) * 10 / u64::from(total)) as u32 };
        r.decile = decile;
        if !self.tty && (before.0 != "pulling" || decile > before.1) {
            let (h, t) = (u64::from(r.pull.0) << 10, u64::from(total) << 10);
            let _ = writeln!(out, "{}: pulling {}% ({} of {})", r.device, u64::from(decile) * 10, human_size(h), human_size(t));
        }
    }

    /// A phase with no count: a result, offline, ...
    pub fn phase(&mut self, device: &str, phase: &str, now: Instant, out: &mut impl Write) {
        let have = self.rows.iter().find(|r| r.device == device).map_or(0, |r| r.have);
        self.progress(device, have, phase, now, out);
    }

    fn rate(&self, r: &Row, now: Instant) -> Option<f64> {
        let (t0, h0) = r.first?;
        let dt = r.until.unwrap_or(now).duration_since(t0).as_secs_f64();
        (dt >= 0.5 && r.have > h0).then(|| (self.bytes(r.have) - self.bytes(h0)) as f64 / dt)
    }

    fn plain(&self, i: usize, now: Instant) -> String {
        let r = &self.rows[i];
        let pct = u64::from(r.have) * 100 / u64::from(self.total.max(1));
        match r.phase.as_str() {
            "receiving" => {
                let rate = self.rate(r, now).map(|b| format!(", {}/s", human_size(b as u64))).unwrap_or_default();
                format!("{}: receiving {pct}% ({} of {}{rate})", r.device, human_size(self.bytes(r.have)), human_size(self.size))
            }
            p => format!("{}: {p}", r.device),
        }
    }

    /// The terminal line of one device: name, bar, percentage, rate, phase.
    fn line(&self, r: &Row, now: Instant) -> String {
        if r.phase == "pulling" {
            let (h, t) = (u64::from(r.pull.0), u64::from(r.pull.1.max(1)));
            let filled = (h * 30 / t) as usize;
            let bar = if filled >= 30 { "=".repeat(30) } else { format!("{}>{}", "=".repeat(filled), " ".repeat(29 - filled)) };
            return format!("{:w$}  [{bar}] {:>3}%  {:>9}  pulling", r.device, h * 100 / t, "", w = self.width);
        }
        let total = u64::from(self.total.max(1));
        let filled = (u64::from(r.have) * 30 / total) as usize;
        let bar = if filled >= 30 { "=".repeat(30) } else { format!("{}>{}", "=".repeat(filled), " ".repeat(29 - filled)) };
        let rate = self.rate(r, now).map(|b| format!("{}/s", human_size(b as u64))).unwrap_or_default();
        format!("{:w$}  [{bar}] {:>3}%  {:>9}  {}", r.device, u64::from(r.have) * 100 / total, rate, r.phase, w = self.width)
    }

    /// Redraws every line in place (terminal only), at most ten times a second unless `force`.
    pub fn draw(&mut self, now: Instant, force: bool, out: &mut impl Write) {
        if !self.tty || (!force && self.last_draw.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))) {
            return;
        }
        self.last_draw = Some(now);
        let mut s = String::new();
        if self.drawn > 0 {
            s.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for r in &self.rows {
            s.push('\r');
            s.push_str(&self.line(r, now));
            s.push_str("\x1b[K\n");
        }
        self.drawn = self.rows.len();
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(tty: bool) -> Board {
        Board::new(&["dev-1".into(), "d2".into()], 100, 1000, 99_500, tty)
    }

    #[test]
    fn a_pull_is_shown_by_its_own_bytes_a_line_at_each_tenth() {
        let mut b = board(false);
        let mut out = Vec::new();
        b.pulling("d2", 0, 2048, &mut out);
        b.pulling("d2", 100, 2048, &mut out);
        b.pulling("d2", 1100, 2048, &mut out);
        b.pulling("d2", 2048, 2048, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "d2: pulling 0% (0B of 2.1MB)\nd2: pulling 50% (1.13MB of 2.1MB)\nd2: pulling 100% (2.1MB of 2.1MB)\n");
        let tty = board(true);
        let mut t = tty;
        t.pulling("d2", 1024, 2048, &mut Vec::new());
        assert!(t.line(&t.rows[1].clone(), Instant::now()).contains(" 50%"), "{}", t.line(&t.rows[1].clone(), Instant::now()));
    }

    #[test]
    fn plain_lines_at_each_tenth_and_phase_change() {
        let mut b = board(false);
        let t0 = Instant::now();
        let mut out = Vec::new();
        b.progress("dev-1", 0, "receiving", t0, &mut out);
        b.progress("dev-1", 5, "receiving", t0, &mut out);
        b.progress("dev-1", 12, "receiving", t0 + Duration::from_secs(1), &mut out);
        b.progress("dev-1", 15, "receiving", t0 + Duration::from_secs(1), &mut out);
        b.progress("dev-1", 100, "receiving", t0 + Duration::from_secs(2), &mut out);
        b.progress("dev-1", 100, "verifying", t0 + Duration::from_secs(2), &mut out);
        b.phase("dev-1", "committed", t0, &mut out);
        b.progress("nobody", 1, "receiving", t0, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "dev-1: receiving 0% (0B of 99.5kB)\n\
             dev-1: receiving 12% (12kB of 99.5kB, 12kB/s)\n\
             dev-1: receiving 100% (99.5kB of 99.5kB, 49.8kB/s)\n\
             dev-1: verifying\n\
             dev-1: committed\n"
        );
    }

    #[test]
    fn terminal_lines_redraw_in_place() {
        let mut b = board(true);
        let t0 = Instant::now();
        let mut out = Vec::new();
        b.progress("d2", 50, "receiving", t0, &mut out);
        assert!(out.is_empty(), "a terminal gets no plain lines");
        b.draw(t0, true, &mut out);
        b.draw(t0, false, &mut out);
        b.draw(t0 + Duration::from_millis(200), false, &mut out);
        let text = String::from_utf8(out).unwrap();
        let frames: Vec<&str> = text.split("\x1b[2A").collect();
        assert_eq!(frames.len(), 2, "two frames, the second moves up over the first: {text:?}");
        assert!(frames[0].contains("\rdev-1  [>                             ]   0%             waiting\x1b[K\n"), "{text:?}");
        assert!(frames[0].contains("\rd2     [===============>              ]  50%             receiving\x1b[K\n"), "{text:?}");
    }

    #[test]
    fn status_cells() {
        let d = Device {
            online: Some(true),
            state: serde_json::from_str(
                r#"{"containers": [{"name": "app", "image": "app:2"}, {"name": "app.prev-3", "image": "app:1"}],
                    "deployments": [{"name": "app", "image_id": "sha256:0123456789abcdef"}, {"name": "db", "image_id": "sha256:fedcba9876543210"}],
                    "last_result": {"result": "rolled_back", "seq": 4, "reason": "exited with code 1\nat once"}}"#,
            )
            .ok(),
        };
        assert_eq!(containers(&d), "app=app:2, db=fedcba987654");
        assert_eq!(last_result(&d, 100), "rolled_back (seq 4): exited with code 1 at once");
        assert_eq!(last_result(&d, 20), "rolled_back (seq ...");
        assert_eq!(last_result(&Device::default(), 20), "-");
        let bare = Device { online: None, state: serde_json::from_str(r#"{"containers": [{"name": "x", "image": "busybox"}]}"#).ok() };
        assert_eq!(containers(&bare), "x=busybox");
    }
}
