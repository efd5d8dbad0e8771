//! The Dockerfile evaluator: stages, ARG scopes, and how each instruction changes the image config
//! (`Env`, `Cmd`, `Entrypoint`, `WorkingDir`, `User`, `Labels`, `ExposedPorts`, `Volumes`,
//! `Healthcheck`, `StopSignal`, `Shell`, `OnBuild`) with the history text BuildKit writes. It
//! decides what a RUN or COPY must do; the executor does it.
//!
//! ARG rules (the Dockerfile reference): ARGs before the first FROM are global and usable only in
//! FROM lines until a stage declares them again (`ARG NAME` takes the global value); a stage's ARG
//! lives until the end of the stage; `--build-arg` overrides a default; an ENV of the same name wins
//! over an ARG; the proxy variables are predefined and reach RUN without a declaration (and stay
//! out of the history); BuildKit's platform ARGs (`TARGETARCH`...) are predefined globals.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::build::parse::{err_at, json_array, parse_trigger, Args, Dockerfile, Instruction};
use crate::build::shell;
use crate::error::{Error, Result};
use crate::image::platform::Platform;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The history comment BuildKit gives every step.
pub const COMMENT: &str = "buildkit.dockerfile.v0";
const PROXY_ARGS: &[&str] =
    &["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"];

#[derive(Debug, Clone)]
pub struct Options {
    /// The Dockerfile's name for messages (`Dockerfile`).
    pub file: String,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    /// The platform built for (TARGET*) and the board's own (BUILD*).
    pub platform: Platform,
}

/// Where a stage starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    Image(String),
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub index: usize,
    /// `AS name`, lower-cased as BuildKit compares them.
    pub name: Option<String>,
    pub base: Base,
    pub platform: Option<String>,
    pub line: usize,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub stages: Vec<Stage>,
    /// The stage whose result is the image.
    pub target: usize,
    /// Stages to build, in order: the target and what it needs (base stages, `COPY --from`).
    pub needed: Vec<usize>,
    pub globals: Vec<(String, Option<String>)>,
    pub escape: char,
    pub file: String,
}

fn predefined(p: &Platform) -> Vec<(String, Option<String>)> {
    let plat = |p: &Platform| match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.arch),
        None => format!("{}/{}", p.os, p.arch),
    };
    let host = Platform::host();
    let v = |o: &Option<String>| Some(o.clone().unwrap_or_default());
    vec![
        ("TARGETPLATFORM".into(), Some(plat(p))),
        ("TARGETOS".into(), Some(p.os.clone())),
        ("TARGETARCH".into(), Some(p.arch.clone())),
        ("TARGETVARIANT".into(), v(&p.variant)),
        ("BUILDPLATFORM".into(), Some(plat(&host))),
        ("BUILDOS".into(), Some(host.os.clone())),
        ("BUILDARCH".into(), Some(host.arch.clone())),
        ("BUILDVARIANT".into(), v(&host.variant)),
    ]
}

fn values(args: &[(String, Option<String>)]) -> Vec<(String, String)> {
    args.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect()
}

/// Splits `ARG a=1 b` into (name, default) pairs.
fn arg_pairs(ins: &Instruction, escape: char, vars: &[(String, String)], file: &str) -> Result<Vec<(String, Option<String>)>> {
    let text = ins.text();
    let ws = shell::raw_words(&text, escape);
    if ws.is_empty() {
        return Err(err_at(file, ins.line, "ARG requires at least one argument"));
    }
    ws.iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => {
                let v = shell::word(v, &vars.to_vec(), escape).map_err(|e| err_at(file, ins.line, e))?;
                Ok((k.to_string(), Some(v)))
            }
            None => Ok((w.clone(), None)),
        })
        .collect()
}

