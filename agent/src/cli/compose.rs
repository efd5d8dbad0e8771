//! `berth compose`: applications of several containers from a compose file, as `docker compose`
//! runs them. The file is read by the `berth-compose` crate; each service becomes the `run` words
//! berth already parses, created and started through the agent like `berth run -d`. Containers
//! carry Compose's labels (project, service, number, config hash), so every command finds the
//! project's containers from the records and `up` re-creates only what changed.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use berth_compose::model::{Condition, Project};
use berth_compose::project::{load, Loaded, Options};
use berth_compose::translate::{self, NetworkPlan, Origin, Support};
use berth_compose::validate::{start_levels, start_order, with_dependencies};
use berth_runtime::container::record::{self, Record, Status};
use berth_runtime::Error;

use berth_proto::args::{self, cmd, opt, Cmd, Matches, Opt, Parsed};
use berth_proto::socket::{NetworkRequest, Request, Response};
use berth_runtime::net::network::Store as NetStore;

use super::client::Client;
use super::{op_err, CliError, Ctx};
use crate::daemon::health;
use crate::term::output::{human_ago, human_size, is_tty, table};

const COMPOSE_OPTS: &[Opt] = &[
    opt("file", Some('f'), Some("stringArray"), "Compose configuration files"),
    opt("project-name", Some('p'), Some("string"), "Project name"),
    opt("env-file", None, Some("stringArray"), "Specify an alternate environment file"),
];

pub const COMPOSE: Cmd = Cmd {
    path: "berth compose",
    usage: "[OPTIONS] COMMAND",
    about: "Define and run multi-container applications",
    opts: COMPOSE_OPTS,
    min_args: 0,
    max_args: None,
    stop_at_positional: true,
    subcommands: &[
        ("config", "Parse, resolve and render compose file in canonical format"),
        ("down", "Stop and remove containers and volumes"),
        ("exec", "Execute a command in a running container"),
        ("images", "List images used by the created containers"),
        ("logs", "View output from containers"),
        ("ps", "List containers"),
        ("restart", "Restart service containers"),
        ("rm", "Removes stopped service containers"),
        ("start", "Start services"),
        ("stop", "Stop services"),
        ("top", "Display the running processes"),
        ("up", "Create and start containers"),
    ],
};

const UP: Cmd = cmd(
    "berth compose up",
    "[OPTIONS] [SERVICE...]",
    "Create and start containers",
    &[
        opt("detach", Some('d'), None, "Detached mode: Run containers in the background"),
        opt("wait", None, None, "Wait for services to be running|healthy. Implies detached mode."),
        opt("force-recreate", None, None, "Recreate containers even if their configuration hasn't changed"),
        opt("no-recreate", None, None, "If containers already exist, don't recreate them"),
        opt("remove-orphans", None, None, "Remove containers for services not defined in the Compose file"),
        opt("timeout", Some('t'), Some("int"), "Use this timeout in seconds for container shutdown"),
    ],
    0,
    None,
);
const DOWN: Cmd = cmd(
    "berth compose down",
    "[OPTIONS]",
    "Stop and remove containers and volumes",
    &[
        opt(
            "volumes",
            Some('v'),
            None,
            "Remove named volumes declared in the \"volumes\" section of the Compose file and anonymous volumes attached to containers",
        ),
        opt(
            "rmi",
            None,
            Some("string"),
            "Remove images used by services. \"local\" remove only images that don't have a custom tag (\"local\"|\"all\")",
        ),
        opt("remove-orphans", None, None, "Remove containers for services not defined in the Compose file"),
        opt("timeout", Some('t'), Some("int"), "Specify a shutdown timeout in seconds"),
    ],
    0,
    Some(0),
);
const PS: Cmd = cmd(
    "berth compose ps",
    "[OPTIONS] [SERVICE...]",
    "List containers",
    &[
        opt("all", Some('a'), None, "Show all stopped containers"),
        opt("quiet", Some('q'), None, "Only display IDs"),
        opt("services", None, None, "Display services"),
        opt("format", None, Some("string"), "Format the output: table or json"),
    ],
    0,
    None,
);
const LOGS: Cmd = cmd(
    "berth compose logs",
    "[OPTIONS] [SERVICE...]",
    "View output from containers",
    &[
        opt("follow", Some('f'), None, "Follow log output"),
        opt("tail", Some('n'), Some("string"), "Number of lines to show from the end of the logs for each container (default \"all\")"),
        opt("timestamps", Some('t'), None, "Show timestamps"),
        opt("no-log-prefix", None, None, "Don't print prefix in logs"),
        opt("no-color", None, None, "Produce monochrome output (the only kind)"),
    ],
    0,
    None,
);
const TIMEOUT: &[Opt] = &[opt("timeout", Some('t'), Some("int"), "Specify a shutdown timeout in seconds")];
const START: Cmd = cmd("berth compose start", "[SERVICE...]", "Start services", &[], 0, None);
const STOP: Cmd = cmd("berth compose stop", "[OPTIONS] [SERVICE...]", "Stop services", TIMEOUT, 0, None);
const RESTART: Cmd = cmd("berth compose restart", "[OPTIONS] [SERVICE...]", "Restart service containers", TIMEOUT, 0, None);
const RM: Cmd = cmd(
    "berth compose rm",
    "[OPTIONS] [SERVICE...]",
    "Removes stopped service containers",
    &[
        opt("force", Some('f'), None, "Don't ask to confirm removal"),
        opt("stop", Some('s'), None, "Stop the containers, if required, before removing"),
        opt("volumes", Some('v'), None, "Remove any anonymous volumes attached to containers"),
    ],
    0,
    None,
);
const EXEC: Cmd = Cmd {
    stop_at_positional: true,
    ..cmd(
        "berth compose exec",
        "[OPTIONS] SERVICE COMMAND [ARGS...]",
        "Execute a command in a running container",
        &[
            opt("detach", Some('d'), None, "Detached mode: Run command in the background"),
            opt("no-TTY", Some('T'), None, "Disable pseudo-TTY allocation (default: auto-detected)"),
            opt("env", Some('e'), Some("stringArray"), "Set environment variables"),
            opt("user", Some('u'), Some("string"), "Run the command as this user"),
            opt("workdir", Some('w'), Some("string"), "Path to workdir directory for this command"),
            opt("index", None, Some("int"), "Index of the container if service has multiple replicas (default 1)"),
        ],
        2,
        None,
    )
};
const CONFIG: Cmd = cmd(
    "berth compose config",
    "[OPTIONS] [SERVICE...]",
    "Parse, resolve and render compose file in canonical format",
    &[
        opt("quiet", Some('q'), None, "Only validate the configuration, don't print anything"),
        opt("services", None, None, "Print the service names, one per line"),
        opt("volumes", None, None, "Print the volume names, one per line"),
        opt("hash", None, Some("string"), "Print the service config hash, one per line (\"*\" for all)"),
        opt("format", None, Some("string"), "Format the output: yaml or json"),
    ],
    0,
    None,
);
const IMAGES: Cmd = cmd(
    "berth compose images",
    "[OPTIONS] [SERVICE...]",
    "List images used by the created containers",
    &[opt("quiet", Some('q'), None, "Only display IDs")],
    0,
    None,
);
const TOP: Cmd = cmd("berth compose top", "[SERVICES...]", "Display the running processes", &[], 0, None);

