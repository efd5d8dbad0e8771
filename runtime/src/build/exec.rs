//! The build executor: evaluates each stage step by step, looks every step up in the cache, and
//! otherwise carries it out: COPY/ADD/WORKDIR straight into a layer, RUN through a `Runner` (the
//! agent runs it in an ordinary berth container and commits its upper directory with the same
//! layer writer as `commit`), config-only steps as an image without a layer. Every step's result
//! is an untagged image, which is what the cache points at.
//!
//! The cache key of a step is its parent image, the evaluated step (command, environment,
//! destination, owners, modes) and, for COPY/ADD, the content hash of what it brings in (or the
//! source stage's image), so an unchanged rebuild creates and runs nothing and yields the same ID.
//! Progress is written as `docker build --progress=plain` does.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Map, Value};

use crate::build::context::{self, Source};
use crate::build::eval::{self, Action, Base, Options, Plan, Run, StageState, Step};
use crate::build::ignore::Ignore;
use crate::build::parse;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{atomic_write, remove_all};
use crate::image::commit::{tag_of, Layer, NewImage};
use crate::image::db::ImageRecord;
use crate::image::store::Store;
use crate::timefmt;

/// Contexts above this are refused (a board's flash and RAM are small); `.dockerignore` helps.
pub const CONTEXT_LIMIT: u64 = 512 << 20;
/// Output lines of a failed RUN repeated in the error report.
const LAST_LINES: usize = 10;

/// Runs RUN steps. The agent's implementation makes a container from `image` with the stage's
/// config, runs `run` in it, waits, and on success writes the layer of its changes.
pub trait Runner {
    /// `out` gets the command's output as it comes. Returns the exit code; on 0, whether a layer
    /// was written to `layer` (no changes: no layer).
    fn run(
        &mut self,
        image: &ImageRecord,
        config: &Map<String, Value>,
        run: &Run,
        out: &mut dyn Write,
        layer: &Path,
    ) -> Result<(i32, bool)>;

    /// `ADD URL`: writes what `url` serves into `out`. The default is a berth without an HTTP
    /// client (the firmware build: the client comes with the `registry` feature).
    fn fetch(&mut self, url: &str, out: &mut dyn Write) -> Result<u64> {
        let _ = out;
        Err(Error::invalid(format!("{url}: this berth was built without an HTTP client (cargo feature `registry`)")))
    }

    /// `FROM NAME` not in the store: pulls it into `store` when this berth has a registry client;
    /// `Ok(false)` when it has none (the error then says to pull or load it).
    fn pull(&mut self, store: &Store, name: &str, platform: Option<&str>) -> Result<bool> {
        let _ = (store, name, platform);
        Ok(false)
    }
}

/// The copy an `ADD URL` makes of its downloads: not unpacked, and `ADD URL /path/file` writes
/// `file` (the download's name in the scratch directory) into `/path/`.
fn url_copy(c: &eval::Copy) -> eval::Copy {
    let dest = if c.dest.ends_with('/') || c.sources.len() > 1 {
        c.dest.clone()
    } else {
        format!("{}/", c.dest.rsplit_once('/').map_or("", |(d, _)| d))
    };
    eval::Copy { add: false, dest, ..c.clone() }
}

/// Hashes what passes through (the `--checksum` of `ADD URL`).
struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Hasher,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hasher.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The file name `ADD URL dest/` gives a download: the URL path's last segment, as Docker.
fn url_file_name(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let path = path.find('/').map_or("", |i| &path[i..]);
    path.rsplit('/').next().filter(|n| !n.is_empty() && *n != "." && *n != "..")
}

pub struct Request {
    pub dockerfile: String,
    /// The context directory; `None` when only a Dockerfile came in (`build -`).
    pub context: Option<PathBuf>,
    pub opts: Options,
    pub tags: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub no_cache: bool,
    /// `--network` for every RUN (a RUN's own `--network` wins).
    pub network: Option<String>,
}

/// The cache index: step key → image ID, in `<store>/build/cache`.
struct Cache {
    path: PathBuf,
    map: HashMap<String, String>,
}

