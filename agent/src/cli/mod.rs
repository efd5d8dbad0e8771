//! The CLI: global options, then the one dispatch table (`TOP`, and the groups' tables it names)
//! from which every help listing is made. One module per command family (`run.rs`, `lifecycle.rs`,
//! `image.rs`, ...), each command a `Cmd` spec (flags and help) and a function that ends in a call
//! to the agent (`client.rs`) or to `berth_runtime`. Errors print as one line, `Error: ...`; the
//! exit code is `berth_proto::error::exit_code` of the failure's kind (Docker's codes).

pub mod agent;
pub mod board;
pub mod build;
pub mod check;
pub mod client;
pub mod commit;
#[cfg(feature = "compose")]
pub mod compose;
pub mod cp;
pub mod deploy;
pub mod events;
pub mod history;
pub mod image;
pub mod inspect;
pub mod lifecycle;
pub mod logs;
pub mod network;
pub mod pipe;
pub mod prune;
pub mod ps;
#[cfg(feature = "registry")]
pub mod registry;
pub mod relay;
pub mod run;
pub mod stats;
pub mod system;
pub mod tty;
pub mod volume;

use std::path::PathBuf;

#[cfg(feature = "fleet")]
use crate::fleet;
use berth_proto::args::{self, opt, Cmd, Matches, Opt, Parsed, UsageError};
use berth_proto::error::{exit_code, Kind};
pub use berth_proto::error::{op_err, CliError};
use berth_runtime::paths::{DEFAULT_HOST, DEFAULT_ROOT};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What every command gets: the global options, resolved.
pub struct Ctx {
    pub root: PathBuf,
    pub host: String,
}

impl Ctx {
    pub fn store(&self) -> Result<berth_runtime::image::store::Store, CliError> {
        Ok(berth_runtime::image::store::Store::open(&self.root)?)
    }
}

pub type Run = fn(&Ctx, &Matches) -> Result<i32, CliError>;

/// What a name in the dispatch table does.
pub enum Target {
    /// Parse `cmd`'s flags, then run.
    Run(Run),
    /// A command group (`berth image ls`): its subcommands.
    Group(&'static [Command]),
    /// A tool with its own parser and messages (`berth fleet`).
    Own(fn(&[String]) -> Result<i32, CliError>),
}

/// A command name, its spec (flags and the one description every help text shows) and what runs
/// it. Entries that share a spec are aliases: help lists only the first.
pub struct Command {
    pub name: &'static str,
    pub cmd: &'static Cmd,
    pub target: Target,
}

/// A command that parses its flags and runs.
pub const fn command(name: &'static str, cmd: &'static Cmd, run: Run) -> Command {
    Command { name, cmd, target: Target::Run(run) }
}

/// The help listing of a table: each spec once, under the first name it has.
fn listing(table: &[Command]) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for (i, c) in table.iter().enumerate() {
        if !table[..i].iter().any(|p| std::ptr::eq(p.cmd, c.cmd)) {
            out.push((c.name, c.cmd.about));
        }
    }
    out
}

/// A group's help: its spec, then the commands of its table.
fn group_help(spec: &Cmd, table: &[Command]) -> String {
    args::help_listing(spec, &listing(table))
}

const GLOBAL_OPTS: &[Opt] = &[
    opt("root", None, Some("string"), "Root of berth's store and state (env BERTH_ROOT) (default \"/var/lib/berth\")"),
    opt("host", Some('H'), Some("string"), "Agent socket to connect to (env BERTH_HOST) (default \"unix:///run/berth/berth.sock\")"),
    opt("log-level", Some('l'), Some("string"), "Set the logging level (\"debug\"|\"info\"|\"warn\"|\"error\")"),
    opt("version", Some('v'), None, "Print version information and quit"),
];

const GLOBAL: Cmd = Cmd {
    path: "berth",
    usage: "[OPTIONS] COMMAND",
    about: "A small container engine for boards: Docker's CLI, a static binary, fleet updates over MQTT.",
    opts: GLOBAL_OPTS,
    min_args: 0,
    max_args: None,
    stop_at_positional: true,
    subcommands: &[],
};