/// Splits the stages and resolves FROM lines with the global ARGs.
pub fn plan(df: &Dockerfile, opts: &Options) -> Result<Plan> {
    let file = &opts.file;
    let mut globals = predefined(&opts.platform);
    let mut stages: Vec<Stage> = Vec::new();
    for ins in &df.instructions {
        if ins.cmd == "FROM" {
            let gv = values(&globals);
            let ws = shell::raw_words(&ins.text(), df.escape);
            let (image, name) = match ws.as_slice() {
                [img] => (img.clone(), None),
                [img, as_, name] if as_.eq_ignore_ascii_case("as") => (img.clone(), Some(name.to_ascii_lowercase())),
                _ => return Err(err_at(file, ins.line, "FROM requires either one or three arguments")),
            };
            let expanded = shell::word(&image, &gv, df.escape).map_err(|e| err_at(file, ins.line, e))?;
            if expanded.is_empty() {
                return Err(err_at(file, ins.line, format!("base name ({image}) should not be blank")));
            }
            if let Some(n) = &name {
                if stages.iter().any(|s| s.name.as_ref() == Some(n)) {
                    return Err(err_at(file, ins.line, format!("duplicate stage name {n:?}")));
                }
                if !n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    || !n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                {
                    return Err(err_at(
                        file,
                        ins.line,
                        format!("invalid name for build stage: {n:?}, name can't start with a number or contain symbols"),
                    ));
                }
            }
            let lower = expanded.to_ascii_lowercase();
            let base = if lower == "scratch" {
                Base::Scratch
            } else if let Some(s) = stages.iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
                Base::Stage(s.index)
            } else {
                Base::Image(expanded)
            };
            let platform = match ins.flag("platform") {
                Some(p) => Some(shell::word(p, &gv, df.escape).map_err(|e| err_at(file, ins.line, e))?),
                None => None,
            };
            stages.push(Stage { index: stages.len(), name, base, platform, line: ins.line, instructions: Vec::new() });
            continue;
        }
        match stages.last_mut() {
            Some(s) => s.instructions.push(ins.clone()),
            None if ins.cmd == "ARG" => {
                let gv = values(&globals);
                for (k, dflt) in arg_pairs(ins, df.escape, &gv, file)? {
                    let v = opts.build_args.iter().rev().find(|(n, _)| *n == k).map(|(_, v)| v.clone()).or(dflt);
                    globals.retain(|(n, _)| *n != k);
                    globals.push((k, v));
                }
            }
            None => return Err(err_at(file, ins.line, format!("{} before any FROM: no build stage in current context", ins.cmd))),
        }
    }
    if stages.is_empty() {
        return Err(Error::invalid(format!("{file}: the Dockerfile has no FROM instruction")));
    }
    let target = match &opts.target {
        Some(t) => {
            let t = t.to_ascii_lowercase();
            stages
                .iter()
                .find(|s| s.name.as_deref() == Some(t.as_str()))
                .map(|s| s.index)
                .ok_or_else(|| Error::invalid(format!("target stage {t:?} could not be found")))?
        }
        None => stages.len() - 1,
    };
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !needed.insert(i) {
            continue;
        }
        if let Base::Stage(b) = stages[i].base {
            todo.push(b);
        }
        for ins in &stages[i].instructions {
            if let Some(from) = ins.flag("from") {
                if let Some(s) = stage_ref(&stages[..i], from) {
                    todo.push(s);
                }
            }
        }
    }
    Ok(Plan { stages, target, needed: needed.into_iter().collect(), globals, escape: df.escape, file: file.clone() })
}

/// `--from=NAME` or `--from=INDEX` naming an earlier stage.
pub fn stage_ref(earlier: &[Stage], from: &str) -> Option<usize> {
    let f = from.to_ascii_lowercase();
    if let Some(s) = earlier.iter().find(|s| s.name.as_deref() == Some(f.as_str())) {
        return Some(s.index);
    }
    f.parse::<usize>().ok().filter(|i| *i < earlier.len())
}

/// What a step asks of the executor.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Only the config changed.
    Config,
    Run(Run),
    Copy(Copy),
    /// WORKDIR: the directory must exist (made, if missing, in the next layer).
    Workdir(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub argv: Vec<String>,
    /// Env of the config plus the ARG values in scope (and given proxy variables).
    pub env: Vec<String>,
    pub user: String,
    pub workdir: String,
    /// `--network` of the RUN itself (`none`, `host`, `default`).
    pub network: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Copy {
    pub add: bool,
    pub sources: Vec<String>,
    /// Absolute; a trailing `/` says "a directory".
    pub dest: String,
    /// `--from`: a stage index or an image name.
    pub from: Option<From>,
    pub chown: Option<String>,
    pub chmod: Option<u32>,
    /// `COPY <<EOF /dest`: (name, content) written as files.
    pub heredocs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum From {
    Stage(usize),
    Image(String),
}

/// One evaluated instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub action: Action,
    /// The history's `created_by`.
    pub created_by: String,
    pub line: usize,
    /// The instruction as written, for progress output.
    pub text: String,
}

impl Step {
    pub fn empty_layer(&self) -> bool {
        matches!(self.action, Action::Config | Action::Workdir(_))
    }
}

/// A stage being evaluated.
pub struct StageState<'a> {
    plan: &'a Plan,
    opts: &'a Options,
    index: usize,
    /// The image config object.
    pub config: Map<String, Value>,
    /// The image's `author` (MAINTAINER).
    pub author: Option<String>,
    /// ARGs declared in this stage, with their values.
    args: Vec<(String, Option<String>)>,
    cmd_set: bool,
    /// Build args used anywhere (for the "not consumed" warning).
    pub used_args: BTreeSet<String>,
}

fn strings(v: &[String]) -> Value {
    json!(v)
}

/// Go's `%q` of a string list: `["a" "b"]`.
fn go_quoted_list(v: &[String]) -> String {
    let q: Vec<String> = v.iter().map(|s| serde_json::to_string(s).unwrap_or_default()).collect();
    format!("[{}]", q.join(" "))
}

/// Go's time.Duration String(), for the history of HEALTHCHECK.
fn go_duration(ns: u64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        return if ns.is_multiple_of(1_000_000) { format!("{}ms", ns / 1_000_000) } else { format!("{ns}ns") };
    }
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut sec = s.to_string();
    if frac > 0 {
        let f = format!("{frac:09}");
        sec.push('.');
        sec.push_str(f.trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{sec}s"),
        (0, m) => format!("{m}m{sec}s"),
        (h, m) => format!("{h}h{m}m{sec}s"),
    }
}

/// Docker's duration flags: `30s`, `1m30s`, `500ms`, `1h`.
fn parse_duration(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num = crate::decimal::parse_f64(&rest[..n])?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Some(total as u64)
}

fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