type Sub = fn(&Ctx, &App, &Matches) -> Result<i32, CliError>;

const SUBCOMMANDS: &[(&str, &Cmd, Sub)] = &[
    ("config", &CONFIG, config),
    ("down", &DOWN, down),
    ("exec", &EXEC, exec),
    ("images", &IMAGES, images),
    ("logs", &LOGS, logs),
    ("ps", &PS, ps),
    ("restart", &RESTART, restart),
    ("rm", &RM, rm),
    ("start", &START, start),
    ("stop", &STOP, stop),
    ("top", &TOP, top),
    ("up", &UP, up),
];

/// What berth's engine can do of Compose: bridge networks with DNS and aliases, published ports,
/// DNS options, namespaced sysctls.
const SUPPORT: Support = Support { networks: true, publish: true, dns: true, sysctls: true };

/// The loaded project and what the commands need around it.
pub struct App {
    loaded: Loaded,
    origin: Origin,
}

impl App {
    fn project(&self) -> &Project {
        &self.loaded.project
    }

    fn name(&self) -> &str {
        &self.loaded.name
    }

    /// The project's containers (all states), by service then number.
    fn containers(&self, ctx: &Ctx) -> Vec<Record> {
        let (recs, _) = record::list(&ctx.root);
        let mut out: Vec<Record> =
            recs.into_iter().filter(|r| r.labels.get(translate::LABEL_PROJECT).is_some_and(|p| p == self.name())).collect();
        out.sort_by_key(|r| (service_of(r).to_string(), number_of(r)));
        out
    }

    /// The named services (all when none), checked against the file.
    fn services(&self, named: &[String]) -> Result<Vec<String>, CliError> {
        for n in named {
            if !self.project().services.contains_key(n) {
                return Err(op_err(format!("no such service: {n}")));
            }
        }
        Ok(if named.is_empty() { start_order(self.project()) } else { named.to_vec() })
    }
}

fn service_of(r: &Record) -> &str {
    r.labels.get(translate::LABEL_SERVICE).map(String::as_str).unwrap_or("")
}