/// The one dispatch table: `berth NAME`, in the order `berth --help` lists them.
const TOP: &[Command] = &[
    command("agent", &agent::AGENT, agent::agent),
    command("attach", &logs::ATTACH, logs::attach),
    Command { name: "board", cmd: &board::GROUP, target: Target::Group(board::SUBCOMMANDS) },
    command("build", &build::BUILD, build::build),
    command("check", &check::CHECK, check::check),
    command("commit", &commit::COMMIT, commit::commit),
    #[cfg(feature = "compose")]
    command("compose", &compose::COMPOSE, compose::compose),
    command("cp", &cp::CP, cp::cp),
    command("create", &run::CREATE, run::create),
    Command { name: "deployment", cmd: &deploy::GROUP, target: Target::Group(deploy::SUBCOMMANDS) },
    command("diff", &commit::DIFF, commit::diff),
    command("kill", &lifecycle::KILL, lifecycle::kill),
    command("logs", &logs::LOGS, logs::logs),
    Command { name: "network", cmd: &network::GROUP, target: Target::Group(network::SUBCOMMANDS) },
    command("port", &network::PORT, network::port),
    command("pause", &commit::PAUSE, commit::pause),
    command("ps", &ps::PS, ps::ps),
    command("restart", &lifecycle::RESTART, lifecycle::restart),
    command("rename", &lifecycle::RENAME, lifecycle::rename),
    command("rm", &lifecycle::RM, lifecycle::rm),
    command("rollback", &deploy::ROLLBACK, deploy::rollback),
    command("run", &run::RUN, run::run),
    command("start", &run::START, run::start),
    command("stats", &stats::STATS, stats::stats),
    command("stop", &lifecycle::STOP, lifecycle::stop),
    command("wait", &lifecycle::WAIT, lifecycle::wait),
    command("events", &events::EVENTS, events::events),
    command("exec", &run::EXEC, run::exec),
    #[cfg(feature = "fleet")]
    Command { name: "fleet", cmd: &fleet::FLEET, target: Target::Own(fleet::main) },
    command("export", &image::EXPORT, image::export),
    Command { name: "container", cmd: &CONTAINER_GROUP, target: Target::Group(CONTAINER_SUBCOMMANDS) },
    Command { name: "image", cmd: &image::GROUP, target: Target::Group(image::SUBCOMMANDS) },
    command("history", &history::HISTORY, history::image_history),
    command("images", &image::IMAGES, image::images),
    command("import", &image::IMPORT, image::import),
    command("info", &system::INFO, system::info),
    command("inspect", &inspect::INSPECT, inspect::inspect),
    command("load", &image::LOAD, image::load),
    #[cfg(feature = "registry")]
    command("login", &registry::LOGIN, registry::login),
    #[cfg(feature = "registry")]
    command("logout", &registry::LOGOUT, registry::logout),
    #[cfg(feature = "registry")]
    command("pull", &registry::PULL, registry::pull),
    #[cfg(feature = "registry")]
    command("push", &registry::PUSH, registry::push),
    command("rmi", &image::RMI, image::rmi),
    command("save", &image::SAVE, image::save),
    Command { name: "system", cmd: &system::GROUP, target: Target::Group(system::SUBCOMMANDS) },
    command("tag", &image::TAG, image::tag),
    command("top", &stats::TOP, stats::top),
    command("unpause", &commit::UNPAUSE, commit::unpause),
    command("update", &lifecycle::UPDATE, lifecycle::update),
    command("version", &system::VERSION_CMD, system::version),
    Command { name: "volume", cmd: &volume::GROUP, target: Target::Group(volume::SUBCOMMANDS) },
];

const CONTAINER_GROUP: Cmd = group("berth container", "Manage containers");

/// `berth container X` is `berth X` (plus `ls` and `prune`).
const CONTAINER_SUBCOMMANDS: &[Command] = &[
    command("commit", &commit::COMMIT, commit::commit),
    command("cp", &cp::CP, cp::cp),
    command("create", &run::CREATE, run::create),
    command("diff", &commit::DIFF, commit::diff),
    command("exec", &run::EXEC, run::exec),
    command("export", &image::EXPORT, image::export),
    command("inspect", &inspect::INSPECT, inspect::inspect),
    command("kill", &lifecycle::KILL, lifecycle::kill),
    command("logs", &logs::LOGS, logs::logs),
    command("ls", &ps::LS, ps::ps),
    command("port", &network::PORT, network::port),
    command("pause", &commit::PAUSE, commit::pause),
    command("list", &ps::LS, ps::ps),
    command("ps", &ps::LS, ps::ps),
    command("prune", &prune::CONTAINER_PRUNE, prune::container_prune),
    command("rename", &lifecycle::RENAME, lifecycle::rename),
    command("restart", &lifecycle::RESTART, lifecycle::restart),
    command("rm", &lifecycle::RM, lifecycle::rm),
    command("run", &run::RUN, run::run),
    command("start", &run::START, run::start),
    command("stats", &stats::STATS, stats::stats),
    command("stop", &lifecycle::STOP, lifecycle::stop),
    command("top", &stats::TOP, stats::top),
    command("unpause", &commit::UNPAUSE, commit::unpause),
    command("update", &lifecycle::UPDATE, lifecycle::update),
    command("wait", &lifecycle::WAIT, lifecycle::wait),
];

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// Runs the CLI on `args` (without the program name) and returns the exit code.
pub fn main(args: &[String]) -> i32 {
    pipe::default_action();
    match dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            match &e {
                CliError::Usage(u) => eprintln!("{u}"),
                CliError::Op(e) => eprintln!("Error: {e}"),
                CliError::Exit(_) => {}
            }
            exit_code(e.kind())
        }
    }
}

