//! `berth fleet push`: everything is checked locally first (the tarball, the run arguments, the
//! key), then: wait for every target online, sign one manifest for them all, stream the chunks
//! once on the update's topic (pread, so memory stays bounded whatever the size), resend what
//! targets report missing, and wait for each target's result.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::conn::{self, Conn};
use super::show::Board;
use super::window::{window_for, Window};
use super::{
    absorb, block_on, fail, load_key, number, report, secs, signed, split_topic, targets, usage, wait_ready, watch, Device, Opts, PUSH,
};
use crate::term::output::{human_size, is_tty};
use berth_proto::args::Matches;
use berth_proto::error::CliError;
use berth_proto::wire::{App, Chunk, ImageRef, Kind, Manifest, Outcome, Progress, DEFAULT_CHUNK, MAX_CHUNK, MAX_CHUNKS, VERSION};
use berth_runtime::image::reference::familiar;

/// How long retained `state` messages are collected to find a group's devices.
const GROUP_WAIT: Duration = Duration::from_secs(2);
/// The group's retained states are still arriving while one came less than this ago.
const GROUP_QUIET: Duration = Duration::from_millis(500);
const GROUP_WAIT_MAX: Duration = Duration::from_secs(30);
/// Streaming starts when every target has reported that it receives, or after this.
const START_WAIT: Duration = Duration::from_secs(10);
/// After a target leaves `receiving` it reports nothing until its result: allow its health
/// window and this much for load and start.
const APPLY_SLACK: Duration = Duration::from_secs(120);

/// The run arguments of `--run`, checked with `berth run`'s own parser; returns them as words
/// and the container name.
pub fn check_run(line: &str) -> Result<(Vec<String>, String), String> {
    let words = berth_proto::words::shell_words(line).map_err(|e| format!("--run: {e}"))?;
    let o = berth_proto::run::parse_run_words(&words).map_err(|e| format!("--run: {e}"))?;
    let Some(name) = o.name.clone() else {
        return Err("--run needs --name NAME: the update replaces the container of that name".into());
    };
    if !berth_proto::names::valid_name(&name) {
        return Err(format!("--run: invalid container name {name:?}"));
    }
    for (set, flag) in [(o.auto_remove, "--rm"), (o.interactive, "-i"), (o.tty, "-t")] {
        if set {
            return Err(format!("--run must not use {flag}: an update's container runs detached and is kept for rollback"));
        }
    }
    Ok((words, name))
}

/// A tar header (ustar magic or a valid header checksum), or a compressed tarball as `berth
/// load` takes it. Only the start is read: the device checks the rest.
pub fn looks_like_tarball(head: &[u8]) -> bool {
    let compressed: [&[u8]; 4] = [b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd"];
    if compressed.iter().any(|m| head.starts_with(m)) {
        return true;
    }
    if head.len() < 512 {
        return false;
    }
    if &head[257..262] == b"ustar" {
        return true;
    }
    // Old (v7) tar: the checksum field is the sum of the header with that field as spaces.
    let field = String::from_utf8_lossy(&head[148..156]);
    let Ok(want) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8) else { return false };
    let sum: u32 = head[..512].iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
    sum == want && head[0] != 0
}

fn open_tarball(path: &Path) -> Result<(File, u64), CliError> {
    let what = path.display();
    let mut f = File::open(path).map_err(|e| fail(format!("open {what}: {e}")))?;
    let meta = f.metadata().map_err(|e| fail(format!("stat {what}: {e}")))?;
    if !meta.is_file() {
        return Err(fail(format!("{what} is not a regular file")));
    }
    if meta.len() == 0 {
        return Err(fail(format!("{what} is empty")));
    }
    let mut head = Vec::with_capacity(512);
    (&mut f).take(512).read_to_end(&mut head).map_err(|e| fail(format!("read {what}: {e}")))?;
    if !looks_like_tarball(&head) {
        return Err(fail(format!("{what} is not a tar archive (make one with 'berth save' or 'docker save')")));
    }
    Ok((f, meta.len()))
}

