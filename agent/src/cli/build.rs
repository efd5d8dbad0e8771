//! `berth build`: the front end and executor are the runtime's (`runtime::build`); here the
//! options, the context (a directory, or a tarball or lone Dockerfile on stdin), and the runner of
//! RUN steps: each one an ordinary container made and started through the agent (the isolation of
//! `run`), its output relayed as progress, its changes committed as the step's layer, and the
//! container removed whatever happened.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};
use berth_proto::socket::{Request, Response, RunOptions};
use berth_runtime::build::eval::{Options, Run};
use berth_runtime::build::exec::{self, Request as BuildRequest, Runner};
use berth_runtime::container::{changes, record};
use berth_runtime::image::db::ImageRecord;
use berth_runtime::image::platform::Platform;
use berth_runtime::image::store::Store;
use berth_runtime::{Error, Result};
use serde_json::{Map, Value};

use super::client::Client;
use super::{op_err, CliError, Ctx};

const BUILD_OPTS: &[Opt] = &[
    opt("build-arg", None, Some("list"), "Set build-time variables"),
    opt("file", Some('f'), Some("string"), "Name of the Dockerfile (default: \"PATH/Dockerfile\")"),
    opt("iidfile", None, Some("string"), "Write the image ID to the file"),
    opt("label", None, Some("list"), "Set metadata for an image"),
    opt("network", None, Some("string"), "Set the networking mode for the RUN instructions during build (bridge, host, none)"),
    opt("no-cache", None, None, "Do not use cache when building the image"),
    opt("platform", None, Some("string"), "Set platform if server is multi-platform capable (only this board's)"),
    opt("progress", None, Some("string"), "Set type of progress output (\"plain\")"),
    opt("quiet", Some('q'), None, "Suppress the build output and print image ID on success"),
    opt("tag", Some('t'), Some("list"), "Name and optionally a tag in the \"name:tag\" format"),
    opt("target", None, Some("string"), "Set the target build stage to build"),
];

pub const BUILD: Cmd = cmd("berth build", "[OPTIONS] PATH | -", "Build an image from a Dockerfile", BUILD_OPTS, 1, Some(1));

fn cli(e: CliError) -> Error {
    match e {
        CliError::Op(e) => e,
        CliError::Usage(u) => Error::invalid(format!("{u:?}")),
        CliError::Exit(c) => Error::invalid(format!("the agent refused (exit {c})")),
    }
}

/// RUN steps in containers of the agent.
struct AgentRunner<'a> {
    ctx: &'a Ctx,
    store: &'a Store,
    copy: bool,
}

impl AgentRunner<'_> {
    fn create(&self, c: &mut Client, image: &ImageRecord, run: &Run) -> Result<String> {
        let (first, rest) = run.argv.split_first().ok_or_else(|| Error::invalid("empty command"))?;
        let o = RunOptions {
            image: image.id.to_string(),
            entrypoint: Some(first.clone()),
            cmd: rest.to_vec(),
            env: run.env.clone(),
            workdir: Some(run.workdir.clone()),
            user: (!run.user.is_empty()).then(|| run.user.clone()),
            net: run.network.clone().filter(|n| n != "default"),
            ..Default::default()
        };
        match c.call(&Request::Create(Box::new(o))).map_err(cli)? {
            Response::Created { id, .. } => Ok(id),
            Response::Error { msg, .. } => Err(Error::invalid(msg)),
            other => Err(Error::invalid(format!("unexpected answer from the agent: {other:?}"))),
        }
    }

    fn start_and_wait(&self, c: &mut Client, id: &str, out: &mut dyn Write) -> Result<i32> {
        let null = File::open("/dev/null").map_err(|e| Error::io("open /dev/null", e))?;
        let (mut ours, theirs) = UnixStream::pair().map_err(|e| Error::io("socket pair for RUN output", e))?;
        let fds = [null.as_raw_fd(), theirs.as_raw_fd(), theirs.as_raw_fd()];
        c.send(&Request::Start { id: id.to_string(), attach: true, wait: true }, &fds).map_err(cli)?;
        // Ours closes once the container's processes are gone (they die with its pid 1).
        drop(theirs);
        drop(null);
        let mut buf = [0u8; 8192];
        loop {
            match ours.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.write_all(&buf[..n]).map_err(|e| Error::io("write build output", e))?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read RUN output", e)),
            }
        }
        match c.recv().map_err(cli)? {
            Response::Exited { code } => Ok(code),
            Response::Error { msg, .. } => Err(Error::invalid(msg)),
            other => Err(Error::invalid(format!("unexpected answer from the agent: {other:?}"))),
        }
    }
}