fn number_of(r: &Record) -> u32 {
    r.labels.get(translate::LABEL_NUMBER).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn compose_err(e: berth_compose::model::Error) -> CliError {
    op_err(e.to_string())
}

fn load_app(m: &Matches) -> Result<App, CliError> {
    let workdir = std::env::current_dir().map_err(|e| Error::io("find the working directory", e))?;
    let opts = Options {
        files: m.values("file").into_iter().map(PathBuf::from).collect(),
        project_name: m.value("project-name").map(str::to_string),
        env_files: m.values("env-file").into_iter().map(PathBuf::from).collect(),
        workdir,
        environ: std::env::vars().collect(),
    };
    let loaded = load(&opts).map_err(compose_err)?;
    for w in &loaded.warnings {
        eprintln!("WARN[0000] {w}");
    }
    let origin = Origin {
        working_dir: loaded.dir.display().to_string(),
        config_files: loaded.files.iter().map(|f| f.display().to_string()).collect(),
    };
    Ok(App { loaded, origin })
}

/// `berth compose [OPTIONS] COMMAND ...`: `m` holds the project options and the command words.
pub fn compose(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let Some(name) = m.args().first() else {
        print!("{}", args::help(&COMPOSE));
        return Ok(0);
    };
    let (_, sub, run) = SUBCOMMANDS.iter().find(|(n, _, _)| n == name).ok_or_else(|| {
        CliError::Usage(args::UsageError { msg: format!("unknown docker command: \"compose {name}\""), cmd: COMPOSE.path })
    })?;
    let sm = match args::parse(sub, &m.args()[1..])? {
        Parsed::Help(h) => {
            print!("{h}");
            return Ok(0);
        }
        Parsed::Matches(sm) => sm,
    };
    let app = load_app(m)?;
    run(ctx, &app, &sm)
}

/// Progress as Compose prints it without a terminal: ` Container NAME  Started`.
fn progress(kind: &str, name: &str, what: &str) {
    eprintln!(" {kind} {name}  {what}");
}

fn call(c: &mut Client, req: &Request) -> Result<Response, CliError> {
    match c.call(req)? {
        Response::Error { msg, .. } => Err(op_err(msg)),
        other => Ok(other),
    }
}

fn timeout_of(m: &Matches, app: &App, service: &str) -> Result<Option<u32>, CliError> {
    if let Some(t) = m.value("timeout") {
        return t.parse().map(Some).map_err(|_| op_err(format!("invalid argument {t:?} for \"--timeout\" flag")));
    }
    Ok(app.project().services.get(service).and_then(|s| s.stop_grace_period).map(|ns| ns.div_ceil(1_000_000_000) as u32))
}

fn config(_ctx: &Ctx, app: &App, m: &Matches) -> Result<i32, CliError> {
    let p = app.project();
    let mut out = io::stdout().lock();
    let w = |e: io::Error| CliError::Op(Error::io("write output", e));
    if m.flag("quiet") {
        return Ok(0);
    }
    if m.flag("services") {
        for s in start_order(p) {
            writeln!(out, "{s}").map_err(w)?;
        }
        return Ok(0);
    }
    if m.flag("volumes") {
        for v in p.volumes.keys() {
            writeln!(out, "{v}").map_err(w)?;
        }
        return Ok(0);
    }
    if let Some(h) = m.value("hash") {
        let names: Vec<String> = if h == "*" { p.services.keys().cloned().collect() } else { h.split(',').map(str::to_string).collect() };
        for n in app.services(&names)? {
            writeln!(out, "{n} {}", berth_compose::config::config_hash(&p.services[&n])).map_err(w)?;
        }
        return Ok(0);
    }
    let mut shown = p.clone();
    if !m.args().is_empty() {
        let keep = with_dependencies(p, &app.services(m.args())?);
        shown.services.retain(|k, _| keep.contains(k));
    }
    let v = berth_compose::config::project_value(&shown);
    match m.value("format") {
        None | Some("yaml") => write!(out, "{}", v.to_yaml()).map_err(w)?,
        Some("json") => writeln!(out, "{}", serde_json::to_string_pretty(&v.to_json()).unwrap_or_default()).map_err(w)?,
        Some(f) => return Err(op_err(format!("unsupported format {f:?} (yaml, json)"))),
    }
    Ok(0)
}

/// Waits until the condition `cond` holds for `service`'s container (`up` and `--wait`).
fn wait_for(ctx: &Ctx, app: &App, c: &mut Client, service: &str, cond: Condition) -> Result<(), CliError> {
    let find = || app.containers(ctx).into_iter().find(|r| service_of(r) == service);
    let Some(first) = find() else {
        return Err(op_err(format!("dependency failed to start: service {service:?} has no container")));
    };
    let name = first.name.clone();
    match cond {
        Condition::Started => Ok(()),
        Condition::CompletedSuccessfully => match call(c, &Request::Wait { id: first.id.clone() })? {
            Response::Exited { code: 0 } => {
                progress("Container", &name, "Exited");
                Ok(())
            }
            Response::Exited { code } => Err(op_err(format!("service {service:?} didn't complete successfully: exit {code}"))),
            other => Err(op_err(format!("unexpected answer from the agent: {other:?}"))),
        },
        Condition::Healthy => {
            if first.health.is_none() {
                return Err(op_err(format!("dependency failed to start: container {name} has no healthcheck configured")));
            }
            progress("Container", &name, "Waiting");
            loop {
                let Some(r) = find() else {
                    return Err(op_err(format!("dependency failed to start: container {name} is gone")));
                };
                if let Status::Exited { code, .. } = r.status {
                    return Err(op_err(format!("dependency failed to start: container {name} exited ({code})")));
                }
                let status = health::read(&ctx.root, &r.id).and_then(|h| h["Status"].as_str().map(str::to_string));
                match status.as_deref() {
                    Some("healthy") => {
                        progress("Container", &name, "Healthy");
                        return Ok(());
                    }
                    Some("unhealthy") => return Err(op_err(format!("dependency failed to start: container {name} is unhealthy"))),
                    _ => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        }
    }
}

/// The networks `targets` join, checked before anything changes: an external one must exist,
/// the others must be what berth can make. By key: `None` for an external network.
fn network_plans(ctx: &Ctx, app: &App, targets: &[String]) -> Result<Vec<(String, Option<NetworkPlan>)>, CliError> {
    let p = app.project();
    let mut keys: Vec<&String> = targets.iter().flat_map(|s| p.services[s].networks.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let plan = translate::network_plan(p, key).map_err(|e| compose_err(e.in_file(&app.origin.config_files.join(","))))?;
        if plan.is_none() {
            let name = p.networks[key].name.clone().unwrap_or_else(|| key.clone());
            if NetStore::open(&ctx.root)?.get(&name).is_err() {
                return Err(op_err(format!("network {name} declared as external, but could not be found")));
            }
        }
        out.push((key.clone(), plan));
    }
    Ok(out)
}

/// Makes the project's networks that are missing; re-creates one whose declaration changed
/// (its config-hash label differs), removing the project's containers on it first. Returns the
/// services whose containers were removed so (they must be re-created).
fn ensure_networks(
    ctx: &Ctx,
    app: &App,
    c: &mut Client,
    plans: &[(String, Option<NetworkPlan>)],
    m: &Matches,
) -> Result<Vec<String>, CliError> {
    let p = app.project();
    let store = NetStore::open(&ctx.root)?;
    let mut forced: Vec<String> = Vec::new();
    for (key, plan) in plans {
        let Some(plan) = plan else { continue };
        if let Ok(have) = store.get(&plan.name) {
            let ours = have.labels.get(translate::LABEL_PROJECT).is_some_and(|v| v == app.name());
            if !ours || have.labels.get(translate::LABEL_HASH) == Some(&plan.hash) {
                // Same declaration, or a network of that name made by hand: used as it is.
                continue;
            }
            progress("Network", &plan.name, "Recreate");
            let users: Vec<String> = p.services.iter().filter(|(_, s)| s.networks.contains_key(key)).map(|(k, _)| k.clone()).collect();
            let recs: Vec<Record> = app.containers(ctx).into_iter().filter(|r| users.iter().any(|u| u == service_of(r))).collect();
            remove_containers(ctx, &recs, app, m, false)?;
            for u in users {
                if !forced.contains(&u) {
                    forced.push(u);
                }
            }
            call(c, &Request::Network(NetworkRequest::Remove { name: plan.name.clone(), force: false }))?;
        }
        progress("Network", &plan.name, "Creating");
        let req = NetworkRequest::Create {
            name: plan.name.clone(),
            driver: Some("bridge".into()),
            subnet: plan.subnet.clone(),
            gateway: plan.gateway.clone(),
            ip_range: None,
            internal: plan.internal,
            labels: plan.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            options: plan.options.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        };
        call(c, &Request::Network(req))?;
        progress("Network", &plan.name, "Created");
    }
    Ok(forced)
}

/// The networks labelled with the project, by name (what `down` removes).
fn project_networks(ctx: &Ctx, app: &App) -> Result<Vec<String>, CliError> {
    let mut out: Vec<String> = NetStore::open(&ctx.root)?
        .list()?
        .into_iter()
        .filter(|n| n.labels.get(translate::LABEL_PROJECT).is_some_and(|v| v == app.name()))
        .map(|n| n.name)
        .collect();
    out.sort();
    Ok(out)
}

fn create_and_start(c: &mut Client, app: &App, service: &str) -> Result<String, CliError> {
    let words = translate::run_words(app.project(), service, 1, &app.origin, SUPPORT)
        .map_err(|e| compose_err(e.in_file(&app.origin.config_files.join(","))))?;
    let opts = berth_proto::run::parse_run_words(&words).map_err(|e| op_err(format!("service {service:?}: {e}")))?;
    let name = opts.name.clone().unwrap_or_default();
    let id = match call(c, &Request::Create(Box::new(opts)))? {
        Response::Created { id, warnings } => {
            for w in warnings {
                eprintln!("WARNING: {w}");
            }
            id
        }
        other => return Err(op_err(format!("unexpected answer from the agent: {other:?}"))),
    };
    progress("Container", &name, "Created");
    // The service's other networks, joined before it first starts (as `docker network connect`
    // on a created container: taken at the start).
    let more = translate::attachments(app.project(), service).map_err(compose_err)?;
    for a in more.into_iter().skip(1) {
        let req = NetworkRequest::Connect { network: a.network, container: id.clone(), aliases: a.aliases, ip: a.ip };
        call(c, &Request::Network(req))?;
    }
    call(c, &Request::Start { id: id.clone(), attach: false, wait: false })?;
    progress("Container", &name, "Started");
    Ok(id)
}

fn up(ctx: &Ctx, app: &App, m: &Matches) -> Result<i32, CliError> {
    let p = app.project();
    let targets = with_dependencies(p, &app.services(m.args())?);
    // Every image first: nothing is stopped or re-created for a file that cannot run.
    let store = ctx.store()?;
    let db = store.db()?;
    for s in &targets {
        let image = p.services[s].image.clone().unwrap_or_default();
        if berth_runtime::image::store::Store::find(&db, &image).is_err() {
            return Err(op_err(format!("service {s:?}: image {image} is not on this device (berth compose does not pull: load it first)")));
        }
        // The translation's "not supported yet" errors, before anything changes.
        translate::run_words(p, s, 1, &app.origin, SUPPORT).map_err(|e| compose_err(e.in_file(&app.origin.config_files.join(","))))?;
    }
    let plans = network_plans(ctx, app, &targets)?;
    let existing = app.containers(ctx);
    let orphans: Vec<&Record> = existing.iter().filter(|r| !p.services.contains_key(service_of(r))).collect();
    let mut c = Client::connect(ctx)?;
    if !orphans.is_empty() {
        if m.flag("remove-orphans") {
            for r in &orphans {
                call(&mut c, &Request::Remove { id: r.id.clone(), force: true, volumes: false })?;
                progress("Container", &r.name, "Removed");
            }
        } else {
            let names: Vec<&str> = orphans.iter().map(|r| r.name.as_str()).collect();
            eprintln!(
                "WARN[0000] Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
                names.join(" ")
            );
        }
    }
    // Networks before the containers on them; a changed network takes its containers with it.
    let forced = ensure_networks(ctx, app, &mut c, &plans, m)?;
    let existing = if forced.is_empty() { existing } else { app.containers(ctx) };
    let targets = if forced.is_empty() {
        targets
    } else {
        let mut want = targets;
        want.extend(forced.iter().cloned());
        with_dependencies(p, &want)
    };
    let mut recreated: Vec<String> = Vec::new();
    for s in &targets {
        let svc = &p.services[s];
        for (dep, d) in &svc.depends_on {
            if targets.contains(dep) {
                wait_for(ctx, app, &mut c, dep, d.condition)?;
            }
        }
        let hash = berth_compose::config::config_hash(svc);
        let mine: Vec<&Record> = existing.iter().filter(|r| service_of(r) == s).collect();
        let same = mine.iter().all(|r| r.labels.get(translate::LABEL_HASH) == Some(&hash));
        if !mine.is_empty() && (m.flag("no-recreate") || (same && !m.flag("force-recreate"))) && !forced.contains(s) {
            let dep_recreated = svc.depends_on.iter().any(|(dep, d)| d.restart && recreated.contains(dep));
            for r in mine {
                if dep_recreated {
                    call(&mut c, &Request::Restart { id: r.id.clone(), timeout: timeout_of(m, app, s)? })?;
                    progress("Container", &r.name, "Restarted");
                } else if r.is_running() {
                    progress("Container", &r.name, "Running");
                } else {
                    call(&mut c, &Request::Start { id: r.id.clone(), attach: false, wait: false })?;
                    progress("Container", &r.name, "Started");
                }
            }
            continue;
        }
        for r in &mine {
            progress("Container", &r.name, "Recreate");
            call(&mut c, &Request::Stop { id: r.id.clone(), timeout: timeout_of(m, app, s)? })?;
            call(&mut c, &Request::Remove { id: r.id.clone(), force: true, volumes: false })?;
        }
        if !mine.is_empty() {
            recreated.push(s.clone());
        }
        create_and_start(&mut c, app, s)?;
    }
    if m.flag("wait") {
        for s in &targets {
            let cond = if app.containers(ctx).iter().any(|r| service_of(r) == s && r.health.is_some()) {
                Condition::Healthy
            } else {
                Condition::Started
            };
            wait_for(ctx, app, &mut c, s, cond)?;
        }
        return Ok(0);
    }
    if m.flag("detach") {
        return Ok(0);
    }
    // Attached: the services' output until they all stop (^C stops them, as Compose does).
    let ids: Vec<Record> = app.containers(ctx).into_iter().filter(|r| targets.iter().any(|t| t == service_of(r))).collect();
    stop_on_interrupt(ctx, ids.iter().map(|r| (r.id.clone(), r.name.clone())).collect());
    follow_all(ctx, &ids, None, false, true, true)?;
    Ok(0)
}

/// On SIGINT/SIGTERM, stop `ids` and exit (`up` in the foreground).
fn stop_on_interrupt(ctx: &Ctx, ids: Vec<(String, String)>) {
    let (host, root) = (ctx.host.clone(), ctx.root.clone());
    // SAFETY: builds a signal set and blocks it in this thread; threads spawned after this
    // (the log readers) inherit the mask, so only the sigwait below receives these signals.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: waits on the set built above; `sig` is a plain int.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
        let ctx = Ctx { root, host };
        if let Ok(mut c) = Client::connect(&ctx) {
            for (id, name) in ids.iter().rev() {
                progress("Container", name, "Stopping");
                let _ = c.call(&Request::Stop { id: id.clone(), timeout: None });
                progress("Container", name, "Stopped");
            }
        }
        std::process::exit(130);
    });
}

/// Stops (if running) and removes `recs` in stop order.
fn remove_containers(ctx: &Ctx, recs: &[Record], app: &App, m: &Matches, volumes: bool) -> Result<(), CliError> {
    in_stop_order(ctx, app, recs, |c, r| {
        if r.is_running() {
            progress("Container", &r.name, "Stopping");
            call(c, &Request::Stop { id: r.id.clone(), timeout: timeout_of(m, app, service_of(r))? })?;
            progress("Container", &r.name, "Stopped");
        }
        call(c, &Request::Remove { id: r.id.clone(), force: true, volumes })?;
        progress("Container", &r.name, "Removed");
        Ok(())
    })
}

/// Containers by dependency level in stop order (dependents first); containers of services the
/// project no longer has (orphans) last.
fn stop_levels<'a>(app: &App, recs: &'a [Record]) -> Vec<Vec<&'a Record>> {
    let levels = start_levels(app.project());
    let level_of = |r: &Record| levels.iter().position(|l| l.iter().any(|s| s == service_of(r)));
    let mut out: Vec<Vec<&Record>> = levels.iter().rev().map(|_| Vec::new()).collect();
    let mut orphans = Vec::new();
    for r in recs {
        match level_of(r) {
            Some(i) => out[levels.len() - 1 - i].push(r),
            None => orphans.push(r),
        }
    }
    out.push(orphans);
    out.retain(|l| !l.is_empty());
    out
}