/// A device loads the tarball, then runs the `--run` image from its store: a tarball without
/// that image would go to every target, be loaded and fail there (and stay on their flash until
/// it is removed). So it is refused here, before anything is sent.
fn check_holds(file: &Path, run: &[String]) -> Result<(), CliError> {
    let image = berth_proto::run::parse_run_words(run).map_err(|e| fail(format!("--run: {e}")))?.image;
    let listed = berth_runtime::image::delta::listed_images(file).map_err(|e| fail(format!("read the tarball: {e}")))?;
    // An OCI archive names its images in its index: the devices check those.
    let Some(listed) = listed else { return Ok(()) };
    if listed.iter().any(|i| i.named(&image) != Some(false)) {
        return Ok(());
    }
    let held: Vec<&str> = listed.iter().map(|i| i.tags.first().map_or(i.id.short(), |t| familiar(t))).collect();
    Err(fail(format!(
        "{} holds no image {image} (it holds {}): --run names the image the devices start",
        file.display(),
        if held.is_empty() { "none".to_string() } else { held.join(", ") }
    )))
}

fn sha256_file(f: &File, size: u64) -> Result<String, CliError> {
    let mut h = berth_runtime::digest::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        let n = f.read_at(&mut buf, off).map_err(|e| fail(format!("read the tarball: {e}")))?;
        if n == 0 {
            return Err(fail("the tarball shrank while it was read"));
        }
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(h.finish().hex().to_string())
}

pub struct Deploy {
    pub id: String,
    pub seq: u64,
    pub targets: Vec<String>,
    pub name: String,
    pub image: Option<ImageRef>,
    /// `--pull REF@sha256:...`: the devices pull this instead of receiving chunks.
    pub pull: Option<String>,
    pub run: Vec<String>,
    pub health_window: u32,
    pub keep: u32,
    pub created: i64,
    pub app: Option<App>,
}

pub fn deploy_manifest(d: Deploy) -> Manifest {
    Manifest {
        version: VERSION,
        id: d.id,
        seq: d.seq,
        kind: Kind::Deploy,
        created: d.created,
        targets: d.targets,
        groups: vec![],
        name: d.name,
        image: d.image,
        pull: d.pull,
        run: d.run,
        health_window: d.health_window,
        keep: d.keep,
        app: d.app,
    }
}

/// `--app FILE`: the application's name and spec (the compose reader is the operator's).
#[cfg(feature = "compose")]
fn app_spec(file: &str) -> Result<(String, App), String> {
    super::app::spec(Path::new(file))
}

#[cfg(not(feature = "compose"))]
fn app_spec(_file: &str) -> Result<(String, App), String> {
    Err("this berth was built without compose support: --app is not available".into())
}