impl Cache {
    fn open(store: &Store) -> Result<Cache> {
        let path = store.root().join("build/cache");
        let map = match fs::read_to_string(&path) {
            Ok(t) => t.lines().filter_map(|l| l.split_once(' ')).map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(Error::io_at("read", &path, e)),
        };
        Ok(Cache { path, map })
    }

    fn get(&self, store: &Store, key: &str) -> Result<Option<ImageRecord>> {
        let Some(id) = self.map.get(key) else { return Ok(None) };
        let db = store.db()?;
        Ok(db.images.iter().find(|i| i.id.to_string() == *id).cloned())
    }

    fn put(&mut self, store: &Store, key: String, id: &Digest) -> Result<()> {
        self.map.insert(key, id.to_string());
        // Steps whose image was removed (`rmi`, `image prune`) are forgotten.
        let db = store.db()?;
        self.map.retain(|_, v| db.images.iter().any(|i| i.id.to_string() == *v));
        let mut text = String::new();
        for (k, v) in &self.map {
            text.push_str(&format!("{k} {v}\n"));
        }
        atomic_write(&self.path, text.as_bytes())
    }

    /// Image IDs the cache points at (hidden from `images` like Docker's intermediate images).
    pub fn ids(store: &Store) -> Vec<String> {
        Cache::open(store).map(|c| c.map.into_values().collect()).unwrap_or_default()
    }
}

/// Image IDs that are build-cache steps.
pub fn cache_ids(store: &Store) -> Vec<String> {
    Cache::ids(store)
}

/// Progress as `docker build --progress=plain`: numbered vertices.
struct Progress<'a> {
    w: &'a mut dyn Write,
    n: usize,
}

impl Progress<'_> {
    fn start(&mut self, name: &str) -> usize {
        self.n += 1;
        let _ = writeln!(self.w, "#{} {name}", self.n);
        self.n
    }
    fn line(&mut self, n: usize, text: &str) {
        let _ = writeln!(self.w, "#{n} {text}");
    }
    fn done(&mut self, n: usize, t: Instant) {
        let _ = writeln!(self.w, "#{n} DONE {}s\n", crate::decimal::fixed(t.elapsed().as_secs_f64(), 1));
    }
    fn cached(&mut self, n: usize) {
        let _ = writeln!(self.w, "#{n} CACHED\n");
    }
}

/// RUN output goes to the progress stream prefixed `#N 0.123 `, and the last lines are kept for
/// the error report.
struct RunOutput<'a, 'b> {
    p: &'a mut Progress<'b>,
    n: usize,
    t: Instant,
    partial: Vec<u8>,
    last: Vec<String>,
}

impl Write for RunOutput<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            self.emit(&line[..line.len() - 1]);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.emit(&rest);
        }
        Ok(())
    }
}

impl RunOutput<'_, '_> {
    fn emit(&mut self, line: &[u8]) {
        let s = String::from_utf8_lossy(line).into_owned();
        let at = self.t.elapsed().as_secs_f64();
        self.p.line(self.n, &format!("{} {s}", crate::decimal::fixed(at, 3)));
        self.last.push(s);
        if self.last.len() > LAST_LINES {
            self.last.remove(0);
        }
    }
}

fn key(parts: &[&str]) -> String {
    let mut h = Hasher::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\0");
    }
    h.finish().hex().to_string()
}

fn image_config(store: &Store, img: &ImageRecord) -> Result<Map<String, Value>> {
    let raw = store.config(img)?;
    let v: Value = serde_json::from_slice(&raw).map_err(|e| Error::invalid(format!("image {} config: {e}", img.id)))?;
    Ok(v.get("config").and_then(Value::as_object).cloned().unwrap_or_default())
}

fn layer_roots(store: &Store, img: Option<&ImageRecord>) -> Vec<PathBuf> {
    img.map(|i| i.layers.iter().map(|d| store.layer_dir(d).join(crate::image::layer::ROOT)).collect()).unwrap_or_default()
}