impl<'a> StageState<'a> {
    /// Starts stage `stage` from its base's config (`None`: scratch). Returns the state and the
    /// base's ONBUILD triggers, which run first.
    pub fn new(plan: &'a Plan, opts: &'a Options, index: usize, base: Option<&Map<String, Value>>) -> Result<(Self, Vec<Instruction>)> {
        let mut config = base.cloned().unwrap_or_default();
        let triggers: Vec<String> = match config.remove("OnBuild") {
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
            _ => Vec::new(),
        };
        let env = config.entry("Env").or_insert_with(|| json!([]));
        if let Some(list) = env.as_array_mut() {
            if !list.iter().any(|e| e.as_str().is_some_and(|s| s.starts_with("PATH="))) {
                list.insert(0, json!(format!("PATH={DEFAULT_PATH}")));
            }
        }
        let triggers = triggers.iter().map(|t| parse_trigger(t, &plan.file, 0)).collect::<Result<Vec<_>>>()?;
        Ok((StageState { plan, opts, index, config, author: None, args: Vec::new(), cmd_set: false, used_args: BTreeSet::new() }, triggers))
    }

    fn env(&self) -> Vec<(String, String)> {
        self.config
            .get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str())
                    .map(|e| e.split_once('=').map_or((e.into(), String::new()), |(k, v)| (k.into(), v.into())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Variables for expansion: ARG values, then ENV (which wins).
    fn vars(&self) -> Vec<(String, String)> {
        let mut v = values(&self.args);
        v.extend(self.env());
        v
    }

    fn shell_prefix(&self) -> Vec<String> {
        self.config
            .get("Shell")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .filter(|v: &Vec<String>| !v.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn workdir(&self) -> String {
        self.config.get("WorkingDir").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("/").to_string()
    }

    fn list_or_shell(&self, ins: &Instruction) -> Vec<String> {
        match &ins.args {
            Args::Json(v) => v.clone(),
            Args::Shell(s) => {
                let mut v = self.shell_prefix();
                v.push(s.clone());
                v
            }
        }
    }

    fn check_flags(&self, ins: &Instruction, allowed: &[&str]) -> Result<()> {
        for (f, _) in &ins.flags {
            if !allowed.contains(&f.as_str()) {
                return Err(self.err(ins, format!("unknown flag: {f}")));
            }
        }
        Ok(())
    }

    fn err(&self, ins: &Instruction, why: impl std::fmt::Display) -> Error {
        err_at(&self.plan.file, ins.line, why)
    }

    fn word(&self, ins: &Instruction, s: &str) -> Result<String> {
        shell::word(s, &self.vars(), self.plan.escape).map_err(|e| self.err(ins, e))
    }

    fn words(&self, ins: &Instruction) -> Result<Vec<String>> {
        match &ins.args {
            Args::Json(v) => v.iter().map(|s| self.word(ins, s)).collect(),
            Args::Shell(s) => shell::words(s, &self.vars(), self.plan.escape).map_err(|e| self.err(ins, e)),
        }
    }

    /// `k=v k2="v 2"` (or the legacy `k v w`) with each key and value expanded.
    fn pairs(&self, ins: &Instruction) -> Result<Vec<(String, String)>> {
        let text = ins.text();
        let raw = shell::raw_words(&text, self.plan.escape);
        if raw.is_empty() {
            return Err(self.err(ins, format!("{} requires at least one argument", ins.cmd)));
        }
        if !raw[0].contains('=') {
            if raw.len() < 2 {
                return Err(self.err(ins, format!("{} must have two arguments", ins.cmd)));
            }
            let rest = text.trim_start()[raw[0].len()..].trim_start();
            return Ok(vec![(self.word(ins, &raw[0])?, self.word(ins, rest)?)]);
        }
        raw.iter()
            .map(|w| {
                let (k, v) = w
                    .split_once('=')
                    .ok_or_else(|| self.err(ins, format!("Syntax error - can't find = in {w:?}. Must be of the form: name=value")))?;
                let k = self.word(ins, k)?;
                if k.is_empty() {
                    return Err(self.err(ins, format!("{} names can not be blank", ins.cmd)));
                }
                Ok((k, self.word(ins, v)?))
            })
            .collect()
    }

    fn map_entry(&mut self, key: &str) -> &mut Map<String, Value> {
        let v = self.config.entry(key).or_insert_with(|| json!({}));
        if !v.is_object() {
            *v = json!({});
        }
        match v {
            Value::Object(m) => m,
            _ => unreachable!("just made an object"),
        }
    }

    /// `|2 A=1 B= ` before a RUN's command in its history, as BuildKit writes it.
    fn run_prefix(&self) -> String {
        let env = self.env();
        let mut out: Vec<String> = Vec::new();
        for (k, v) in &self.args {
            let val = env.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone()).or_else(|| v.clone()).unwrap_or_default();
            let s = format!("{k}={val}");
            match out.iter().position(|o| o.split_once('=').map(|x| x.0) == Some(k.as_str())) {
                Some(i) => out[i] = s,
                None => out.push(s),
            }
        }
        if out.is_empty() {
            String::new()
        } else {
            format!("|{} {} ", out.len(), out.join(" "))
        }
    }

    /// Evaluates one instruction of the stage.
    pub fn step(&mut self, ins: &Instruction) -> Result<Step> {
        let text = ins.original.clone();
        let mk = |action: Action, created_by: String| Step { action, created_by, line: ins.line, text: text.clone() };
        match ins.cmd.as_str() {
            "ARG" => {
                self.check_flags(ins, &[])?;
                let vars = self.vars();
                let mut shown = Vec::new();
                for (k, dflt) in arg_pairs(ins, self.plan.escape, &vars, &self.plan.file)? {
                    shown.push(match &dflt {
                        Some(d) => format!("{k}={d}"),
                        None => k.clone(),
                    });
                    let given = self.opts.build_args.iter().rev().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
                    if given.is_some() {
                        self.used_args.insert(k.clone());
                    }
                    let global = self.plan.globals.iter().find(|(n, _)| *n == k).and_then(|(_, v)| v.clone());
                    let v = given.or(dflt).or(global);
                    self.args.retain(|(n, _)| *n != k);
                    self.args.push((k, v));
                }
                Ok(mk(Action::Config, format!("ARG {}", shown.join(" "))))
            }
            "ENV" => {
                self.check_flags(ins, &[])?;
                let pairs = self.pairs(ins)?;
                let mut msg = String::from("ENV");
                let env = self.config.entry("Env").or_insert_with(|| json!([]));
                let list = env.as_array_mut().ok_or_else(|| Error::invalid("image Env is not a list"))?;
                for (k, v) in pairs {
                    msg.push_str(&format!(" {k}={v}"));
                    let prefix = format!("{k}=");
                    match list.iter().position(|e| e.as_str().is_some_and(|s| s.starts_with(&prefix))) {
                        Some(i) => list[i] = json!(format!("{k}={v}")),
                        None => list.push(json!(format!("{k}={v}"))),
                    }
                }
                Ok(mk(Action::Config, msg))
            }
            "LABEL" => {
                self.check_flags(ins, &[])?;
                let pairs = self.pairs(ins)?;
                let mut msg = String::from("LABEL");
                let m = self.map_entry("Labels");
                for (k, v) in pairs {
                    msg.push_str(&format!(" {k}={v}"));
                    m.insert(k, json!(v));
                }
                Ok(mk(Action::Config, msg))
            }
            "MAINTAINER" => {
                let who = ins.text().trim().to_string();
                self.author = Some(who.clone());
                Ok(mk(Action::Config, format!("MAINTAINER {who}")))
            }
            "WORKDIR" => {
                self.check_flags(ins, &[])?;
                let w = self.word(ins, ins.text().trim())?;
                if w.is_empty() {
                    return Err(self.err(ins, "WORKDIR requires exactly one argument"));
                }
                let abs = if w.starts_with('/') { clean_path(&w) } else { clean_path(&format!("{}/{w}", self.workdir())) };
                self.config.insert("WorkingDir".into(), json!(abs));
                Ok(mk(Action::Workdir(abs.clone()), format!("WORKDIR {abs}")))
            }
            "USER" => {
                self.check_flags(ins, &[])?;
                let u = self.word(ins, ins.text().trim())?;
                if u.is_empty() {
                    return Err(self.err(ins, "USER requires exactly one argument"));
                }
                self.config.insert("User".into(), json!(u));
                Ok(mk(Action::Config, format!("USER {u}")))
            }
            "CMD" | "ENTRYPOINT" => {
                self.check_flags(ins, &[])?;
                let v = self.list_or_shell(ins);
                let msg = format!("{} {}", ins.cmd, go_quoted_list(&v));
                if ins.cmd == "CMD" {
                    self.config.insert("Cmd".into(), strings(&v));
                    self.cmd_set = true;
                } else {
                    self.config.insert("Entrypoint".into(), strings(&v));
                    // A new entry point drops the base image's CMD (not one set in this stage).
                    if !self.cmd_set {
                        self.config.insert("Cmd".into(), Value::Null);
                    }
                }
                Ok(mk(Action::Config, msg))
            }
            "EXPOSE" => {
                self.check_flags(ins, &[])?;
                let ws = self.words(ins)?;
                if ws.is_empty() {
                    return Err(self.err(ins, "EXPOSE requires at least one argument"));
                }
                let mut ports = Vec::new();
                for w in ws {
                    let (p, proto) = w.split_once('/').map_or((w.as_str(), "tcp"), |(a, b)| (a, b));
                    let proto = proto.to_ascii_lowercase();
                    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                        return Err(self.err(ins, format!("invalid proto: {proto}")));
                    }
                    let bad = || self.err(ins, format!("invalid containerPort: {p}"));
                    let (lo, hi) = match p.split_once('-') {
                        Some((a, b)) => (a.parse::<u16>().map_err(|_| bad())?, b.parse::<u16>().map_err(|_| bad())?),
                        None => {
                            let n = p.parse::<u16>().map_err(|_| bad())?;
                            (n, n)
                        }
                    };
                    if hi < lo {
                        return Err(bad());
                    }
                    for n in lo..=hi {
                        ports.push(format!("{n}/{proto}"));
                    }
                }
                let m = self.map_entry("ExposedPorts");
                for p in &ports {
                    m.insert(p.clone(), json!({}));
                }
                ports.sort();
                let shown: Vec<String> = ports.iter().map(|p| format!("{p}:{{}}")).collect();
                Ok(mk(Action::Config, format!("EXPOSE map[{}]", shown.join(" "))))
            }
            "VOLUME" => {
                self.check_flags(ins, &[])?;
                let vols = self.words(ins)?;
                if vols.is_empty() {
                    return Err(self.err(ins, "VOLUME requires at least one argument"));
                }
                let m = self.map_entry("Volumes");
                for v in &vols {
                    if v.trim().is_empty() {
                        return Err(err_at(&self.plan.file, ins.line, "VOLUME specified can not be an empty string"));
                    }
                    m.insert(v.clone(), json!({}));
                }
                Ok(mk(Action::Config, format!("VOLUME [{}]", vols.join(" "))))
            }
            "STOPSIGNAL" => {
                self.check_flags(ins, &[])?;
                let s = self.word(ins, ins.text().trim())?;
                let ok = s.parse::<u32>().is_ok()
                    || s.strip_prefix("SIG")
                        .unwrap_or(&s)
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '+' || c == '-')
                        && !s.is_empty();
                if !ok {
                    return Err(self.err(ins, format!("invalid signal: {s}")));
                }
                self.config.insert("StopSignal".into(), json!(s));
                Ok(mk(Action::Config, format!("STOPSIGNAL {s}")))
            }
            "SHELL" => {
                self.check_flags(ins, &[])?;
                let Args::Json(v) = &ins.args else {
                    return Err(self.err(ins, "SHELL requires the arguments to be in JSON form"));
                };
                if v.is_empty() {
                    return Err(self.err(ins, "SHELL requires at least one argument"));
                }
                self.config.insert("Shell".into(), strings(v));
                Ok(mk(Action::Config, format!("SHELL [{}]", v.join(" "))))
            }
            "ONBUILD" => {
                let t = ins.text().trim().to_string();
                parse_trigger(&t, &self.plan.file, ins.line)?;
                let list = self.config.entry("OnBuild").or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                if let Some(a) = list.as_array_mut() {
                    a.push(json!(t));
                }
                Ok(mk(Action::Config, format!("ONBUILD {t}")))
            }
            "HEALTHCHECK" => self.healthcheck(ins).map(|m| mk(Action::Config, m)),
            "RUN" => {
                self.check_flags(ins, &["network", "mount", "security"])?;
                if ins.flag("mount").is_some() {
                    return Err(self.err(ins, "RUN --mount is not supported by berth yet"));
                }
                if ins.flag("security").is_some() {
                    return Err(self.err(ins, "RUN --security is not supported by berth"));
                }
                let network = ins.flag("network").map(String::from);
                if let Some(n) = &network {
                    if !matches!(n.as_str(), "none" | "host" | "default") {
                        return Err(self.err(ins, format!("unsupported network mode {n:?} (none, host or default)")));
                    }
                }
                let argv = match (&ins.args, ins.heredocs.as_slice()) {
                    (Args::Shell(s), [h]) if s.trim() == format!("<<{}", h.name) || s.trim() == format!("<<-{}", h.name) => {
                        let mut v = self.shell_prefix();
                        v.push(h.content.clone());
                        v
                    }
                    (Args::Shell(_), [_, ..]) => {
                        // The shell reads the heredocs itself: hand it the whole text.
                        let full = ins.original.split_once(char::is_whitespace).map_or("", |x| x.1).trim_start();
                        let mut v = self.shell_prefix();
                        v.push(full.to_string());
                        v
                    }
                    _ => self.list_or_shell(ins),
                };
                let created_by = format!("RUN {}{} # buildkit", self.run_prefix(), argv.join(" "));
                let mut env: Vec<String> = self.env().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
                let have: BTreeSet<String> = self.env().into_iter().map(|(k, _)| k).collect();
                for (k, v) in values(&self.args) {
                    if !have.contains(&k) {
                        env.push(format!("{k}={v}"));
                    }
                }
                for p in PROXY_ARGS {
                    if let Some((_, v)) = self.opts.build_args.iter().rev().find(|(n, _)| n == p) {
                        if !have.contains(*p) && !self.args.iter().any(|(n, _)| n == p) {
                            env.push(format!("{p}={v}"));
                        }
                    }
                }
                let user = self.config.get("User").and_then(Value::as_str).unwrap_or("").to_string();
                Ok(mk(Action::Run(Run { argv, env, user, workdir: self.workdir(), network }), created_by))
            }
            "COPY" | "ADD" => self.copy(ins).map(|(c, m)| mk(Action::Copy(c), m)),
            other => Err(self.err(ins, format!("unknown instruction: {other}"))),
        }
    }

    fn copy(&mut self, ins: &Instruction) -> Result<(Copy, String)> {
        let add = ins.cmd == "ADD";
        if add {
            self.check_flags(ins, &["chown", "chmod", "link", "keep-git-dir", "checksum"])?;
        } else {
            self.check_flags(ins, &["from", "chown", "chmod", "link"])?;
        }
        let mut ws = self.words(ins)?;
        if ws.len() < 2 {
            return Err(self.err(
                ins,
                format!("{} requires at least two arguments, but only one was provided. Destination could not be determined", ins.cmd),
            ));
        }
        let dest_raw = ws.pop().unwrap_or_default();
        let mut heredocs = Vec::new();
        let mut sources = Vec::new();
        for s in ws {
            match ins.heredocs.iter().find(|h| s == format!("<<{}", h.name) || s == format!("<<-{}", h.name)) {
                Some(h) => {
                    let content =
                        if h.quoted { h.content.clone() } else { self.word(ins, &format!("\"{}\"", h.content.replace('"', "\\\"")))? };
                    heredocs.push((h.name.clone(), content));
                }
                None => sources.push(s),
            }
        }
        let dir_dest = dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        let mut dest =
            if dest_raw.starts_with('/') { clean_path(&dest_raw) } else { clean_path(&format!("{}/{dest_raw}", self.workdir())) };
        if dir_dest && dest != "/" {
            dest.push('/');
        }
        let from = match ins.flag("from") {
            Some(f) => {
                let f = self.word(ins, f)?;
                Some(match stage_ref(&self.plan.stages[..self.index], &f) {
                    Some(i) => From::Stage(i),
                    None => From::Image(f),
                })
            }
            None => None,
        };
        let chown = match ins.flag("chown") {
            Some(c) => Some(self.word(ins, c)?),
            None => None,
        };
        let chmod = match ins.flag("chmod") {
            Some(c) => {
                let c = self.word(ins, c)?;
                Some(
                    u32::from_str_radix(&c, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| self.err(ins, format!("invalid chmod parameter: {c}")))?,
                )
            }
            None => None,
        };
        let mut msg = String::from(&ins.cmd[..]);
        if let Some(f) = ins.flag("from") {
            msg.push_str(&format!(" --from={f}"));
        }
        for s in &sources {
            msg.push_str(&format!(" {s}"));
        }
        for (n, _) in &heredocs {
            msg.push_str(&format!(" <<{n}"));
        }
        msg.push_str(&format!(" {dest_raw} # buildkit"));
        Ok((Copy { add, sources, dest, from, chown, chmod, heredocs }, msg))
    }

    fn healthcheck(&mut self, ins: &Instruction) -> Result<String> {
        self.check_flags(ins, &["interval", "timeout", "start-period", "start-interval", "retries"])?;
        let text = ins.text();
        let t = text.trim();
        let (kind, rest) = t.split_once(char::is_whitespace).map_or((t, ""), |(a, b)| (a, b.trim()));
        let test: Vec<String> = match kind.to_ascii_uppercase().as_str() {
            "NONE" => {
                if !rest.is_empty() || !ins.flags.is_empty() {
                    return Err(self.err(ins, "HEALTHCHECK NONE takes no arguments"));
                }
                vec!["NONE".into()]
            }
            "CMD" => {
                if rest.is_empty() {
                    return Err(self.err(ins, "Missing command after HEALTHCHECK CMD"));
                }
                match json_array(rest) {
                    Some(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
                    None => vec!["CMD-SHELL".into(), rest.to_string()],
                }
            }
            _ => return Err(self.err(ins, format!("Unknown type {kind:?} in HEALTHCHECK (try CMD)"))),
        };
        let mut hc = Map::new();
        hc.insert("Test".into(), strings(&test));
        let mut durs = [0u64; 4];
        for (i, name) in ["interval", "timeout", "start-period", "start-interval"].iter().enumerate() {
            if let Some(v) = ins.flag(name) {
                let ns = parse_duration(v).ok_or_else(|| self.err(ins, format!("invalid duration for --{name}: {v}")))?;
                if ns != 0 && ns < 1_000_000 {
                    return Err(self.err(ins, format!("--{name} cannot be less than 1ms")));
                }
                durs[i] = ns;
            }
        }
        for (i, key) in ["Interval", "Timeout", "StartPeriod", "StartInterval"].iter().enumerate() {
            if durs[i] != 0 {
                hc.insert((*key).into(), json!(durs[i]));
            }
        }
        let mut retries = 0u64;
        if let Some(r) = ins.flag("retries") {
            retries = r.parse().map_err(|_| self.err(ins, format!("invalid --retries: {r}")))?;
            if retries == 0 {
                return Err(self.err(ins, "--retries cannot be 0"));
            }
            hc.insert("Retries".into(), json!(retries));
        }
        self.config.insert("Healthcheck".into(), Value::Object(hc));
        // Go's `%q` of the struct, as BuildKit's history shows it.
        let test_q = go_quoted_list(&test);
        let r = if retries < 0x20 { format!("'\\x{retries:02x}'") } else { format!("'{}'", char::from_u32(retries as u32).unwrap_or('?')) };
        Ok(format!(
            "HEALTHCHECK &{{{test_q} \"{}\" \"{}\" \"{}\" \"{}\" {r}}}",
            go_duration(durs[0]),
            go_duration(durs[1]),
            go_duration(durs[2]),
            go_duration(durs[3])
        ))
    }

    /// Build args given but never declared (BuildKit's "not consumed" warning); proxies excepted.
    pub fn unused(opts: &Options, used: &BTreeSet<String>, plan: &Plan) -> Vec<String> {
        opts.build_args
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| !used.contains(k) && !PROXY_ARGS.contains(&k.as_str()) && !plan.globals.iter().any(|(n, _)| n == k))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::parse::parse;

    fn opts(args: &[(&str, &str)]) -> Options {
        Options {
            file: "Dockerfile".into(),
            build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            target: None,
            platform: Platform { os: "linux".into(), arch: "arm64".into(), variant: None },
        }
    }

    /// Evaluates the target stage from scratch: (config, steps).
    fn eval(text: &str, o: &Options) -> Result<(Map<String, Value>, Vec<Step>)> {
        let df = parse(text, "Dockerfile")?;
        let plan = plan(&df, o)?;
        let st = &plan.stages[plan.target];
        let (mut s, _) = StageState::new(&plan, o, st.index, None)?;
        let mut steps = Vec::new();
        for ins in &st.instructions {
            steps.push(s.step(ins)?);
        }
        Ok((s.config, steps))
    }

    #[test]
    fn config_as_buildah_and_history_as_buildkit() {
        // The config values are buildah's (`buildah bud --format docker` on this Dockerfile) except
        // Cmd: the SHELL applies to a shell-form CMD in Docker, buildah keeps `/bin/sh -c`.
        let text = r#"FROM scratch AS base
ARG V=1
ENV A=1 B="two words"
ARG W
ENV C=${W:-dflt}
WORKDIR /srv/app
RUN echo $V $A > f && ls
USER 1000:1000
LABEL k=v "x y"=z
EXPOSE 80 53/udp
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s CMD true
SHELL ["/bin/sh", "-xc"]
RUN echo hi
ONBUILD RUN echo onbuild
ENTRYPOINT ["/bin/sh"]
CMD echo hello
COPY --chown=1:2 --chmod=700 busybox /y
"#;
        let (c, steps) = eval(text, &opts(&[])).unwrap();
        let want = json!({
            "User": "1000:1000",
            "ExposedPorts": {"53/udp": {}, "80/tcp": {}},
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1", "B=two words", "C=dflt"],
            "Cmd": ["/bin/sh", "-xc", "echo hello"],
            "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 5000000000u64},
            "Volumes": {"/data": {}},
            "WorkingDir": "/srv/app",
            "Entrypoint": ["/bin/sh"],
            "OnBuild": ["RUN echo onbuild"],
            "Labels": {"k": "v", "x y": "z"},
            "StopSignal": "SIGTERM",
            "Shell": ["/bin/sh", "-xc"],
        });
        assert_eq!(Value::Object(c), want);
        let by: Vec<&str> = steps.iter().map(|s| s.created_by.as_str()).collect();
        assert_eq!(
            by,
            [
                "ARG V=1",
                "ENV A=1 B=two words",
                "ARG W",
                "ENV C=dflt",
                "WORKDIR /srv/app",
                "RUN |2 V=1 W= /bin/sh -c echo $V $A > f && ls # buildkit",
                "USER 1000:1000",
                "LABEL k=v x y=z",
                "EXPOSE map[53/udp:{} 80/tcp:{}]",
                "VOLUME [/data]",
                "STOPSIGNAL SIGTERM",
                "HEALTHCHECK &{[\"CMD-SHELL\" \"true\"] \"5s\" \"0s\" \"0s\" \"0s\" '\\x00'}",
                "SHELL [/bin/sh -xc]",
                "RUN |2 V=1 W= /bin/sh -xc echo hi # buildkit",
                "ONBUILD RUN echo onbuild",
                "ENTRYPOINT [\"/bin/sh\"]",
                "CMD [\"/bin/sh\" \"-xc\" \"echo hello\"]",
                "COPY busybox /y # buildkit",
            ]
        );
        let Action::Copy(cp) = &steps[17].action else { panic!("{:?}", steps[17]) };
        assert_eq!((cp.chown.as_deref(), cp.chmod, cp.dest.as_str()), (Some("1:2"), Some(0o700), "/y"));
        let Action::Run(r) = &steps[5].action else { panic!() };
        assert_eq!(r.argv, ["/bin/sh", "-c", "echo $V $A > f && ls"]);
        assert_eq!(r.workdir, "/srv/app");
        assert!(r.env.contains(&"V=1".to_string()) && r.env.contains(&"C=dflt".to_string()));
        assert!(steps[5].action != Action::Config && !steps[5].empty_layer() && steps[0].empty_layer());
    }

    #[test]
    fn arg_scopes() {
        let text = "ARG IMG=scratch\nARG G=global\nFROM ${IMG}\nRUN echo $G\nARG G\nARG L=local\nENV L=env\nRUN echo\nFROM scratch AS two\nRUN echo\n";
        let o = opts(&[("G", "cli"), ("http_proxy", "http://p:3128"), ("UNUSED", "x")]);
        let df = parse(text, "Dockerfile").unwrap();
        let p = plan(&df, &o).unwrap();
        assert_eq!(p.stages[0].base, Base::Scratch);
        let (mut s, _) = StageState::new(&p, &o, 0, None).unwrap();
        let steps: Vec<Step> = p.stages[0].instructions.iter().map(|i| s.step(i).unwrap()).collect();
        let Action::Run(first) = &steps[0].action else { panic!() };
        // A global is not in scope until the stage declares it; proxies are, without a word.
        assert!(!first.env.iter().any(|e| e.starts_with("G=")));
        assert!(first.env.contains(&"http_proxy=http://p:3128".to_string()));
        assert_eq!(steps[0].created_by, "RUN /bin/sh -c echo $G # buildkit");
        let Action::Run(second) = &steps[4].action else { panic!() };
        assert!(second.env.contains(&"G=cli".to_string()));
        // ENV wins over ARG, in the environment and in the history.
        assert!(second.env.contains(&"L=env".to_string()) && !second.env.contains(&"L=local".to_string()));
        assert_eq!(steps[4].created_by, "RUN |2 G=cli L=env /bin/sh -c echo # buildkit");
        assert_eq!(StageState::unused(&o, &s.used_args, &p), ["UNUSED"]);
        // The next stage starts with nothing.
        let (mut s2, _) = StageState::new(&p, &o, 1, None).unwrap();
        let st = s2.step(&p.stages[1].instructions[0]).unwrap();
        assert_eq!(st.created_by, "RUN /bin/sh -c echo # buildkit");
    }

    #[test]
    fn stages_targets_and_references() {
        let text = "FROM scratch AS a\nRUN a\nFROM a AS b\nRUN b\nFROM busybox AS c\nCOPY --from=a /x /x\nFROM c\nCOPY --from=0 /y /y\n";
        let df = parse(text, "Dockerfile").unwrap();
        let p = plan(&df, &opts(&[])).unwrap();
        assert_eq!(p.stages[1].base, Base::Stage(0));
        assert_eq!(p.stages[2].base, Base::Image("busybox".into()));
        assert_eq!(p.stages[3].base, Base::Stage(2));
        assert_eq!(p.needed, [0, 2, 3]);
        let mut o = opts(&[]);
        o.target = Some("B".into());
        let p = plan(&df, &o).unwrap();
        assert_eq!((p.target, p.needed.clone()), (1, vec![0, 1]));
        o.target = Some("nope".into());
        assert_eq!(plan(&df, &o).unwrap_err().to_string(), "target stage \"nope\" could not be found");
        let (mut s, _) = StageState::new(&p, &o, 2, None).unwrap();
        let st = s.step(&p.stages[2].instructions[0]).unwrap();
        let Action::Copy(c) = st.action else { panic!() };
        assert_eq!(c.from, Some(From::Stage(0)));
        assert_eq!(st.created_by, "COPY --from=a /x /x # buildkit");
    }

    #[test]
    fn bad_input_names_the_line() {
        let e = |t: &str| eval(t, &opts(&[])).unwrap_err().to_string();
        assert_eq!(e("RUN x\nFROM a"), "Dockerfile:1: RUN before any FROM: no build stage in current context");
        assert_eq!(e("ARG IMG\nFROM $IMG\n"), "Dockerfile:2: base name ($IMG) should not be blank");
        assert_eq!(e("FROM scratch\nARG V\nRUN x\nCOPY ${V:?needs V} /\n"), "Dockerfile:4: V: needs V");
        assert_eq!(
            e("FROM scratch\nCOPY onlyone\n"),
            "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined"
        );
        assert_eq!(e("FROM scratch\nSHELL sh -c\n"), "Dockerfile:2: SHELL requires the arguments to be in JSON form");
        assert_eq!(e("FROM scratch\nEXPOSE 80/xyz\n"), "Dockerfile:2: invalid proto: xyz");
        assert_eq!(e("FROM scratch\nCOPY --chmod=9 a /\n"), "Dockerfile:2: invalid chmod parameter: 9");
        assert_eq!(e("FROM scratch\nCOPY --bogus a /\n"), "Dockerfile:2: unknown flag: bogus");
        assert_eq!(e("FROM scratch\nRUN --mount=type=cache,target=/x true\n"), "Dockerfile:2: RUN --mount is not supported by berth yet");
        assert_eq!(e("FROM scratch\nONBUILD FROM x\n"), "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger");
        assert_eq!(e("FROM scratch\nENV X\n"), "Dockerfile:2: ENV must have two arguments");
    }

    #[test]
    fn entrypoint_drops_inherited_cmd_and_workdir_is_relative() {
        let df = parse("FROM x\nWORKDIR a\nWORKDIR ../b/./c\nENTRYPOINT top\n", "Dockerfile").unwrap();
        let o = opts(&[]);
        let p = plan(&df, &o).unwrap();
        let base: Map<String, Value> =
            serde_json::from_value(json!({"Cmd": ["sh"], "WorkingDir": "/w", "OnBuild": ["RUN echo trig"]})).unwrap();
        let (mut s, triggers) = StageState::new(&p, &o, 0, Some(&base)).unwrap();
        assert_eq!(triggers.len(), 1);
        assert_eq!(triggers[0].text(), "echo trig");
        for i in &p.stages[0].instructions {
            s.step(i).unwrap();
        }
        assert_eq!(s.config["WorkingDir"], json!("/w/b/c"));
        assert_eq!(s.config["Cmd"], Value::Null);
        assert_eq!(s.config["Entrypoint"], json!(["/bin/sh", "-c", "top"]));
        assert!(!s.config.contains_key("OnBuild"));
    }

    #[test]
    fn heredoc_run_and_copy() {
        let (_, steps) = eval("FROM scratch\nARG N=7\nRUN <<EOF\necho a\necho b\nEOF\nCOPY <<F /etc/n\nn=$N\nF\n", &opts(&[])).unwrap();
        let Action::Run(r) = &steps[1].action else { panic!() };
        assert_eq!(r.argv, ["/bin/sh", "-c", "echo a\necho b\n"]);
        let Action::Copy(c) = &steps[2].action else { panic!() };
        assert_eq!(c.heredocs, [("F".to_string(), "n=7\n".to_string())]);
        assert!(c.sources.is_empty());
    }

    #[test]
    fn durations_as_go_prints_them() {
        assert_eq!(go_duration(5_000_000_000), "5s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("x"), None);
    }
}
