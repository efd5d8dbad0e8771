//! Image commands: load, save, import, export, images, tag, rmi, inspect, image prune. They work
//! on the store directly under its lock, whether or not an agent runs.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::path::Path;

use serde_json::{json, Value};

use berth_runtime::image::db::ImageRecord;
use berth_runtime::image::import::{ImportOptions, ImportSource};
use berth_runtime::image::platform::Platform;
use berth_runtime::image::reference::{familiar, split_tag, Reference};
use berth_runtime::image::store::{Removed, Store};
use berth_runtime::timefmt;
use berth_runtime::Error;

use super::{command, group, op_err, CliError, Command, Ctx};
use crate::term::format::Format;
use crate::term::output::{docker_time, human_ago, human_size, is_tty, table, Progress};
use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};

const FORMAT: Opt = opt("format", None, Some("string"), "Format output: \"json\" for one JSON object per line");

const LOAD_OPTS: &[Opt] = &[
    opt("input", Some('i'), Some("string"), "Read from tar archive file, instead of STDIN"),
    opt("quiet", Some('q'), None, "Suppress the load output"),
    opt("platform", None, Some("string"), "Load only the given platform (os/arch[/variant]) from a multi-platform archive"),
];
pub const LOAD: Cmd = cmd("berth load", "[OPTIONS]", "Load an image from a tar archive or STDIN", LOAD_OPTS, 0, Some(0));
const IMAGE_LOAD: Cmd = Cmd { path: "berth image load", ..LOAD };

const SAVE_OPTS: &[Opt] = &[opt("output", Some('o'), Some("string"), "Write to a file, instead of STDOUT")];
pub const SAVE: Cmd = cmd(
    "berth save",
    "[OPTIONS] IMAGE [IMAGE...]",
    "Save one or more images to a tar archive (streamed to STDOUT by default)",
    SAVE_OPTS,
    1,
    None,
);
const IMAGE_SAVE: Cmd = Cmd { path: "berth image save", ..SAVE };

const IMPORT_OPTS: &[Opt] = &[
    opt(
        "change",
        Some('c'),
        Some("list"),
        "Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)",
    ),
    opt("message", Some('m'), Some("string"), "Set commit message for imported image"),
    opt("platform", None, Some("string"), "Set platform (os/arch[/variant]) of the image (default: this machine's)"),
];
pub const IMPORT: Cmd = cmd(
    "berth import",
    "[OPTIONS] file|directory|- [REPOSITORY[:TAG]]",
    "Import the contents from a tarball or directory to create a filesystem image",
    IMPORT_OPTS,
    1,
    Some(2),
);
const IMAGE_IMPORT: Cmd = Cmd { path: "berth image import", ..IMPORT };

const EXPORT_OPTS: &[Opt] = &[opt("output", Some('o'), Some("string"), "Write to a file, instead of STDOUT")];
pub const EXPORT: Cmd = cmd(
    "berth export",
    "[OPTIONS] CONTAINER",
    "Export a container's filesystem as a tar archive (an image name exports its merged layers)",
    EXPORT_OPTS,
    1,
    Some(1),
);

const IMAGES_OPTS: &[Opt] = &[
    opt("all", Some('a'), None, "Show all images"),
    opt("digests", None, None, "Show digests"),
    opt("filter", Some('f'), Some("filter"), "Filter output based on conditions provided (reference=PATTERN, dangling=true|false)"),
    FORMAT,
    opt("no-trunc", None, None, "Don't truncate output"),
    opt("quiet", Some('q'), None, "Only show image IDs"),
];
pub const IMAGES: Cmd = cmd("berth images", "[OPTIONS] [REPOSITORY[:TAG]]", "List images", IMAGES_OPTS, 0, Some(1));
const IMAGE_LS: Cmd = Cmd { path: "berth image ls", ..IMAGES };

pub const TAG: Cmd =
    cmd("berth tag", "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", &[], 2, Some(2));
const IMAGE_TAG: Cmd = Cmd { path: "berth image tag", ..TAG };

const RMI_OPTS: &[Opt] = &[opt("force", Some('f'), None, "Force removal of the image")];
pub const RMI: Cmd = cmd("berth rmi", "[OPTIONS] IMAGE [IMAGE...]", "Remove one or more images", RMI_OPTS, 1, None);
const IMAGE_RM: Cmd = Cmd { path: "berth image rm", ..RMI };

const INSPECT_OPTS: &[Opt] =
    &[opt("format", Some('f'), Some("string"), "Format output: \"json\" for one JSON object per line, or a {{.Field}} template")];
