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
use crate::cli::args::{self, Matches, Parsed};
use crate::cli::output::{human_size, is_tty};
use crate::cli::CliError;
use crate::update::wire::{Chunk, ImageRef, Kind, Manifest, Outcome, Progress, DEFAULT_CHUNK, MAX_CHUNK, MAX_CHUNKS, VERSION};

/// How long retained `state` messages are collected to find a group's devices.
const GROUP_WAIT: Duration = Duration::from_secs(2);
/// Streaming starts when every target has reported that it receives, or after this.
const START_WAIT: Duration = Duration::from_secs(10);
/// After a target leaves `receiving` it reports nothing until its result: allow its health
/// window and this much for load and start.
const APPLY_SLACK: Duration = Duration::from_secs(120);

/// The run arguments of `--run`, checked with `berth run`'s own parser; returns them as words
/// and the container name.
pub fn check_run(line: &str) -> Result<(Vec<String>, String), String> {
    let words = crate::cli::words::shell_words(line).map_err(|e| format!("--run: {e}"))?;
    let m = match args::parse(&crate::cli::container::RUN, &words) {
        Ok(Parsed::Matches(m)) => m,
        Ok(Parsed::Help(_)) => return Err("--run: --help is not a container".into()),
        Err(e) => return Err(format!("--run: {}", e.msg)),
    };
    let (o, _) = crate::cli::container::run_options(&m).map_err(|e| match e {
        CliError::Op(e) => format!("--run: {e}"),
        CliError::Usage(u) => format!("--run: {}", u.msg),
        CliError::Exit(c) => format!("--run: exit {c}"),
    })?;
    let Some(name) = o.name.clone() else {
        return Err("--run needs --name NAME: the update replaces the container of that name".into());
    };
    if !crate::agent::create::valid_name(&name) {
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

fn sha256_file(f: &File, size: u64) -> Result<String, CliError> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
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
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

pub struct Deploy {
    pub id: String,
    pub seq: u64,
    pub targets: Vec<String>,
    pub name: String,
    pub image: ImageRef,
    pub run: Vec<String>,
    pub health_window: u32,
    pub keep: u32,
    pub created: i64,
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
        image: Some(d.image),
        run: d.run,
        health_window: d.health_window,
        keep: d.keep,
    }
}

pub fn push(o: &Opts, m: &Matches) -> Result<i32, CliError> {
    let path = PUSH.path;
    let file = Path::new(&m.args()[0]);
    let line = m.value("run").ok_or_else(|| usage(path, "--run 'RUN ARGS' is required (e.g. --run '--name app app:2')"))?;
    let (run, name) = check_run(line).map_err(|e| usage(path, e))?;
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
    let (f, size) = open_tarball(file)?;
    if size.div_ceil(u64::from(chunk)) > u64::from(MAX_CHUNKS) {
        return Err(usage(path, format!("{} needs more than {MAX_CHUNKS} chunks: use a larger --chunk-size", file.display())));
    }
    let sha256 = sha256_file(&f, size)?;

    block_on(async {
        let mut conn = o.connect().await?;
        watch(&mut conn, o, &to).await?;
        let mut devices: BTreeMap<String, Device> = BTreeMap::new();
        if let Some(g) = &group {
            conn.subscribe(&format!("{}+/status", o.prefix)).await.map_err(fail)?;
            conn.subscribe(&format!("{}+/state", o.prefix)).await.map_err(fail)?;
            let deadline = tokio::time::Instant::now() + GROUP_WAIT;
            while let Some((topic, payload)) = conn.next(deadline).await.map_err(fail)? {
                absorb(&mut devices, &o.prefix, &topic, &payload);
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
        let seq = 1 + targets.iter().filter_map(|t| devices.get(t)).map(Device::seq).max().unwrap_or(0);
        let id = conn::random_id();
        let topic = format!("{}updates/{id}", o.prefix);
        let manifest = deploy_manifest(Deploy {
            id: id.clone(),
            seq,
            targets: targets.clone(),
            name: name.clone(),
            image: ImageRef { size, sha256, chunk_size: chunk, topic: topic.clone() },
            run,
            health_window,
            keep,
            created: super::now_unix(),
        });
        let envelope = signed(&key, &manifest)?;
        for t in &targets {
            conn.subscribe(&format!("{}progress", o.root(t))).await.map_err(fail)?;
            conn.subscribe(&format!("{}result", o.root(t))).await.map_err(fail)?;
        }
        for t in &targets {
            conn.publish(&format!("{}update", o.root(t)), envelope.clone()).await.map_err(fail)?;
        }
        let total = manifest.chunks();
        println!(
            "update {id}: {name} from {} ({}, {total} chunks) to {} as seq {seq}",
            file.display(),
            human_size(size),
            targets.join(", ")
        );
        let mut s = Stream {
            conn: &mut conn,
            o,
            f: &f,
            manifest: &manifest,
            targets: &targets,
            devices,
            win: Window::new(total, window_for(chunk), &targets, Instant::now()),
            board: Board::new(&targets, total, chunk, size, is_tty(1)),
            results: BTreeMap::new(),
            why: BTreeMap::new(),
            heard: targets.iter().map(|t| (t.clone(), Instant::now())).collect(),
            receiving: targets.iter().cloned().collect(),
            timeout,
        };
        s.run().await?;
        let (sent, resent, results, why) = (s.win.sent, s.win.resent, s.results, s.why);
        conn.close().await;
        println!("chunks: {sent} sent, {resent} resent");
        Ok(report(&results, &targets, &why))
    })
}

struct Stream<'a> {
    conn: &'a mut Conn,
    o: &'a Opts,
    f: &'a File,
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
        while !self.done() {
            let now = Instant::now();
            self.give_up_on_silent(now);
            if now.duration_since(started) >= START_WAIT {
                self.win.start();
            }
            self.win.tick(now);
            let mut sent = 0;
            while sent < 32 {
                let Some(i) = self.win.next_chunk(now) else { break };
                let len = self.manifest.chunk_len(i);
                self.f
                    .read_exact_at(&mut buf[..len], u64::from(i) * chunk as u64)
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
                self.board.progress(&dev, p.have, &p.phase, now, out);
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
    use crate::update::sign::{verify, SecretKey};
    use crate::update::wire::Envelope;

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
            image: ImageRef { size: 300_000, sha256: "ab".repeat(32), chunk_size: DEFAULT_CHUNK, topic: "berth/v1/updates/x".into() },
            run,
            health_window: 5,
            keep: 2,
            created: 1_700_000_000,
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
        let want: String = crate::update::wire::sha256(&data).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sha256_file(&f, data.len() as u64).unwrap(), want);
        assert!(open_tarball(&p).is_err(), "not a tar");
        assert!(open_tarball(&dir).is_err());
        assert!(open_tarball(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