pub fn push(o: &Opts, m: &Matches) -> Result<i32, CliError> {
    let path = PUSH.path;
    let (run, name, app) = match (m.value("run"), m.value("app")) {
        (Some(_), Some(_)) => return Err(usage(path, "give --run (one container) or --app (an application), not both")),
        (None, None) => {
            return Err(usage(path, "--run 'RUN ARGS' is required (e.g. --run '--name app app:2'), or --app compose.yaml"));
        }
        (Some(line), None) => {
            let (run, name) = check_run(line).map_err(|e| usage(path, e))?;
            (run, name, None)
        }
        (None, Some(f)) => {
            let (name, app) = app_spec(f).map_err(|e| fail(format!("--app {f}: {e}")))?;
            (Vec::new(), name, Some(app))
        }
    };
    let pull = m.value("pull").map(str::to_string);
    if app.is_some() && pull.is_some() {
        return Err(usage(path, "--pull is for one container: an application's images come in FILE.tar or are on the devices"));
    }
    let args = m.args();
    if args.len() > 1 && app.is_none() {
        return Err(usage(path, "one tarball per push; several are for --app (the images of an application)"));
    }
    // Several tarballs for an application go as one (the update carries one image archive).
    let merged = match args {
        [_, _, ..] => {
            let tmp = Removed(std::env::temp_dir().join(format!("berth-app-{}.tar", conn::random_id())));
            let srcs: Vec<&Path> = args.iter().map(Path::new).collect();
            let size = berth_runtime::image::delta::merge(&srcs, &tmp.0).map_err(|e| fail(format!("merge the image tarballs: {e}")))?;
            println!("images: {} tarballs merged into one of {}", srcs.len(), human_size(size));
            Some(tmp)
        }
        _ => None,
    };
    let first = merged.as_ref().and_then(|t| t.0.to_str()).or(args.first().map(String::as_str));
    let file = match (&pull, first) {
        (None, None) if app.is_some() => None,
        (Some(_), Some(_)) => return Err(usage(path, "give a tarball or --pull REF@sha256:DIGEST, not both")),
        (None, None) => return Err(usage(path, "give the image: a 'docker save' tarball, or --pull REF@sha256:DIGEST")),
        (None, Some(f)) => Some(Path::new(f)),
        (Some(r), None) => {
            check_pull(r, &run).map_err(|e| usage(path, e))?;
            None
        }
    };
    let mut to = targets(m, path)?;
    let group = m.value("group").map(str::to_string);
    if to.is_empty() && group.is_none() {
        return Err(usage(path, "name the targets: --to ID (repeatable) or --group G"));
    }
    let health_window: u32 = number(m, "health-window", path)?.unwrap_or(30);
    if health_window > 24 * 3600 {
        return Err(usage(path, "--health-window is at most a day (86400)"));
    }
    let keep: u32 = number(m, "keep", path)?.unwrap_or(1);
    if keep > 16 {
        return Err(usage(path, "--keep is at most 16"));
    }
    let chunk: u32 = number(m, "chunk-size", path)?.unwrap_or(DEFAULT_CHUNK);
    if chunk == 0 || chunk > MAX_CHUNK {
        return Err(usage(path, format!("--chunk-size must be 1..={MAX_CHUNK}")));
    }
    let timeout = secs(m, "timeout", path, 600.0)?;
    let key = load_key(m, path)?;
    let full = match file {
        Some(file) => {
            let (f, size) = open_tarball(file)?;
            if size.div_ceil(u64::from(chunk)) > u64::from(MAX_CHUNKS) {
                return Err(usage(path, format!("{} needs more than {MAX_CHUNKS} chunks: use a larger --chunk-size", file.display())));
            }
            if app.is_none() {
                check_holds(file, &run)?;
            }
            let sha256 = sha256_file(&f, size)?;
            Payload { file: file.to_path_buf(), f: Some(f), size, sha256, temp: false, pull: None }
        }
        None => Payload { file: Default::default(), f: None, size: 0, sha256: String::new(), temp: false, pull: pull.clone() },
    };
    let delta = m.flag("delta");
    if delta && full.f.is_none() && pull.is_none() {
        return Err(usage(path, "--delta needs a tarball"));
    }
    if delta && pull.is_some() {
        return Err(usage(path, "--delta is for tarballs: with --pull the devices fetch only the layers they lack"));
    }
    let canary: Option<usize> = number(m, "canary", path)?;
    let max_parallel: Option<usize> = number(m, "max-parallel", path)?;
    if canary == Some(0) || max_parallel == Some(0) {
        return Err(usage(path, "--canary and --max-parallel take a number above 0"));
    }

    block_on(async {
        let mut conn = o.connect().await?;
        watch(&mut conn, o, &to).await?;
        let mut devices: BTreeMap<String, Device> = BTreeMap::new();
        if let Some(g) = &group {
            conn.subscribe_retained(&format!("{}+/status", o.prefix)).await.map_err(fail)?;
            conn.subscribe_retained(&format!("{}+/state", o.prefix)).await.map_err(fail)?;
            // The retained states arrive as one burst after the subscription; a big fleet's can
            // outlast GROUP_WAIT, so the wait goes on while they keep coming (up to GROUP_WAIT_MAX).
            let start = tokio::time::Instant::now();
            let mut deadline = start + GROUP_WAIT;
            while let Some((topic, payload)) = conn.next(deadline).await.map_err(fail)? {
                absorb(&mut devices, &o.prefix, &topic, &payload);
                deadline = deadline.max(tokio::time::Instant::now() + GROUP_QUIET).min(start + GROUP_WAIT_MAX);
            }
            let members: Vec<String> = devices.iter().filter(|(_, d)| d.in_group(g)).map(|(id, _)| id.clone()).collect();
            if members.is_empty() && to.is_empty() {
                return Err(fail(format!("no device in group {g:?} ({} devices seen on the broker)", devices.len())));
            }
            for mbr in members {
                if !to.contains(&mbr) {
                    to.push(mbr);
                }
            }
        }
        let targets = to;
        wait_ready(&mut conn, o, &mut devices, &targets, tokio::time::Instant::now() + timeout).await?;
        let mut seq = 1 + targets.iter().filter_map(|t| devices.get(t)).map(Device::seq).max().unwrap_or(0);
        let batches = plan(&targets, canary, max_parallel);
        let common = Common { name: &name, run: &run, app: app.as_ref(), chunk, health_window, keep, timeout, key: &key };
        let (mut results, mut why) = (BTreeMap::new(), BTreeMap::new());
        let (mut sent, mut resent) = (0, 0);
        for (n, batch) in batches.iter().enumerate() {
            let delta_payload = if delta { make_delta(&full, batch, &devices)? } else { None };
            let payload = delta_payload.as_ref().unwrap_or(&full);
            let mut out = deliver(&mut conn, o, &mut devices, batch, payload, &common, seq).await?;
            seq += 1;
            if let Some(d) = &delta_payload {
                let _ = std::fs::remove_file(&d.file);
                // A device that lacked a layer after all (its state was old): the whole tarball.
                let retry: Vec<String> = batch
                    .iter()
                    .filter(|t| out.results.get(*t).is_some_and(|r| r.result == "failed" && r.reason.contains("missing from the archive")))
                    .cloned()
                    .collect();
                if !retry.is_empty() {
                    println!("{}: a layer left out is missing there; sending the whole tarball", retry.join(", "));
                    let again = deliver(&mut conn, o, &mut devices, &retry, &full, &common, seq).await?;
                    seq += 1;
                    out.merge(again);
                }
            }
            sent += out.sent;
            resent += out.resent;
            let failed: Vec<String> =
                batch.iter().filter(|t| out.results.get(*t).is_none_or(|r| r.result != "committed")).cloned().collect();
            results.extend(out.results);
            why.extend(out.why);
            if n == 0 && canary.is_some() && !failed.is_empty() {
                let rest: Vec<&String> = batches[1..].iter().flatten().collect();
                eprintln!("canary failed on {}: {} other devices were not updated", failed.join(", "), rest.len());
                for t in rest {
                    why.insert(t.clone(), "not updated: the canary failed".into());
                }
                break;
            }
        }
        conn.close().await;
        println!("chunks: {sent} sent, {resent} resent");
        Ok(report(&results, &targets, &why))
    })
}