pub const INSPECT: Cmd =
    cmd("berth inspect", "[OPTIONS] NAME|ID [NAME|ID...]", "Return low-level information on images", INSPECT_OPTS, 1, None);
const IMAGE_INSPECT: Cmd = Cmd { path: "berth image inspect", about: "Display detailed information on one or more images", ..INSPECT };

const PRUNE_OPTS: &[Opt] = &[
    opt("all", Some('a'), None, "Remove all unused images, not just dangling ones"),
    opt("force", Some('f'), None, "Do not prompt for confirmation"),
];
const IMAGE_PRUNE: Cmd = cmd("berth image prune", "[OPTIONS]", "Remove unused images", PRUNE_OPTS, 0, Some(0));

pub const GROUP: Cmd = group("berth image", "Manage images");

const IMAGE_BUILD: Cmd = Cmd { path: "berth image build", ..super::build::BUILD };

pub const SUBCOMMANDS: &[Command] = &[
    command("history", &super::history::IMAGE_HISTORY, super::history::image_history),
    command("build", &IMAGE_BUILD, super::build::build),
    command("import", &IMAGE_IMPORT, import),
    command("inspect", &IMAGE_INSPECT, inspect),
    command("load", &IMAGE_LOAD, load),
    command("ls", &IMAGE_LS, images),
    command("list", &IMAGE_LS, images),
    command("prune", &IMAGE_PRUNE, prune),
    #[cfg(feature = "registry")]
    command("pull", &super::registry::IMAGE_PULL, super::registry::pull),
    #[cfg(feature = "registry")]
    command("push", &super::registry::IMAGE_PUSH, super::registry::push),
    command("rm", &IMAGE_RM, rmi),
    command("remove", &IMAGE_RM, rmi),
    command("save", &IMAGE_SAVE, save),
    command("tag", &IMAGE_TAG, tag),
];

fn out_err(e: io::Error) -> CliError {
    // A closed pipe (`berth images | head`) is not worth an error line.
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    CliError::Op(Error::io("write output", e))
}

fn platform(m: &Matches) -> Result<Option<Platform>, CliError> {
    Ok(m.value("platform").map(Platform::parse).transpose()?)
}

/// Images that containers (running or not) are made from, as Docker counts them.
fn used_images(ctx: &Ctx) -> Vec<berth_runtime::digest::Digest> {
    berth_runtime::container::record::list(&ctx.root).0.into_iter().map(|r| r.image_id).collect()
}

pub fn load(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let plat = platform(m)?;
    let quiet = m.flag("quiet");
    let (src, total): (Box<dyn Read>, Option<u64>) = match m.value("input") {
        Some(p) => {
            let f = File::open(p).map_err(|e| Error::io(format!("open {p}"), e))?;
            let len = f.metadata().ok().map(|md| md.len());
            (Box::new(f), len)
        }
        None => {
            if is_tty(0) {
                return Err(op_err("requested load from stdin, but stdin is empty"));
            }
            (Box::new(io::stdin().lock()), None)
        }
    };
    let show = !quiet && is_tty(2);
    let mut progress = Progress::new(src, total, "Loading", show);
    let (loaded, skipped) = ctx.store()?.load_reporting(&mut progress, plat.as_ref())?;
    progress.done();
    if !quiet {
        // Artifacts, attestations, signatures: not images, said on stderr so scripts reading
        // stdout see Docker's lines only.
        for s in &skipped {
            eprintln!("Skipped {s}");
        }
    }
    if !quiet {
        let mut out = io::stdout().lock();
        for l in &loaded {
            if l.tags.is_empty() {
                writeln!(out, "Loaded image ID: {}", l.id).map_err(out_err)?;
            }
            for t in &l.tags {
                writeln!(out, "Loaded image: {}", familiar(t)).map_err(out_err)?;
            }
        }
    }
    Ok(0)
}

/// Where `save`/`export` write: `-o FILE`, or stdout unless it is a terminal.
fn to_output(
    m: &Matches,
    write: impl FnOnce(&mut dyn Write) -> berth_runtime::Result<()>,
    to_file: impl FnOnce(&Path) -> berth_runtime::Result<()>,
) -> Result<i32, CliError> {
    match m.value("output") {
        Some(p) => to_file(Path::new(p))?,
        None => {
            if is_tty(1) {
                return Err(op_err("cowardly refusing to save to a terminal. Use the -o flag or redirect"));
            }
            write(&mut io::stdout().lock())?;
        }
    }
    Ok(0)
}

pub fn save(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let store = ctx.store()?;
    let names = m.args().to_vec();
    to_output(m, |w| store.save(&names, w), |p| store.save_to(&names, p))
}