/// Runs `f` on `recs` in stop order, as `docker compose stop` and `down` do: every container of one
/// dependency level at once, each on a connection of its own (a stop may wait out its grace
/// period), and the levels one after another. The first error is returned once its level is done.
fn in_stop_order(
    ctx: &Ctx,
    app: &App,
    recs: &[Record],
    f: impl Fn(&mut Client, &Record) -> Result<(), CliError> + Sync,
) -> Result<(), CliError> {
    for level in stop_levels(app, recs) {
        let results: Vec<Result<(), CliError>> = std::thread::scope(|s| {
            let f = &f;
            let running: Vec<_> = level
                .iter()
                .map(|r| {
                    s.spawn(move || {
                        let mut c = Client::connect(ctx)?;
                        f(&mut c, r)
                    })
                })
                .collect();
            running.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(op_err("internal error: a stop thread panicked")))).collect()
        });
        results.into_iter().collect::<Result<Vec<()>, CliError>>()?;
    }
    Ok(())
}

fn down(ctx: &Ctx, app: &App, m: &Matches) -> Result<i32, CliError> {
    let p = app.project();
    let all = app.containers(ctx);
    let recs: Vec<Record> = all.into_iter().filter(|r| m.flag("remove-orphans") || p.services.contains_key(service_of(r))).collect();
    let mut c = Client::connect(ctx)?;
    let volumes = m.flag("volumes");
    remove_containers(ctx, &recs, app, m, volumes)?;
    // The networks `up` made for the project (labelled with it; never an external one).
    for n in project_networks(ctx, app)? {
        progress("Network", &n, "Removing");
        call(&mut c, &Request::Network(NetworkRequest::Remove { name: n.clone(), force: false }))?;
        progress("Network", &n, "Removed");
    }
    if volumes {
        for v in p.volumes.values().filter(|v| !v.external) {
            let Some(name) = &v.name else { continue };
            // berth's named volumes are directories under the root, made on first use.
            let dir = ctx.root.join("volumes").join(name);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("remove volume {name} ({})", dir.display()), e))?;
                progress("Volume", name, "Removed");
            }
        }
    }
    match m.value("rmi") {
        None => {}
        Some("all") => {
            let mut images: Vec<String> = p.services.values().filter_map(|s| s.image.clone()).collect();
            images.sort();
            images.dedup();
            for i in images {
                let words = vec![i.clone()];
                if let Ok(Parsed::Matches(rm)) = args::parse(&super::image::RMI, &words) {
                    if super::image::rmi(ctx, &rm)? == 0 {
                        progress("Image", &i, "Removed");
                    }
                }
            }
        }
        // Only images without a custom tag, i.e. built by Compose: berth builds none.
        Some("local") => {}
        Some(other) => return Err(op_err(format!("invalid --rmi value {other:?} (local, all)"))),
    }
    Ok(0)
}