/// A file made for this push, removed when the push ends, however it ends.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The batches a push goes out in: the canary devices first, then groups of `max_parallel`.
pub fn plan(targets: &[String], canary: Option<usize>, max_parallel: Option<usize>) -> Vec<Vec<String>> {
    let mut rest: &[String] = targets;
    let mut out = Vec::new();
    if let Some(c) = canary {
        let c = c.min(rest.len());
        out.push(rest[..c].to_vec());
        rest = &rest[c..];
    }
    let k = max_parallel.unwrap_or(usize::MAX).max(1);
    out.extend(rest.chunks(k).map(<[String]>::to_vec));
    out.retain(|b| !b.is_empty());
    out
}

/// What one batch receives: a tarball in chunks, or a reference to pull.
struct Payload {
    file: std::path::PathBuf,
    f: Option<File>,
    size: u64,
    sha256: String,
    /// A delta made for this batch (removed after).
    temp: bool,
    pull: Option<String>,
}

/// `--pull`: a reference pinned by digest (a tag could be moved on the registry under the signed
/// update), and the one `--run` runs, so the container is exactly the image that was verified.
pub fn check_pull(r: &str, run: &[String]) -> Result<(), String> {
    if !berth_proto::wire::valid_pull(r) {
        return Err(format!("--pull {r:?}: pin the image by digest (NAME@sha256:DIGEST; 'berth push' prints it)"));
    }
    let o = berth_proto::run::parse_run_words(run).map_err(|e| format!("--run: {e}"))?;
    if o.image != r {
        return Err(format!("--run must run the pulled image {r} (it names {})", o.image));
    }
    Ok(())
}