/// `export CONTAINER` as Docker (the container's file system with its changes); an image name
/// is accepted too, as berth's extension.
pub fn export(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let store = ctx.store()?;
    let name = &m.args()[0];
    let (recs, _) = berth_runtime::container::record::list(&ctx.root);
    let container = berth_runtime::container::record::find(&recs, name).ok().cloned();
    let copy = std::fs::read_to_string(ctx.root.join("storage-driver")).is_ok_and(|s| s.trim() == "copy");
    if container.is_none() && Store::find(&store.db()?, name).is_err() {
        return Err(CliError::Op(Error::no_such_container(name)));
    }
    let write = |w: &mut dyn Write| match &container {
        Some(r) => store.export_container(&r.layers, &berth_runtime::container::record::dir(&ctx.root, &r.id), copy, w),
        None => store.export_image(name, w),
    };
    to_output(
        m,
        |w| write(w),
        |p| {
            let tmp = p.with_extension(format!("berth-{}.tmp", std::process::id()));
            let res = File::create(&tmp).map_err(|e| Error::io_at("create", &tmp, e)).and_then(|mut f| {
                write(&mut f)?;
                f.sync_all().map_err(|e| Error::io_at("fsync", &tmp, e))?;
                std::fs::rename(&tmp, p).map_err(|e| Error::io_at("rename to", p, e))
            });
            if res.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            res
        },
    )
}

pub fn import(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let src = &m.args()[0];
    if src.contains("://") {
        return Err(op_err(format!("importing from a URL is not supported here ({src}): download it first")));
    }
    let opts = ImportOptions {
        reference: m.args().get(1).cloned(),
        changes: m.values("change").into_iter().map(str::to_string).collect(),
        message: m.value("message").map(str::to_string),
        platform: platform(m)?,
    };
    let store = ctx.store()?;
    let id = if src == "-" {
        store.import(ImportSource::Stream(Box::new(io::stdin().lock())), &opts)?
    } else if Path::new(src).is_dir() {
        store.import(ImportSource::Dir(Path::new(src)), &opts)?
    } else {
        let f = File::open(src).map_err(|e| Error::io(format!("open {src}"), e))?;
        store.import(ImportSource::Stream(Box::new(f)), &opts)?
    };
    println!("{id}");
    Ok(0)
}

fn created_secs(i: &ImageRecord) -> Option<i64> {
    i.created.as_deref().and_then(timefmt::parse_rfc3339)
}