fn selected(ctx: &Ctx, app: &App, named: &[String]) -> Result<Vec<Record>, CliError> {
    let services = app.services(named)?;
    Ok(app.containers(ctx).into_iter().filter(|r| services.iter().any(|s| s == service_of(r))).collect())
}

fn status_text(ctx: &Ctx, r: &Record) -> String {
    match &r.status {
        Status::Created => "Created".into(),
        Status::Running { started, .. } => {
            let up = format!("Up {}", human_ago(*started).trim_end_matches(" ago"));
            match health::read(&ctx.root, &r.id).and_then(|h| h["Status"].as_str().map(str::to_string)) {
                Some(s) if s == "starting" => format!("{up} (health: starting)"),
                Some(s) => format!("{up} ({s})"),
                None => up,
            }
        }
        Status::Exited { code, finished, .. } => format!("Exited ({code}) {}", human_ago(*finished)),
    }
}

fn state_name(r: &Record) -> &'static str {
    match r.status {
        Status::Created => "created",
        Status::Running { .. } => "running",
        Status::Exited { .. } => "exited",
    }
}

fn ps(ctx: &Ctx, app: &App, m: &Matches) -> Result<i32, CliError> {
    let mut out = io::stdout().lock();
    let w = |e: io::Error| CliError::Op(Error::io("write output", e));
    let recs: Vec<Record> = selected(ctx, app, m.args())?.into_iter().filter(|r| m.flag("all") || r.is_running()).collect();
    if m.flag("services") {
        let mut names: Vec<&str> = recs.iter().map(service_of).collect();
        names.dedup();
        for n in names {
            writeln!(out, "{n}").map_err(w)?;
        }
        return Ok(0);
    }
    if m.flag("quiet") {
        for r in &recs {
            writeln!(out, "{}", r.id).map_err(w)?;
        }
        return Ok(0);
    }
    let command = |r: &Record| format!("\"{}\"", r.spec.args.join(" "));
    let nets = NetStore::open(&ctx.root).and_then(|s| s.list()).unwrap_or_default();
    match m.value("format") {
        None | Some("table") => {
            let rows: Vec<Vec<String>> = recs
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.image.clone(),
                        command(r),
                        service_of(r).to_string(),
                        human_ago(r.created),
                        status_text(ctx, r),
                        super::network::ps_ports(&ctx.root, &nets, &r.id),
                    ]
                })
                .collect();
            table(&mut out, &["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"], &rows).map_err(w)?;
        }
        Some("json") => {
            for r in &recs {
                let health = health::read(&ctx.root, &r.id).and_then(|h| h["Status"].as_str().map(str::to_string)).unwrap_or_default();
                let exit = if let Status::Exited { code, .. } = r.status { code } else { 0 };
                let v = serde_json::json!({
                    "ID": r.id, "Name": r.name, "Image": r.image, "Command": command(r), "Project": app.name(),
                    "Service": service_of(r), "State": state_name(r), "Status": status_text(ctx, r), "Health": health,
                    "ExitCode": exit, "Publishers": publishers(&nets, &r.id), "Labels": r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                });
                writeln!(out, "{v}").map_err(w)?;
            }
        }
        Some(f) => return Err(op_err(format!("unsupported format {f:?} (table, json)"))),
    }
    Ok(0)
}