/// A failed operation reported as Docker reports a bad flag value or a `run` that failed: its
/// `Error: ` line, exit 125. Other errors pass through.
pub fn usage_exit(e: CliError) -> CliError {
    match e {
        CliError::Op(e) => {
            eprintln!("Error: {e}");
            CliError::Exit(exit_code(Kind::Usage))
        }
        other => other,
    }
}

/// Runs one entry of a table on the rest of the arguments.
fn run_entry(c: &Command, ctx: &Ctx, args: &[String]) -> Result<i32, CliError> {
    match &c.target {
        Target::Own(main) => main(args),
        Target::Run(run) => match args::parse(c.cmd, args)? {
            Parsed::Help(h) => {
                print!("{h}");
                Ok(0)
            }
            Parsed::Matches(m) => run(ctx, &m),
        },
        Target::Group(subs) => {
            let gm = match args::parse(c.cmd, args)? {
                Parsed::Help(_) => {
                    print!("{}", group_help(c.cmd, subs));
                    return Ok(0);
                }
                Parsed::Matches(gm) => gm,
            };
            let Some(name) = gm.args().first() else {
                print!("{}", group_help(c.cmd, subs));
                return Ok(0);
            };
            let sub = subs.iter().find(|s| s.name == name).ok_or_else(|| unknown(c.cmd.path, name))?;
            run_entry(sub, ctx, &gm.args()[1..])
        }
    }
}

fn unknown(path: &'static str, name: &str) -> CliError {
    CliError::Usage(UsageError { msg: format!("unknown command: \"{name}\""), cmd: path })
}

fn dispatch(args: &[String]) -> Result<i32, CliError> {
    let m = match args::parse(&GLOBAL, args)? {
        Parsed::Help(_) => {
            print!("{}", group_help(&GLOBAL, TOP));
            return Ok(0);
        }
        Parsed::Matches(m) => m,
    };
    if m.flag("version") {
        println!("berth version {VERSION}");
        return Ok(0);
    }
    let level = m.value("log-level").map(str::to_string).or_else(|| std::env::var("BERTH_LOG_LEVEL").ok());
    if let Some(level) = level {
        if !crate::log::set_level(&level) {
            return Err(CliError::Usage(UsageError {
                msg: format!("unknown log level {level:?} (debug, info, warn, error)"),
                cmd: "berth",
            }));
        }
    }
    let ctx = Ctx {
        // Absolute: the agent's children (monitors, mounts) do not share its working directory.
        root: std::path::absolute(m.value("root").map_or_else(|| env_or("BERTH_ROOT", DEFAULT_ROOT), str::to_string))
            .map_err(|e| CliError::Op(berth_runtime::Error::io("resolve --root", e)))?,
        host: m.value("host").map_or_else(|| env_or("BERTH_HOST", DEFAULT_HOST), str::to_string),
    };
    if !ctx.host.starts_with("unix://") {
        return Err(CliError::Usage(UsageError {
            msg: format!("invalid --host {:?}: only unix:///PATH is supported", ctx.host),
            cmd: "berth",
        }));
    }
    // Writes of the CLI's own (an `rmi` on a full disk) may draw on the agent's reserve too.
    berth_runtime::reserve::attach(&ctx.root);
    let rest = m.args();
    let Some(name) = rest.first() else {
        print!("{}", group_help(&GLOBAL, TOP));
        return Ok(0);
    };
    match TOP.iter().find(|c| c.name == name) {
        Some(c) => run_entry(c, &ctx, &rest[1..]),
        #[cfg(not(feature = "fleet"))]
        None if name == "fleet" => Err(CliError::Usage(UsageError {
            msg: "\"fleet\" is not in this build of berth (a device build; the operator build has it)".into(),
            cmd: "berth",
        })),
        None => Err(unknown("berth", name)),
    }
}

/// A group's own spec: help lists the commands of its table.
pub const fn group(path: &'static str, about: &'static str) -> Cmd {
    Cmd { path, usage: "COMMAND", about, opts: &[], min_args: 0, max_args: None, stop_at_positional: true, subcommands: &[] }
}