fn find_image(store: &Store, name: &str) -> Result<Option<ImageRecord>> {
    let db = store.db()?;
    match Store::find(&db, name) {
        Ok((i, _)) => Ok(Some(i.clone())),
        Err(e) if e.kind() == crate::error::Kind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

struct Builder<'a> {
    store: &'a Store,
    req: &'a Request,
    plan: &'a Plan,
    cache: Cache,
    progress: Progress<'a>,
    scratch: PathBuf,
    context: Option<Source>,
    /// Each built stage's result (None: an empty scratch stage).
    results: HashMap<usize, Option<ImageRecord>>,
    used_args: std::collections::BTreeSet<String>,
}

/// Builds the request's target; returns the image ID (tagged as asked). On failure nothing is
/// tagged and the scratch files are gone; steps that succeeded stay in the cache, as Docker's do.
pub fn build(store: &Store, req: &Request, runner: &mut dyn Runner, out: &mut dyn Write) -> Result<Digest> {
    let tags: Vec<String> = req.tags.iter().map(|t| tag_of(Some(t)).map(|o| o.unwrap_or_default())).collect::<Result<_>>()?;
    let mut progress = Progress { w: out, n: 0 };
    let t = Instant::now();
    let n = progress.start(&format!("[internal] load build definition from {}", req.opts.file));
    progress.line(n, &format!("transferring dockerfile: {}B done", req.dockerfile.len()));
    let df = parse::parse(&req.dockerfile, &req.opts.file)?;
    let plan = eval::plan(&df, &req.opts)?;
    progress.done(n, t);
    let scratch = store.root().join("build").join(format!("tmp-{}", std::process::id()));
    remove_all(&scratch)?;
    fs::create_dir_all(&scratch).ctx_path("create", &scratch)?;
    let cache = Cache::open(store)?;
    let mut b = Builder {
        store,
        req,
        plan: &plan,
        cache,
        progress,
        scratch: scratch.clone(),
        context: None,
        results: HashMap::new(),
        used_args: Default::default(),
    };
    let res = b.all(runner, &tags);
    let _ = remove_all(&scratch);
    res
}

impl Builder<'_> {
    fn all(&mut self, runner: &mut dyn Runner, tags: &[String]) -> Result<Digest> {
        if let Some(dir) = &self.req.context {
            let t = Instant::now();
            let n = self.progress.start("[internal] load .dockerignore");
            let ignore = match fs::read_to_string(dir.join(".dockerignore")) {
                Ok(text) => {
                    self.progress.line(n, &format!("transferring context: {}B done", text.len()));
                    Ignore::parse(&text)?
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.progress.line(n, "transferring context: 2B done");
                    Ignore::default()
                }
                Err(e) => return Err(Error::io_at("read", &dir.join(".dockerignore"), e)),
            };
            self.progress.done(n, t);
            let t = Instant::now();
            let n = self.progress.start("[internal] load build context");
            let ctx = context::context(dir, &ignore, CONTEXT_LIMIT)?;
            let size: u64 = ctx.tree.values().filter(|(_, m)| m.is_file()).map(|(_, m)| m.len()).sum();
            self.progress.line(n, &format!("transferring context: {} done", human(size)));
            self.progress.done(n, t);
            self.context = Some(ctx);
        }
        for &i in &self.plan.needed.clone() {
            let r = self.stage(i, runner)?;
            self.results.insert(i, r);
        }
        let unused = StageState::unused(&self.req.opts, &self.used_args, self.plan);
        if !unused.is_empty() {
            let _ = writeln!(self.progress.w, "[Warning] One or more build-args [{}] were not consumed", unused.join(" "));
        }
        let t = Instant::now();
        let n = self.progress.start("exporting to image");
        let mut img = self.results.get(&self.plan.target).cloned().flatten();
        if !self.req.labels.is_empty() || img.is_none() {
            let mut config = match &img {
                Some(i) => image_config(self.store, i)?,
                None => Map::new(),
            };
            if !self.req.labels.is_empty() {
                let labels = config.entry("Labels").or_insert_with(|| Value::Object(Map::new()));
                if !labels.is_object() {
                    *labels = Value::Object(Map::new());
                }
                if let Some(m) = labels.as_object_mut() {
                    for (k, v) in &self.req.labels {
                        m.insert(k.clone(), Value::String(v.clone()));
                    }
                }
            }
            let lock = self.store.lock()?;
            let id = self.store.add_image(
                &lock,
                NewImage {
                    base: img.as_ref(),
                    config,
                    layer: None,
                    created_by: String::new(),
                    author: None,
                    comment: None,
                    tag: None,
                    history: false,
                    image_comment: false,
                },
            )?;
            drop(lock);
            img = find_image(self.store, &id.to_string())?;
        }
        let img = img.ok_or_else(|| Error::invalid("the build produced no image"))?;
        self.progress.line(n, &format!("writing image {} done", img.id));
        for t in tags {
            self.store.tag(&img.id.to_string(), t)?;
            self.progress.line(n, &format!("naming to {t} done"));
        }
        self.progress.done(n, t);
        Ok(img.id)
    }

    fn label(&self, stage: usize, n: usize, total: usize) -> String {
        let multi = self.plan.needed.len() > 1 || self.plan.stages.len() > 1;
        match (&self.plan.stages[stage].name, multi) {
            (Some(name), _) => format!("[{name} {n}/{total}]"),
            (None, true) => format!("[stage-{stage} {n}/{total}]"),
            (None, false) => format!("[{n}/{total}]"),
        }
    }

    fn stage(&mut self, i: usize, runner: &mut dyn Runner) -> Result<Option<ImageRecord>> {
        let plan = self.plan;
        let st = &plan.stages[i];
        let file = &plan.file;
        let mut cur: Option<ImageRecord> = match &st.base {
            Base::Scratch => None,
            Base::Stage(b) => self.results.get(b).cloned().flatten(),
            Base::Image(name) => {
                let mut img = find_image(self.store, name)?;
                if img.is_none()
                    && runner
                        .pull(self.store, name, st.platform.as_deref())
                        .map_err(|e| parse::err_at(file, st.line, format!("FROM {name}: {}", e.message())))?
                {
                    img = find_image(self.store, name)?;
                }
                let img =
                    img.ok_or_else(|| parse::err_at(file, st.line, format!("FROM {name}: No such image: {name} (pull or load it first)")))?;
                if let Some(p) = &st.platform {
                    let want = crate::image::platform::Platform::parse(p).map_err(|e| parse::err_at(file, st.line, e))?;
                    if want.arch != img.arch {
                        return Err(parse::err_at(file, st.line, format!("FROM {name}: image is {}/{}, not {p}", img.os, img.arch)));
                    }
                }
                Some(img)
            }
        };
        let base_cfg = match &cur {
            Some(img) => Some(image_config(self.store, img)?),
            None => None,
        };
        let (mut state, triggers) = StageState::new(plan, &self.req.opts, i, base_cfg.as_ref())?;
        let all: Vec<parse::Instruction> = triggers.into_iter().chain(st.instructions.iter().cloned()).collect();
        let vertices = 1 + all.iter().filter(|x| matches!(x.cmd.as_str(), "RUN" | "COPY" | "ADD" | "WORKDIR")).count();
        let mut step_no = 1;
        let from_name = match &st.base {
            Base::Scratch => "scratch".to_string(),
            Base::Stage(b) => plan.stages[*b].name.clone().unwrap_or_else(|| format!("stage-{b}")),
            Base::Image(n) => n.clone(),
        };
        let n = self.progress.start(&format!("{} FROM {from_name}", self.label(i, 1, vertices)));
        self.progress.cached(n);
        for ins in &all {
            let step = state.step(ins)?;
            let vertex = matches!(ins.cmd.as_str(), "RUN" | "COPY" | "ADD" | "WORKDIR");
            let n = if vertex {
                step_no += 1;
                let text = ins.original.lines().next().unwrap_or("").trim().to_string();
                Some(self.progress.start(&format!("{} {text}", self.label(i, step_no, vertices))))
            } else {
                None
            };
            let t = Instant::now();
            let parent = cur.as_ref().map_or_else(|| format!("scratch {}", state_platform()), |c| c.id.to_string());
            let (extra, sources) = self.step_inputs(&step, &cur, ins, runner)?;
            let k = key(&[&parent, &step.created_by, &format!("{:?}", step.action), &extra]);
            if !self.req.no_cache {
                if let Some(hit) = self.cache.get(self.store, &k)? {
                    if let Some(n) = n {
                        self.progress.cached(n);
                    }
                    cur = Some(hit);
                    continue;
                }
            }
            let layer = self.scratch.join("layer.tar");
            let _ = fs::remove_file(&layer);
            let has_layer = match &step.action {
                Action::Config => false,
                Action::Workdir(dir) => self.workdir_layer(&cur, dir, &layer)?,
                Action::Copy(c) => {
                    let (src, resolved) = sources.ok_or_else(|| Error::invalid("COPY without sources"))?;
                    let image = context::layers(&layer_roots(self.store, cur.as_ref()), "the image")?;
                    let tmp = self.scratch.join("copy");
                    remove_all(&tmp)?;
                    fs::create_dir_all(&tmp).ctx_path("create", &tmp)?;
                    // A download is copied as it is, never unpacked (Docker unpacks only local archives).
                    let plain;
                    let c = if c.add && c.sources.iter().any(|s| is_url(s)) {
                        plain = url_copy(c);
                        &plain
                    } else {
                        c
                    };
                    crate::build::copy::write_layer(c, &src, &resolved, &image, &tmp, timefmt::now(), &layer)
                        .map_err(|e| parse::err_at(file, ins.line, format!("{}: {e}", ins.cmd)))?;
                    remove_all(&tmp)?;
                    true
                }
                Action::Run(r) => {
                    let mut r = r.clone();
                    if r.network.is_none() {
                        r.network = self.req.network.clone();
                    }
                    let img = match &cur {
                        Some(c) => c.clone(),
                        None => {
                            return Err(parse::err_at(file, ins.line, "RUN in a stage FROM scratch: there is no shell or program to run"))
                        }
                    };
                    let n = n.unwrap_or(0);
                    let mut o = RunOutput { p: &mut self.progress, n, t, partial: Vec::new(), last: Vec::new() };
                    let res = runner.run(&img, &state.config, &r, &mut o, &layer);
                    let _ = o.flush();
                    let last = std::mem::take(&mut o.last);
                    let cmd = r.argv.join(" ");
                    let (code, changed) = res.map_err(|e| parse::err_at(file, ins.line, format!("RUN {cmd}: {e}")))?;
                    if code != 0 {
                        let why = format!("process \"{cmd}\" did not complete successfully: exit code: {code}");
                        self.progress.line(n, &format!("ERROR: {why}"));
                        let _ = writeln!(
                            self.progress.w,
                            "------\n > {} {}:",
                            self.label(i, step_no, vertices),
                            ins.original.lines().next().unwrap_or("").trim()
                        );
                        for l in &last {
                            let _ = writeln!(self.progress.w, "{l}");
                        }
                        let _ = writeln!(self.progress.w, "------");
                        let mut msg = why.clone();
                        if let Some(l) = last.last() {
                            msg.push_str(&format!(" (last output: {l})"));
                        }
                        return Err(parse::err_at(file, ins.line, msg));
                    }
                    changed
                }
            };
            let lock = self.store.lock()?;
            let id = self.store.add_image(
                &lock,
                NewImage {
                    base: cur.as_ref(),
                    config: state.config.clone(),
                    layer: has_layer.then_some(Layer::File(layer.as_path())),
                    created_by: step.created_by.clone(),
                    author: state.author.clone(),
                    comment: Some(eval::COMMENT.into()),
                    tag: None,
                    history: true,
                    image_comment: false,
                },
            )?;
            drop(lock);
            let _ = fs::remove_file(&layer);
            self.cache.put(self.store, k, &id)?;
            cur = find_image(self.store, &id.to_string())?;
            if let Some(n) = n {
                self.progress.done(n, t);
            }
        }
        self.used_args.extend(state.used_args.iter().cloned());
        Ok(cur)
    }

    /// What else keys the step, and for COPY/ADD the source tree and resolved paths.
    #[allow(clippy::type_complexity)]
    fn step_inputs(
        &self,
        step: &Step,
        cur: &Option<ImageRecord>,
        ins: &parse::Instruction,
        runner: &mut dyn Runner,
    ) -> Result<(String, Option<(Source, Vec<Vec<String>>)>)> {
        let Action::Copy(c) = &step.action else {
            return Ok((String::new(), None));
        };
        let file = &self.plan.file;
        let at = |e: Error| parse::err_at(file, ins.line, format!("{} {}", ins.cmd, e.message()));
        if c.add && c.sources.iter().any(|s| is_url(s)) {
            let src = self.download(c, ins, runner)?;
            let resolved: Vec<Vec<String>> = src.tree.keys().map(|k| vec![k.clone()]).collect();
            let flat: Vec<String> = resolved.iter().flatten().cloned().collect();
            // Keyed by what was downloaded, as Docker's cache does: a changed file is a miss.
            let hash = src.hash(&flat)?;
            return Ok((format!("url {hash}"), Some((src, resolved))));
        }
        let (src, extra) = match &c.from {
            None => {
                let ctx = self.context.as_ref().ok_or_else(|| {
                    parse::err_at(file, ins.line, format!("{}: no build context (the Dockerfile came on stdin)", ins.cmd))
                })?;
                (Source { tree: ctx.tree.clone(), is_context: true, what: ctx.what.clone() }, String::new())
            }
            Some(eval::From::Stage(s)) => {
                let img = self.results.get(s).cloned().flatten();
                let id = img.as_ref().map_or("scratch".to_string(), |i| i.id.to_string());
                (context::layers(&layer_roots(self.store, img.as_ref()), &format!("stage {s}"))?, id)
            }
            Some(eval::From::Image(name)) => {
                let img = find_image(self.store, name)?
                    .ok_or_else(|| parse::err_at(file, ins.line, format!("{} --from={name}: No such image: {name}", ins.cmd)))?;
                (context::layers(&layer_roots(self.store, Some(&img)), name)?, img.id.to_string())
            }
        };
        let _ = cur;
        for s in &c.sources {
            if is_url(s) || s.starts_with("git@") {
                return Err(parse::err_at(file, ins.line, format!("{} {s}: sources from URLs are not supported by berth yet", ins.cmd)));
            }
        }
        let resolved: Vec<Vec<String>> = c.sources.iter().map(|s| src.resolve(s).map_err(at)).collect::<Result<_>>()?;
        let flat: Vec<String> = resolved.iter().flatten().cloned().collect();
        let hash = src.hash(&flat)?;
        Ok((format!("{extra} {hash}"), Some((src, resolved))))
    }

    /// `ADD URL...`: each URL downloaded (every build, as Docker) into a scratch directory that
    /// then stands for the context: the file named as the destination says (`dest/` keeps the
    /// URL's file name), mode 0600 as Docker gives downloads, `--checksum=sha256:` checked.
    fn download(&self, c: &eval::Copy, ins: &parse::Instruction, runner: &mut dyn Runner) -> Result<Source> {
        let file = &self.plan.file;
        let fail = |m: String| parse::err_at(file, ins.line, format!("{} {m}", ins.cmd));
        if let Some(local) = c.sources.iter().find(|s| !is_url(s)) {
            return Err(fail(format!("{local}: URL and local sources in one instruction are not supported by berth yet")));
        }
        let into_dir = c.dest.ends_with('/') || c.sources.len() > 1;
        let want = match ins.flag("checksum") {
            Some(v) => {
                if c.sources.len() > 1 {
                    return Err(fail("--checksum takes a single URL source".into()));
                }
                Some(Digest::parse(v).map_err(|e| fail(format!("--checksum={v}: {}", e.message())))?)
            }
            None => None,
        };
        let dir = self.scratch.join("url");
        remove_all(&dir)?;
        fs::create_dir_all(&dir).ctx_path("create", &dir)?;
        for url in &c.sources {
            let name = if into_dir {
                url_file_name(url)
                    .ok_or_else(|| fail(format!("{url}: cannot determine a file name from the URL; name the destination file")))?
            } else {
                // `ADD URL /path/file`: the download becomes that file; the copy's destination
                // is its directory.
                c.dest.rsplit('/').next().unwrap_or("download")
            };
            let path = dir.join(name);
            if path.exists() {
                return Err(fail(format!("{url}: two sources named {name:?}")));
            }
            let mut f = fs::File::create(&path).ctx_path("create", &path)?;
            let mut h = HashingWriter { inner: &mut f, hasher: Hasher::new() };
            runner.fetch(url, &mut h).map_err(|e| fail(e.message().to_string()))?;
            let got = h.hasher.finish();
            if let Some(w) = &want {
                if *w != got {
                    return Err(fail(format!("{url}: checksum mismatch: expected {w}, got {got}")));
                }
            }
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).ctx_path("chmod", &path)?;
        }
        let mut src = context::context(&dir, &Ignore::default(), u64::MAX)?;
        src.what = "the downloaded files".into();
        Ok(src)
    }

    /// WORKDIR makes its directory when the image lacks it, as BuildKit does.
    fn workdir_layer(&self, cur: &Option<ImageRecord>, dir: &str, layer: &Path) -> Result<bool> {
        let image = context::layers(&layer_roots(self.store, cur.as_ref()), "the image")?;
        let rel = dir.trim_matches('/');
        if rel.is_empty() || image.tree.get(rel).is_some_and(|(_, m)| m.is_dir()) {
            return Ok(false);
        }
        let copy = eval::Copy {
            add: false,
            sources: Vec::new(),
            dest: format!("/{rel}/"),
            from: None,
            chown: None,
            chmod: None,
            heredocs: Vec::new(),
        };
        // An empty source directory copied to `dir/` makes exactly the missing directories.
        let src = Source { tree: Default::default(), is_context: true, what: "WORKDIR".into() };
        let tmp = self.scratch.join("copy");
        fs::create_dir_all(&tmp).ctx_path("create", &tmp)?;
        crate::build::copy::write_layer(&copy, &src, &[vec![String::new()]], &image, &tmp, timefmt::now(), layer)?;
        Ok(true)
    }
}