impl Runner for AgentRunner<'_> {
    fn run(
        &mut self,
        image: &ImageRecord,
        _config: &Map<String, Value>,
        run: &Run,
        out: &mut dyn Write,
        layer: &Path,
    ) -> Result<(i32, bool)> {
        let mut c = Client::connect(self.ctx).map_err(cli)?;
        let id = self.create(&mut c, image, run)?;
        let res = (|| {
            let code = self.start_and_wait(&mut c, &id, out)?;
            if code != 0 {
                return Ok((code, false));
            }
            let ch = changes::of_container(self.store, &record::dir(&self.ctx.root, &id), &image.layers, self.copy)?;
            if ch.entries.is_empty() {
                return Ok((0, false));
            }
            let f = File::create(layer).map_err(|e| Error::io_at("create", layer, e))?;
            berth_runtime::image::commit::write_layer(&ch, io::BufWriter::with_capacity(256 * 1024, f))?;
            Ok((0, true))
        })();
        // The step's container never outlives it, success or not.
        let mut c = Client::connect(self.ctx).map_err(cli)?;
        let _ = c.call(&Request::Remove { id, force: true, volumes: true });
        res
    }

    /// `ADD URL`: the registry client's transport (proxy, `certs.d`, insecure hosts from berth.toml).
    #[cfg(feature = "registry")]
    fn fetch(&mut self, url: &str, out: &mut dyn Write) -> Result<u64> {
        let opts = crate::cli::registry::options(self.ctx).map_err(cli)?;
        berth_registry::fetch::download(url, &opts, out)
    }

    /// `FROM` an image the store lacks: pulled as `berth pull` would (quietly: the steps follow).
    #[cfg(feature = "registry")]
    fn pull(&mut self, store: &Store, name: &str, platform: Option<&str>) -> Result<bool> {
        let opts = crate::cli::registry::options(self.ctx).map_err(cli)?;
        let r = berth_runtime::image::reference::Reference::parse(name)?;
        let plat = platform.map(berth_runtime::image::platform::Platform::parse).transpose()?;
        berth_registry::pull::pull(store, &opts, &r, plat.as_ref(), &|_| {})?;
        Ok(true)
    }
}

fn kv(list: Vec<&str>, what: &str) -> std::result::Result<Vec<(String, String)>, CliError> {
    list.into_iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            // `--build-arg NAME` takes the value from the environment, as Docker's.
            None if what == "build-arg" => {
                std::env::var(a).map(|v| (a.to_string(), v)).map_err(|_| op_err(format!("--build-arg {a}: not set in the environment")))
            }
            None => Ok((a.to_string(), String::new())),
        })
        .collect()
}

/// Removes a directory made for this build when dropped.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = berth_runtime::fsutil::remove_all(d);
        }
    }
}