struct Common<'a> {
    name: &'a str,
    run: &'a [String],
    app: Option<&'a App>,
    chunk: u32,
    health_window: u32,
    keep: u32,
    timeout: Duration,
    key: &'a berth_proto::sign::SecretKey,
}

/// The tarball without the layers every device of `batch` holds, or None when it holds none.
fn make_delta(full: &Payload, batch: &[String], devices: &BTreeMap<String, Device>) -> Result<Option<Payload>, CliError> {
    use berth_runtime::digest::Digest;
    let mut held: Option<std::collections::HashSet<String>> = None;
    for t in batch {
        let l = devices.get(t).map(Device::layers).unwrap_or_default();
        held = Some(match held {
            None => l,
            Some(h) => h.intersection(&l).cloned().collect(),
        });
    }
    let held: std::collections::HashSet<Digest> = held.unwrap_or_default().iter().filter_map(|d| Digest::parse(d).ok()).collect();
    if held.is_empty() {
        println!("delta: the targets hold none of its layers; sending the whole tarball");
        return Ok(None);
    }
    let tmp = std::env::temp_dir().join(format!("berth-delta-{}.tar", conn::random_id()));
    let st = berth_runtime::image::delta::strip(&full.file, &tmp, &held).map_err(|e| fail(format!("make the delta: {e}")))?;
    if st.skipped_layers == 0 {
        let _ = std::fs::remove_file(&tmp);
        println!("delta: the targets hold none of its layers; sending the whole tarball");
        return Ok(None);
    }
    let (f, size) = open_tarball(&tmp)?;
    let sha256 = sha256_file(&f, size)?;
    println!(
        "delta: {} layers ({}) left out: sending {} instead of {} ({:.0}% saved)",
        st.skipped_layers,
        human_size(st.skipped_bytes),
        human_size(size),
        human_size(full.size),
        100.0 * (1.0 - size as f64 / full.size as f64)
    );
    Ok(Some(Payload { file: tmp, f: Some(f), size, sha256, temp: true, pull: None }))
}

/// What one batch's transfer ended with.
struct Delivered {
    results: BTreeMap<String, Outcome>,
    why: BTreeMap<String, String>,
    sent: u64,
    resent: u64,
}

impl Delivered {
    fn merge(&mut self, o: Delivered) {
        for (t, r) in o.results {
            self.why.remove(&t);
            self.results.insert(t, r);
        }
        self.why.extend(o.why);
        self.sent += o.sent;
        self.resent += o.resent;
    }
}