fn state_platform() -> String {
    let p = crate::image::platform::Platform::host();
    format!("{}/{}", p.os, p.arch)
}

fn human(n: u64) -> String {
    if n < 1000 {
        format!("{n}B")
    } else if n < 1_000_000 {
        format!("{}kB", crate::decimal::fixed(n as f64 / 1000.0, 2))
    } else {
        format!("{}MB", crate::decimal::fixed(n as f64 / 1e6, 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::platform::Platform;

    /// RUN steps are the agent's; here a runner that stands for a command failing with output.
    struct Failing;
    impl Runner for Failing {
        fn run(&mut self, _: &ImageRecord, _: &Map<String, Value>, run: &Run, out: &mut dyn Write, _: &Path) -> Result<(i32, bool)> {
            writeln!(out, "started {}", run.argv.join(" ")).map_err(|e| Error::io("write", e))?;
            out.write_all(b"no such package").map_err(|e| Error::io("write", e))?;
            Ok((3, false))
        }
    }

    struct NeverRun;
    impl Runner for NeverRun {
        fn run(&mut self, _: &ImageRecord, _: &Map<String, Value>, _: &Run, _: &mut dyn Write, _: &Path) -> Result<(i32, bool)> {
            panic!("nothing to run in this build");
        }
    }

    fn req(df: &str, ctx: &Path, tags: &[&str]) -> Request {
        Request {
            dockerfile: df.into(),
            context: Some(ctx.to_path_buf()),
            opts: Options { file: "Dockerfile".into(), build_args: vec![], target: None, platform: Platform::host() },
            tags: tags.iter().map(|t| t.to_string()).collect(),
            labels: vec![],
            no_cache: false,
            network: None,
        }
    }

    #[test]
    fn copy_stages_cache_and_failures() {
        let base = std::env::temp_dir().join(format!("berth-build-exec-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let ctx = base.join("ctx");
        fs::create_dir_all(ctx.join("app")).unwrap();
        fs::write(ctx.join("app/main.sh"), "echo hi\n").unwrap();
        fs::write(ctx.join("secret.key"), "k").unwrap();
        fs::write(ctx.join(".dockerignore"), "*.key\n").unwrap();
        let store = Store::open(&base.join("store")).unwrap();
        let df = "FROM scratch AS files\nCOPY app /app/\nWORKDIR /srv/data\nENV X=1\nFROM scratch\nCOPY --from=files /app/main.sh /bin/\nLABEL v=1\nCMD [\"/bin/main.sh\"]\n";
        let mut out = Vec::new();
        let id = build(&store, &req(df, &ctx, &["app:1"]), &mut NeverRun, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.contains("[files 2/3] COPY app /app/"), "{text}");
        assert!(text.contains("[stage-1 2/2] COPY --from=files /app/main.sh /bin/"), "{text}");
        assert!(text.contains(&format!("writing image {id} done")), "{text}");
        let db = store.db().unwrap();
        let (img, _) = Store::find(&db, "app:1").unwrap();
        assert_eq!(img.id, id);
        assert_eq!(img.layers.len(), 1);
        let cfg: Value = serde_json::from_slice(&store.config(img).unwrap()).unwrap();
        assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["/bin/main.sh"]));
        assert_eq!(cfg["config"]["Labels"]["v"], "1");
        let hist: Vec<&str> = cfg["history"].as_array().unwrap().iter().map(|h| h["created_by"].as_str().unwrap()).collect();
        assert_eq!(hist, ["COPY --from=files /app/main.sh /bin/ # buildkit", "LABEL v=1", "CMD [\"/bin/main.sh\"]"]);
        let root = store.layer_dir(&img.layers[0]).join("root");
        assert_eq!(fs::read_to_string(root.join("bin/main.sh")).unwrap(), "echo hi\n");
        // The first stage: WORKDIR made its directory; .dockerignore kept the key out.
        let images = db.images.len();

        // Unchanged: everything from the cache, the same ID, no new image.
        let mut out = Vec::new();
        let again = build(&store, &req(df, &ctx, &["app:2"]), &mut NeverRun, &mut out).unwrap();
        assert_eq!(again, id);
        assert_eq!(store.db().unwrap().images.len(), images);
        assert_eq!(String::from_utf8_lossy(&out).matches("CACHED").count(), 2 + 3, "{}", String::from_utf8_lossy(&out));
        // A changed source file reruns its COPY and what follows.
        fs::write(ctx.join("app/main.sh"), "echo changed\n").unwrap();
        let changed = build(&store, &req(df, &ctx, &[]), &mut NeverRun, &mut Vec::new()).unwrap();
        assert_ne!(changed, id);
        // A missing or ignored source names the line; a failed RUN its code and output; nothing is tagged.
        let e = build(&store, &req("FROM scratch\nCOPY secret.key /\n", &ctx, &["bad:1"]), &mut NeverRun, &mut Vec::new()).unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:2: COPY secret.key: not found in the build context");
        let mut out = Vec::new();
        let e = build(&store, &req("FROM app:1\nRUN apk add nope\n", &ctx, &["bad:1"]), &mut Failing, &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Dockerfile:2: process \"/bin/sh -c apk add nope\" did not complete successfully: exit code: 3 (last output: no such package)"
        );
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.contains(" started /bin/sh -c apk add nope\n"), "{text}");
        let e = build(&store, &req("FROM nothere:1\n", &ctx, &["bad:1"]), &mut NeverRun, &mut Vec::new()).unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:1: FROM nothere:1: No such image: nothere:1 (pull or load it first)");
        assert!(Store::find(&store.db().unwrap(), "bad:1").is_err());
        assert!(!store.root().join(format!("build/tmp-{}", std::process::id())).exists());
        fs::remove_dir_all(&base).unwrap();
    }
}