pub fn build(ctx: &Ctx, m: &Matches) -> std::result::Result<i32, CliError> {
    let store = ctx.store()?;
    let arg = &m.args()[0];
    let mut temp = TempDir(None);
    // The context, and the Dockerfile when it came on stdin.
    let (context, stdin_df): (Option<PathBuf>, Option<String>) = if arg == "-" {
        let mut data = Vec::new();
        io::stdin().lock().read_to_end(&mut data).map_err(|e| Error::io("read stdin", e))?;
        let tar = {
            let (_, mut dec) = berth_runtime::compress::decoder(BufReader::new(&data[..])).map_err(|e| Error::io("read stdin", e))?;
            let mut head = [0u8; 512];
            dec.read_exact(&mut head).is_ok() && berth_runtime::tarstream::is_header(&head) && &head[257..262] == b"ustar"
        };
        if tar {
            let dir = ctx.root.join("build").join(format!("context-{}", std::process::id()));
            temp.0 = Some(dir.clone());
            let (_, dec) = berth_runtime::compress::decoder(BufReader::new(&data[..])).map_err(|e| Error::io("read stdin", e))?;
            berth_runtime::image::layer::unpack(dec, &dir).map_err(|e| e.context("build context from stdin"))?;
            (Some(dir.join(berth_runtime::image::layer::ROOT)), None)
        } else {
            (None, Some(String::from_utf8(data).map_err(|_| op_err("the Dockerfile on stdin is not UTF-8 text"))?))
        }
    } else {
        let p = PathBuf::from(arg);
        if arg.contains("://") || arg.starts_with("git@") {
            return Err(op_err(format!("unable to prepare context: {arg}: remote contexts are not supported by berth")));
        }
        if !p.is_dir() {
            return Err(op_err(format!("unable to prepare context: path {arg:?} not found")));
        }
        (Some(p), None)
    };
    let (dockerfile, file) = match (stdin_df, m.value("file")) {
        (Some(text), _) => (text, "Dockerfile".to_string()),
        (None, Some("-")) => {
            let mut t = String::new();
            io::stdin().read_to_string(&mut t).map_err(|e| Error::io("read Dockerfile from stdin", e))?;
            (t, "Dockerfile".into())
        }
        (None, f) => {
            let path = match f {
                Some(f) if Path::new(f).is_absolute() || Path::new(f).exists() => PathBuf::from(f),
                Some(f) => context.as_ref().map_or_else(|| PathBuf::from(f), |c| c.join(f)),
                None => context.as_ref().map(|c| c.join("Dockerfile")).unwrap_or_else(|| PathBuf::from("Dockerfile")),
            };
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io_at("failed to read dockerfile", &path, e))?;
            (text, path.file_name().map_or("Dockerfile".into(), |n| n.to_string_lossy().into_owned()))
        }
    };
    let host = Platform::host();
    if let Some(p) = m.value("platform") {
        let want = Platform::parse(p)?;
        if want.os != host.os || want.arch != host.arch {
            let v = host.variant.as_ref().map(|v| format!("/{v}")).unwrap_or_default();
            return Err(op_err(format!("berth builds natively: --platform {p} is not this board's ({}/{}{v})", host.os, host.arch)));
        }
    }
    let network = match m.value("network") {
        None | Some("default") => None,
        // RUN steps are ordinary containers: the agent's networks serve them as `run`'s.
        Some(n @ ("host" | "none" | "bridge")) => Some(n.to_string()),
        Some(n) => return Err(op_err(format!("network mode {n:?} not supported for build (bridge, host, none or default)"))),
    };
    if let Some(p) = m.value("progress") {
        if !matches!(p, "plain" | "auto" | "tty" | "quiet") {
            return Err(op_err(format!("invalid progress mode {p:?} (plain)")));
        }
    }
    let req = BuildRequest {
        dockerfile,
        context,
        opts: Options {
            file,
            build_args: kv(m.values("build-arg"), "build-arg")?,
            target: m.value("target").map(String::from),
            platform: host,
        },
        tags: m.values("tag").into_iter().map(String::from).collect(),
        labels: kv(m.values("label"), "label")?,
        no_cache: m.flag("no-cache"),
        network,
    };
    let copy = std::fs::read_to_string(ctx.root.join("storage-driver")).is_ok_and(|s| s.trim() == "copy");
    let mut runner = AgentRunner { ctx, store: &store, copy };
    let quiet = m.flag("quiet") || m.value("progress") == Some("quiet");
    let mut sink = io::sink();
    let mut err = io::stderr().lock();
    let out: &mut dyn Write = if quiet { &mut sink } else { &mut err };
    let id = exec::build(&store, &req, &mut runner, out)?;
    if let Some(f) = m.value("iidfile") {
        // As Docker's: the ID alone, no newline.
        berth_runtime::fsutil::atomic_write(Path::new(f), id.to_string().as_bytes())?;
    }
    if quiet {
        println!("{id}");
    }
    Ok(0)
}