/// One signed update for `targets`, its chunks streamed until every target has a result.
async fn deliver(
    conn: &mut Conn,
    o: &Opts,
    devices: &mut BTreeMap<String, Device>,
    targets: &[String],
    p: &Payload,
    c: &Common<'_>,
    seq: u64,
) -> Result<Delivered, CliError> {
    let id = conn::random_id();
    let topic = format!("{}updates/{id}", o.prefix);
    let manifest = deploy_manifest(Deploy {
        id: id.clone(),
        seq,
        targets: Vec::new(),
        name: c.name.to_string(),
        image: (p.pull.is_none() && p.f.is_some()).then(|| ImageRef {
            size: p.size,
            sha256: p.sha256.clone(),
            chunk_size: c.chunk,
            topic: topic.clone(),
        }),
        pull: p.pull.clone(),
        run: c.run.to_vec(),
        health_window: c.health_window,
        keep: c.keep,
        created: super::now_unix(),
        app: c.app.cloned(),
    });
    for t in targets {
        conn.subscribe(&format!("{}progress", o.root(t))).await.map_err(fail)?;
        conn.subscribe(&format!("{}result", o.root(t))).await.map_err(fail)?;
    }
    // Each target gets the manifest signed for it alone (the same update id, chunks and topic):
    // one naming every target would make each envelope grow with the batch, and the bytes sent
    // with its square (10 KB to each of 1,000 devices).
    for t in targets {
        let mine = Manifest { targets: vec![t.clone()], ..manifest.clone() };
        conn.publish(&format!("{}update", o.root(t)), signed(c.key, &mine)?).await.map_err(fail)?;
    }
    let total = manifest.chunks();
    let what = if p.temp { "a delta" } else { "the tarball" };
    let services = c.app.map(|a| a.services.iter().map(|s| s.service.as_str()).collect::<Vec<_>>().join(", "));
    match &p.pull {
        None if p.f.is_none() => println!(
            "update {id}: application {} ({}) with the images on the devices to {} as seq {seq}",
            c.name,
            services.unwrap_or_default(),
            targets.join(", ")
        ),
        Some(r) => println!("update {id}: {} pulled by the devices from {r} to {} as seq {seq}", c.name, targets.join(", ")),
        None => println!(
            "update {id}: {} from {} ({what}, {}, {total} chunks) to {} as seq {seq}",
            c.name,
            p.file.display(),
            human_size(p.size),
            targets.join(", ")
        ),
    }
    let mut s = Stream {
        conn,
        o,
        f: p.f.as_ref(),
        manifest: &manifest,
        targets,
        devices: std::mem::take(devices),
        win: Window::new(total, window_for(c.chunk), targets, Instant::now()),
        board: Board::new(targets, total, c.chunk, p.size, is_tty(1)),
        results: BTreeMap::new(),
        why: BTreeMap::new(),
        heard: targets.iter().map(|t| (t.clone(), Instant::now())).collect(),
        receiving: targets.iter().cloned().collect(),
        timeout: c.timeout,
    };
    let res = s.run().await;
    *devices = std::mem::take(&mut s.devices);
    res?;
    Ok(Delivered { results: s.results, why: s.why, sent: s.win.sent, resent: s.win.resent })
}

struct Stream<'a> {
    conn: &'a mut Conn,
    o: &'a Opts,
    /// None for a pull: there are no chunks.
    f: Option<&'a File>,
    manifest: &'a Manifest,
    targets: &'a [String],
    devices: BTreeMap<String, Device>,
    win: Window,
    board: Board,
    results: BTreeMap<String, Outcome>,
    /// Why a target has no result (given up on).
    why: BTreeMap<String, String>,
    heard: BTreeMap<String, Instant>,
    /// Targets that have not left the receiving phase.
    receiving: std::collections::BTreeSet<String>,
    timeout: Duration,
}