/// `ps --format json`'s `Publishers`, as Compose v2 prints them.
fn publishers(nets: &[berth_runtime::net::network::Network], id: &str) -> Vec<serde_json::Value> {
    berth_runtime::net::docker::published(nets, id)
        .iter()
        .map(|p| {
            serde_json::json!({
                "URL": p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED).to_string(),
                "TargetPort": p.container_port, "PublishedPort": p.host_port, "Protocol": p.proto.to_string(),
            })
        })
        .collect()
}

/// Runs `f` on the named services' containers (all without names) one after another, in start
/// order.
fn each_in_start_order(
    ctx: &Ctx,
    app: &App,
    named: &[String],
    mut f: impl FnMut(&mut Client, &Record) -> Result<(), CliError>,
) -> Result<i32, CliError> {
    let recs = selected(ctx, app, named)?;
    let mut c = Client::connect(ctx)?;
    for r in stop_levels(app, &recs).into_iter().rev().flatten() {
        f(&mut c, r)?;
    }
    Ok(0)
}

fn start(ctx: &Ctx, app: &App, m: &Matches) -> Result<i32, CliError> {
    each_in_start_order(ctx, app, m.args(), |c, r| {
        if !r.is_running() {
            call(c, &Request::Start { id: r.id.clone(), attach: false, wait: false })?;
            progress("Container", &r.name, "Started");
        }
        Ok(())
    })
}