pub fn images(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    let (no_trunc, digests) = (m.flag("no-trunc"), m.flag("digests"));
    // The argument and every `--filter reference=` are patterns matched as Docker's
    // FamiliarMatch does (`librarytest/*`, `busybox:1.*`); a full name (`docker.io/library/x`)
    // also matches as before.
    let mut patterns: Vec<String> = m.args().first().cloned().into_iter().collect();
    let mut dangling: Option<bool> = None;
    for f in m.values("filter") {
        match f.split_once('=') {
            Some(("reference", p)) => patterns.push(p.to_string()),
            Some(("dangling", "true" | "1")) => dangling = Some(true),
            Some(("dangling", "false" | "0")) => dangling = Some(false),
            Some(("dangling", v)) => return Err(op_err(format!("invalid filter 'dangling={v}'"))),
            _ => return Err(op_err(format!("invalid filter '{f}': berth supports reference= and dangling="))),
        }
    }
    // (pattern, the repository and tag it names when it is a plain reference)
    type Matcher = (String, Option<(String, Option<String>)>);
    let matchers: Vec<Matcher> = patterns
        .iter()
        .map(|f| {
            // `busybox` matches every tag of the repository; `busybox:1` only that tag.
            let has_tag = f.rsplit('/').next().is_some_and(|l| l.contains(':'));
            let exact = Reference::parse(f).ok().map(|r| (r.repo, if has_tag { r.tag } else { None }));
            // A malformed pattern that is not a name either is refused, as Docker does.
            if exact.is_none() {
                berth_runtime::image::reference::path_match(f, "")?;
            }
            Ok((f.clone(), exact))
        })
        .collect::<Result<_, berth_runtime::Error>>()?;
    let wanted = |full: &str| -> Result<bool, berth_runtime::Error> {
        for (p, exact) in &matchers {
            let (repo, tag) = split_tag(full);
            if exact.as_ref().is_some_and(|(frepo, ftag)| repo == frepo && ftag.as_deref().is_none_or(|ft| ft == tag)) {
                return Ok(true);
            }
            if berth_runtime::image::reference::reference_matches(p, full)? {
                return Ok(true);
            }
        }
        Ok(matchers.is_empty())
    };
    let store = ctx.store()?;
    let db = store.db()?;
    let mut imgs: Vec<&ImageRecord> = db.images.iter().collect();
    imgs.sort_by_key(|i| std::cmp::Reverse(created_secs(i).unwrap_or(0)));
    // Build steps (the cache) are hidden like Docker's intermediate images, unless -a.
    let steps = if m.flag("all") { Vec::new() } else { berth_runtime::build::exec::cache_ids(&store) };
    // One row per tag; an untagged image is one <none> row.
    let mut rows: Vec<(&ImageRecord, String, String)> = Vec::new();
    for i in imgs {
        if dangling.is_some_and(|d| d != i.tags.is_empty()) {
            continue;
        }
        if i.tags.is_empty() {
            if matchers.is_empty() && !steps.contains(&i.id.to_string()) {
                rows.push((i, "<none>".into(), "<none>".into()));
            }
            continue;
        }
        for t in &i.tags {
            if !wanted(t)? {
                continue;
            }
            let (repo, tag) = split_tag(t);
            rows.push((i, familiar(repo).to_string(), tag.to_string()));
        }
    }
    let id = |i: &ImageRecord| if no_trunc { i.id.to_string() } else { i.id.short().to_string() };
    let digest = |i: &ImageRecord, repo: &str| {
        i.digests
            .iter()
            .find(|d| familiar(d.split('@').next().unwrap_or("")) == repo)
            .and_then(|d| d.split('@').nth(1))
            .unwrap_or("<none>")
            .to_string()
    };
    let mut out = io::stdout().lock();
    if m.flag("quiet") {
        let mut seen = std::collections::HashSet::new();
        for (i, _, _) in &rows {
            if seen.insert(&i.id) {
                writeln!(out, "{}", id(i)).map_err(out_err)?;
            }
        }
        return Ok(0);
    }
    let created = |i: &ImageRecord| created_secs(i).map_or_else(|| "N/A".to_string(), human_ago);
    match fmt {
        Format::Json => {
            for (i, repo, tag) in &rows {
                let line = json!({
                    "Containers": "N/A",
                    "CreatedAt": created_secs(i).map_or_else(String::new, docker_time),
                    "CreatedSince": created(i),
                    "Digest": digest(i, repo),
                    "ID": id(i),
                    "Repository": repo,
                    "SharedSize": "N/A",
                    "Size": human_size(i.size),
                    "Tag": tag,
                    "UniqueSize": "N/A",
                    "VirtualSize": human_size(i.size),
                });
                writeln!(out, "{}", crate::term::format::json_line(&line)).map_err(out_err)?;
            }
        }
        Format::Table => {
            let header: &[&str] = if digests {
                &["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
            } else {
                &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
            };
            let table_rows: Vec<Vec<String>> = rows
                .iter()
                .map(|(i, repo, tag)| {
                    let mut r = vec![repo.clone(), tag.clone()];
                    if digests {
                        r.push(digest(i, repo));
                    }
                    r.extend([id(i), created(i), human_size(i.size)]);
                    r
                })
                .collect();
            table(&mut out, header, &table_rows).map_err(out_err)?;
        }
        Format::Template(t) => {
            let vs: Vec<Value> = rows
                .iter()
                .map(|(i, repo, tag)| {
                    json!({
                        "ID": id(i), "Repository": repo, "Tag": tag, "Digest": digest(i, repo), "CreatedSince": created(i),
                        "CreatedAt": created_secs(i).map_or_else(String::new, docker_time), "Size": human_size(i.size),
                        "VirtualSize": human_size(i.size), "SharedSize": "N/A", "UniqueSize": "N/A", "Containers": "N/A",
                    })
                })
                .collect();
            let titles = json!({
                "ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "CreatedSince": "CREATED",
                "CreatedAt": "CREATED AT", "Size": "SIZE", "VirtualSize": "VIRTUAL SIZE", "SharedSize": "SHARED SIZE",
                "UniqueSize": "UNIQUE SIZE", "Containers": "CONTAINERS",
            });
            out.write_all(crate::term::format::render_rows(&t, &titles, &vs)?.as_bytes()).map_err(out_err)?;
        }
    }
    Ok(0)
}

pub fn tag(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    ctx.store()?.tag(&m.args()[0], &m.args()[1])?;
    Ok(0)
}

fn print_removed(out: &mut impl Write, r: &[Removed]) -> Result<(), CliError> {
    for x in r {
        match x {
            Removed::Untagged(t) => writeln!(out, "Untagged: {t}"),
            Removed::Deleted(d) => writeln!(out, "Deleted: {d}"),
        }
        .map_err(out_err)?;
    }
    Ok(())
}

/// Like Docker, each name is tried on its own; any failure makes the exit code 1.
pub fn rmi(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let store = ctx.store()?;
    let used = used_images(ctx);
    let in_use = |d: &berth_runtime::digest::Digest| used.contains(d);
    let mut code = 0;
    for name in m.args() {
        match store.remove(std::slice::from_ref(name), m.flag("force"), &in_use) {
            Ok(r) => print_removed(&mut io::stdout().lock(), &r)?,
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn prune(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let all = m.flag("all");
    if !m.flag("force") {
        let what = if all { "all images without at least one container associated to them" } else { "all dangling images" };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer).map_err(|e| Error::io("read answer", e))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Ok(0);
        }
    }
    let used = used_images(ctx);
    let (removed, freed) = ctx.store()?.prune(all, &|d| used.contains(d))?;
    let mut out = io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Images:").map_err(out_err)?;
        print_removed(&mut out, &removed)?;
        writeln!(out).map_err(out_err)?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(freed)).map_err(out_err)?;
    Ok(0)
}

/// An image's `Config` as Docker's inspect shows it: every field of its container config, null
/// or empty when the image leaves it unset, so that templates like `{{json .Config.OnBuild}}`
/// print `null` instead of failing on a missing key.
fn docker_config(cfg: Option<&Value>) -> Value {
    let mut cfg = cfg.cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    if let Some(o) = cfg.as_object_mut() {
        let defaults = [
            ("Hostname", json!("")),
            ("Domainname", json!("")),
            ("User", json!("")),
            ("AttachStdin", json!(false)),
            ("AttachStdout", json!(false)),
            ("AttachStderr", json!(false)),
            ("Tty", json!(false)),
            ("OpenStdin", json!(false)),
            ("StdinOnce", json!(false)),
            ("Env", Value::Null),
            ("Cmd", Value::Null),
            ("Image", json!("")),
            ("Volumes", Value::Null),
            ("WorkingDir", json!("")),
            ("Entrypoint", Value::Null),
            ("OnBuild", Value::Null),
            ("Labels", Value::Null),
        ];
        for (k, d) in defaults {
            o.entry(k).or_insert(d);
        }
    }
    cfg
}

/// The inspect document, close to Docker's.
pub fn inspect_json(store: &Store, i: &ImageRecord) -> Result<Value, CliError> {
    let config: Value = serde_json::from_slice(&store.config(i)?).map_err(|e| op_err(format!("config of {}: {e}", i.id)))?;
    let mut v = json!({
        "Id": i.id.to_string(),
        "RepoTags": i.tags.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "RepoDigests": i.digests.iter().map(|d| familiar(d)).collect::<Vec<_>>(),
        "Parent": "",
        "Comment": config.get("comment").or_else(|| config.pointer("/history/0/comment")).cloned().unwrap_or(json!("")),
        "Created": i.created.clone().unwrap_or_default(),
        "Author": config.get("author").cloned().unwrap_or(json!("")),
        "Config": docker_config(config.get("config")),
        "Architecture": i.arch,
        "Os": i.os,
        "Size": i.size,
        "RootFS": {"Type": "layers", "Layers": i.layers.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
    });
    if let Some(var) = &i.variant {
        v["Variant"] = json!(var);
    }
    Ok(v)
}

pub fn inspect(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    let store = ctx.store()?;
    let db = store.db()?;
    let mut docs = Vec::new();
    let mut code = 0;
    for name in m.args() {
        match Store::find(&db, name) {
            Ok((i, _)) => docs.push(inspect_json(&store, i)?),
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
            }
        }
    }
    print_docs(&fmt, docs)?;
    Ok(code)
}

/// Inspect output: a pretty JSON array (Docker's default), one object per line, or a template.
pub fn print_docs(fmt: &Format, docs: Vec<Value>) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    match fmt {
        Format::Table => {
            let mut buf = Vec::new();
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"    "));
            serde::Serialize::serialize(&Value::Array(docs), &mut ser).map_err(|e| op_err(e.to_string()))?;
            out.write_all(&buf).map_err(out_err)?;
            writeln!(out).map_err(out_err)?;
        }
        Format::Json => {
            for d in &docs {
                writeln!(out, "{}", crate::term::format::json_line(d)).map_err(out_err)?;
            }
        }
        Format::Template(t) => {
            for d in &docs {
                writeln!(out, "{}", crate::term::format::render_map(t, d)?).map_err(out_err)?;
            }
        }
    }
    Ok(())
}