impl Stream<'_> {
    fn done(&self) -> bool {
        self.targets.iter().all(|t| self.results.contains_key(t) || self.why.contains_key(t))
    }

    async fn run(&mut self) -> Result<(), CliError> {
        let started = Instant::now();
        let chunk = self.manifest.image.as_ref().map_or(DEFAULT_CHUNK, |i| i.chunk_size) as usize;
        let mut buf = vec![0u8; chunk];
        let topic = self.manifest.image.as_ref().map(|i| i.topic.clone()).unwrap_or_default();
        let total = self.manifest.chunks();
        let mut stdout = std::io::stdout();
        let mut reconnects = self.conn.reconnects;
        while !self.done() {
            let now = Instant::now();
            self.give_up_on_silent(now);
            if now.duration_since(started) >= START_WAIT {
                self.win.start();
            }
            if self.conn.reconnects != reconnects {
                reconnects = self.conn.reconnects;
                self.win.reconnected(now);
            }
            // While the broker is away nothing can arrive: no target has stalled.
            if self.conn.online {
                self.win.tick(now);
            }
            let mut sent = 0;
            while sent < 32 {
                let Some(i) = self.win.next_chunk(now) else { break };
                let len = self.manifest.chunk_len(i);
                let Some(f) = self.f else { break };
                f.read_exact_at(&mut buf[..len], u64::from(i) * chunk as u64)
                    .map_err(|e| fail(format!("read chunk {i} of the tarball: {e}")))?;
                self.conn.publish(&topic, Chunk::encode(&self.manifest.id, i, total, &buf[..len])).await.map_err(fail)?;
                sent += 1;
            }
            // Take whatever has arrived; wait a little only when there was nothing to send.
            let mut deadline = tokio::time::Instant::now() + if sent == 0 { Duration::from_millis(100) } else { Duration::ZERO };
            while let Some((topic, payload)) = self.conn.next(deadline).await.map_err(fail)? {
                self.handle(&topic, &payload, Instant::now(), &mut stdout);
                deadline = tokio::time::Instant::now();
            }
            self.board.draw(Instant::now(), false, &mut stdout);
        }
        self.board.draw(Instant::now(), true, &mut stdout);
        Ok(())
    }

    fn give_up_on_silent(&mut self, now: Instant) {
        let apply = Duration::from_secs(u64::from(self.manifest.health_window)) + APPLY_SLACK;
        for t in self.targets {
            if self.results.contains_key(t) || self.why.contains_key(t) {
                continue;
            }
            let limit = if self.receiving.contains(t) { self.timeout } else { self.timeout.max(apply) };
            if self.heard.get(t).is_some_and(|h| now.duration_since(*h) >= limit) {
                self.why.insert(t.clone(), format!("nothing heard from it for {} s", limit.as_secs()));
                self.win.finish(t);
            }
        }
    }

    fn handle(&mut self, topic: &str, payload: &[u8], now: Instant, out: &mut impl std::io::Write) {
        let Some((dev, leaf)) = split_topic(&self.o.prefix, topic) else { return };
        let dev = dev.to_string();
        if !self.targets.contains(&dev) || self.results.contains_key(&dev) {
            return;
        }
        let id = &self.manifest.id;
        match leaf {
            "progress" => {
                let Ok(p) = serde_json::from_slice::<Progress>(payload) else { return };
                if &p.id != id {
                    return;
                }
                self.heard.insert(dev.clone(), now);
                self.win.progress(&dev, &p, now);
                if p.phase != "receiving" {
                    self.receiving.remove(&dev);
                }
                if p.phase == "pulling" {
                    self.board.pulling(&dev, p.have, p.total, out);
                } else {
                    self.board.progress(&dev, p.have, &p.phase, now, out);
                }
            }
            "result" => {
                let Ok(r) = serde_json::from_slice::<Outcome>(payload) else { return };
                if &r.id == id {
                    self.finish(dev, r, now, out);
                }
            }
            _ => {
                absorb(&mut self.devices, &self.o.prefix, topic, payload);
                let Some(d) = self.devices.get(&dev) else { return };
                if let Some(r) = d.result_of(id) {
                    self.finish(dev, r, now, out);
                } else if d.online == Some(false) {
                    self.board.phase(&dev, "offline", now, out);
                } else {
                    // A state republished is a sign of life (the agent is loading, applying).
                    self.heard.insert(dev, now);
                }
            }
        }
    }

    fn finish(&mut self, dev: String, r: Outcome, now: Instant, out: &mut impl std::io::Write) {
        self.win.finish(&dev);
        self.receiving.remove(&dev);
        self.board.phase(&dev, &r.result, now, out);
        self.results.insert(dev, r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::sign::{verify, SecretKey};
    use berth_proto::wire::Envelope;

    #[test]
    fn rollout_batches() {
        let t: Vec<String> = (1..=5).map(|i| format!("d{i}")).collect();
        let names = |b: Vec<Vec<String>>| b.into_iter().map(|b| b.join(",")).collect::<Vec<_>>();
        assert_eq!(names(plan(&t, None, None)), ["d1,d2,d3,d4,d5"]);
        assert_eq!(names(plan(&t, Some(1), None)), ["d1", "d2,d3,d4,d5"]);
        assert_eq!(names(plan(&t, Some(2), Some(2))), ["d1,d2", "d3,d4", "d5"]);
        assert_eq!(names(plan(&t, None, Some(3))), ["d1,d2,d3", "d4,d5"]);
        assert_eq!(names(plan(&t, Some(9), None)), ["d1,d2,d3,d4,d5"]);
    }

    #[test]
    fn run_arguments_are_checked_with_runs_parser() {
        let (words, name) = check_run("--name app --restart always app:2 sleep 1000").unwrap();
        assert_eq!(words, ["--name", "app", "--restart", "always", "app:2", "sleep", "1000"]);
        assert_eq!(name, "app");
        let (words, _) = check_run("-d --name=web -e 'A=b c' web:1 sh -c 'exec httpd -f'").unwrap();
        assert_eq!(words[3], "A=b c");
        assert_eq!(words.last().map(String::as_str), Some("exec httpd -f"));
        for (bad, why) in [
            ("app:2", "--name"),
            ("--name app --rm app:2", "--rm"),
            ("--name app -it app:2", "-i"),
            ("--name app -t app:2", "-t"),
            ("--name app -a stdout app:2", "unknown shorthand flag"),
            ("--name app", "requires at least 1 argument"),
            ("--name app --bogus app:2", "unknown flag"),
            ("--name 'app app:2", "unclosed quote"),
            ("--name /x app:2", "invalid container name"),
            ("--name app --memory lots app:2", "memory"),
            ("--help", "--help"),
        ] {
            let e = check_run(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn pulls_are_pinned_by_digest_and_run_what_they_pull() {
        let r = format!("reg.lan:5000/app@sha256:{}", "c".repeat(64));
        let (run, _) = check_run(&format!("--name app {r} sleep 1")).unwrap();
        check_pull(&r, &run).unwrap();
        let (tagged, _) = check_run("--name app reg.lan:5000/app:2").unwrap();
        assert!(check_pull(&r, &tagged).unwrap_err().contains("must run the pulled image"));
        assert!(check_pull("reg.lan:5000/app:2", &tagged).unwrap_err().contains("by digest"));
    }

    #[test]
    fn tarballs_are_recognised_by_their_start() {
        let mut h = vec![0u8; 512];
        h[..5].copy_from_slice(b"file1");
        assert!(!looks_like_tarball(&h), "no magic, no checksum");
        h[257..262].copy_from_slice(b"ustar");
        assert!(looks_like_tarball(&h));
        // v7: no magic, a valid checksum.
        let mut v7 = vec![0u8; 512];
        v7[..5].copy_from_slice(b"file1");
        let sum: u32 = v7.iter().map(|&b| u32::from(b)).sum::<u32>() + 8 * 32;
        v7[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        assert!(looks_like_tarball(&v7));
        v7[0] = b'g';
        assert!(!looks_like_tarball(&v7));
        assert!(looks_like_tarball(b"\x1f\x8b\x08rest"));
        assert!(looks_like_tarball(b"\x28\xb5\x2f\xfd..."));
        assert!(!looks_like_tarball(b"{\"json\": 1}"));
        assert!(!looks_like_tarball(&[]));
    }

    #[test]
    fn manifests_parse_and_verify_as_the_agent_does() {
        let (key, _) = SecretKey::generate().unwrap();
        let (run, name) = check_run("--name app app:2 sleep 1000").unwrap();
        let m = deploy_manifest(Deploy {
            id: conn::random_id(),
            seq: 8,
            targets: vec!["dev1".into(), "dev2".into()],
            name,
            image: Some(ImageRef { size: 300_000, sha256: "ab".repeat(32), chunk_size: DEFAULT_CHUNK, topic: "berth/v1/updates/x".into() }),
            pull: None,
            run,
            health_window: 5,
            keep: 2,
            created: 1_700_000_000,
            app: None,
        });
        assert_eq!(m.chunks(), 4);
        let env = Envelope::decode(&signed(&key, &m).unwrap()).unwrap();
        verify(&[key.public()], env.manifest.as_bytes(), &env.sig).unwrap();
        let back = Manifest::parse(&env.manifest).unwrap();
        assert_eq!(back, m);
        assert!(back.targets_device("dev2", &[]) && !back.targets_device("dev3", &[]));
        let mut bad = m.clone();
        bad.seq = 0;
        assert!(signed(&key, &bad).is_err(), "checked before sending");
    }

    #[test]
    fn files_are_hashed_in_pieces() {
        let dir = std::env::temp_dir().join(format!("berth-fleet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.tar");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let f = File::open(&p).unwrap();
        let want = berth_runtime::digest::to_hex(&berth_proto::wire::sha256(&data));
        assert_eq!(sha256_file(&f, data.len() as u64).unwrap(), want);
        assert!(open_tarball(&p).is_err(), "not a tar");
        assert!(open_tarball(&dir).is_err());
        assert!(open_tarball(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