fn stop(ctx: &Ctx, app: &App, m: &Matches) -> Result<i32, CliError> {
    in_stop_order(ctx, app, &selected(ctx, app, m.args())?, |c, r| {
        if r.is_running() {
            call(c, &Request::Stop { id: r.id.clone(), timeout: timeout_of(m, app, service_of(r))? })?;
            progress("Container", &r.name, "Stopped");
        }
        Ok(())
    })?;
    Ok(0)
}

fn restart(ctx: &Ctx, app: &App, m: &Matches) -> Result<i32, CliError> {
    each_in_start_order(ctx, app, m.args(), |c, r| {
        call(c, &Request::Restart { id: r.id.clone(), timeout: timeout_of(m, app, service_of(r))? })?;
        progress("Container", &r.name, "Started");
        Ok(())
    })
}

fn rm(ctx: &Ctx, app: &App, m: &Matches) -> Result<i32, CliError> {
    let recs = selected(ctx, app, m.args())?;
    let stop_first = m.flag("stop");
    let gone: Vec<Record> = recs.into_iter().filter(|r| stop_first || !r.is_running()).collect();
    if gone.is_empty() {
        eprintln!("No stopped containers");
        return Ok(0);
    }
    remove_containers(ctx, &gone, app, m, m.flag("volumes"))?;
    Ok(0)
}

fn container_of(ctx: &Ctx, app: &App, service: &str, index: u32) -> Result<Record, CliError> {
    app.services(&[service.to_string()])?;
    app.containers(ctx)
        .into_iter()
        .find(|r| service_of(r) == service && number_of(r) == index)
        .ok_or_else(|| op_err(format!("service {service:?} is not running")))
}

fn exec(ctx: &Ctx, app: &App, m: &Matches) -> Result<i32, CliError> {
    let index: u32 = match m.value("index") {
        Some(i) => i.parse().map_err(|_| op_err(format!("invalid argument {i:?} for \"--index\" flag")))?,
        None => 1,
    };
    let r = container_of(ctx, app, &m.args()[0], index)?;
    // Compose gives exec a terminal when it has one, unless -T.
    let tty = !m.flag("no-TTY") && is_tty(0) && is_tty(1);
    let mut words: Vec<String> = Vec::new();
    if m.flag("detach") {
        words.push("--detach".into());
    } else {
        words.push("--interactive".into());
    }
    if tty && !m.flag("detach") {
        words.push("--tty".into());
    }
    for e in m.values("env") {
        words.extend(["--env".to_string(), e.to_string()]);
    }
    if let Some(u) = m.value("user") {
        words.extend(["--user".to_string(), u.to_string()]);
    }
    if let Some(wd) = m.value("workdir") {
        words.extend(["--workdir".to_string(), wd.to_string()]);
    }
    words.push(r.id.clone());
    words.extend(m.args()[1..].iter().cloned());
    match args::parse(&super::run::EXEC, &words)? {
        Parsed::Matches(em) => super::run::exec(ctx, &em),
        Parsed::Help(h) => {
            print!("{h}");
            Ok(0)
        }
    }
}

fn images(ctx: &Ctx, app: &App, m: &Matches) -> Result<i32, CliError> {
    let recs = selected(ctx, app, m.args())?;
    let store = ctx.store()?;
    let db = store.db()?;
    let mut out = io::stdout().lock();
    let w = |e: io::Error| CliError::Op(Error::io("write output", e));
    if m.flag("quiet") {
        let mut ids: Vec<String> = recs.iter().map(|r| r.image_id.to_string()).collect();
        ids.dedup();
        for i in ids {
            writeln!(out, "{i}").map_err(w)?;
        }
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = recs
        .iter()
        .map(|r| {
            let (repo, tag) = match r.image.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
                _ => (r.image.clone(), "latest".to_string()),
            };
            let size = berth_runtime::image::store::Store::find(&db, &r.image)
                .ok()
                .map(|(i, _)| human_size(i.size))
                .unwrap_or_else(|| "N/A".into());
            vec![r.name.clone(), repo, tag, r.image_id.short().to_string(), size]
        })
        .collect();
    table(&mut out, &["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"], &rows).map_err(w)?;
    Ok(0)
}

fn top(ctx: &Ctx, app: &App, m: &Matches) -> Result<i32, CliError> {
    for r in selected(ctx, app, m.args())?.iter().filter(|r| r.is_running()) {
        println!("{}", r.name);
        let words = vec![r.id.clone()];
        if let Parsed::Matches(tm) = args::parse(&super::stats::TOP, &words)? {
            super::stats::top(ctx, &tm)?;
        }
        println!();
    }
    Ok(0)
}

fn logs(ctx: &Ctx, app: &App, m: &Matches) -> Result<i32, CliError> {
    let tail: Option<usize> = match m.value("tail") {
        None | Some("all") => None,
        Some(n) => Some(n.parse().map_err(|_| op_err(format!("invalid value for \"tail\": {n:?}")))?),
    };
    let recs = selected(ctx, app, m.args())?;
    follow_all(ctx, &recs, tail, m.flag("timestamps"), m.flag("follow"), !m.flag("no-log-prefix"))?;
    Ok(0)
}

/// Every container's log, each line prefixed `NAME  | ` (padded to the longest name), as
/// Compose prints them; with `follow`, one reader per container until they have all stopped.
fn follow_all(ctx: &Ctx, recs: &[Record], tail: Option<usize>, timestamps: bool, follow: bool, prefix: bool) -> Result<(), CliError> {
    let width = recs.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut threads = Vec::new();
    for r in recs {
        let dir = record::dir(&ctx.root, &r.id);
        let pfx = if prefix { format!("{:width$}  | ", r.name) } else { String::new() };
        let (root, id, max_files) = (ctx.root.clone(), r.id.clone(), r.log.max_files);
        let job = move || read_log(&root, &id, &dir, max_files, tail, timestamps, follow, &pfx);
        if follow {
            threads.push(std::thread::spawn(job));
        } else {
            job();
        }
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn print_entry(e: &berth_runtime::container::logs::Entry, pfx: &str, timestamps: bool) {
    let mut line = Vec::with_capacity(e.text.len() + pfx.len() + 40);
    line.extend_from_slice(pfx.as_bytes());
    if timestamps {
        line.extend_from_slice(e.time.as_bytes());
        line.push(b' ');
    }
    line.extend_from_slice(e.text);
    line.push(b'\n');
    // Compose prints every service's output to stdout, stderr lines included.
    let mut o = io::stdout().lock();
    if o.write_all(&line).and_then(|_| o.flush()).is_err() {
        std::process::exit(0);
    }
}

#[allow(clippy::too_many_arguments)]
fn read_log(
    root: &std::path::Path,
    id: &str,
    dir: &std::path::Path,
    max_files: u32,
    tail: Option<usize>,
    timestamps: bool,
    follow: bool,
    pfx: &str,
) {
    use berth_runtime::container::logs;
    // With a tail only its lines stay in memory.
    let mut lines: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    let keep = tail.unwrap_or(usize::MAX);
    let ring = logs::Follower::open(dir, max_files, &mut |l| {
        if keep > 0 {
            if lines.len() == keep {
                lines.pop_front();
            }
            lines.push_back(l.to_vec());
        }
        Ok(())
    });
    let print = |l: &[u8]| {
        if let Some(e) = logs::parse(l) {
            print_entry(&e, pfx, timestamps);
        }
        Ok(())
    };
    for l in &lines {
        let _ = print(l);
    }
    let (true, Ok(mut ring)) = (follow, ring) else { return };
    loop {
        let alive = matches!(Record::load(&record::dir(root, id).join("state")).map(|r| r.status), Ok(Status::Running { .. }));
        let progressed = ring.step(&mut |l| print(l)).unwrap_or(false);
        if !alive && !progressed {
            return;
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
