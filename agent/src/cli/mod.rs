//! The CLI: global options, then one module per command group (`image.rs`, `system.rs`), each
//! command a `Cmd` spec (flags and help) and a `run` function. Errors print as one line,
//! `Error: ...`; exit codes as Docker's: 1 for a failed operation, 125 for bad usage.

pub mod args;
pub mod board;
pub mod check;
pub mod client;
#[cfg(feature = "compose")]
pub mod compose;
pub mod container;
pub mod cp;
pub mod deploy;
pub mod events;
pub mod fleet;
pub mod format;
pub mod image;
pub mod logs;
pub mod output;
pub mod stats;
pub mod system;
pub mod tty;
pub mod words;

use std::path::PathBuf;

use args::{opt, Cmd, Matches, Opt, Parsed, UsageError};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const DEFAULT_ROOT: &str = "/var/lib/berth";
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

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

#[derive(Debug)]
pub enum CliError {
    Usage(UsageError),
    Op(berth_runtime::Error),
    /// Already reported; exit with this code.
    Exit(i32),
}

impl From<berth_runtime::Error> for CliError {
    fn from(e: berth_runtime::Error) -> Self {
        CliError::Op(e)
    }
}

impl From<UsageError> for CliError {
    fn from(e: UsageError) -> Self {
        CliError::Usage(e)
    }
}

pub fn op_err(msg: impl Into<String>) -> CliError {
    CliError::Op(berth_runtime::Error::invalid(msg))
}

pub type Run = fn(&Ctx, &Matches) -> Result<i32, CliError>;

/// A command name, its spec and what runs it.
pub struct Command {
    pub name: &'static str,
    pub cmd: &'static Cmd,
    pub run: Run,
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
    subcommands: &[
        ("agent", "Run the berth agent (the daemon that runs containers)"),
        ("attach", "Attach to a running container's output"),
        ("board", "Manage board profiles (validate)"),
        ("check", "Check that the kernel has what berth needs"),
        ("compose", "Define and run multi-container applications"),
        ("create", "Create a new container"),
        ("deployment", "Show what updates deployed on this device"),
        ("kill", "Kill one or more running containers"),
        ("logs", "Fetch the logs of a container"),
        ("ps", "List containers"),
        ("restart", "Restart one or more containers"),
        ("rename", "Rename a container"),
        ("rm", "Remove one or more containers"),
        ("rollback", "Go back to the previous deployed version of a container"),
        ("run", "Create and run a new container from an image"),
        ("start", "Start one or more stopped containers"),
        ("stats", "Display a live stream of container(s) resource usage statistics"),
        ("stop", "Stop one or more running containers"),
        ("wait", "Block until one or more containers stop, then print their exit codes"),
        ("events", "Get real time events from the agent"),
        ("exec", "Execute a command in a running container"),
        ("fleet", "Update a fleet of devices over MQTT"),
        ("export", "Export an image's filesystem as a tar archive"),
        ("container", "Manage containers"),
        ("image", "Manage images"),
        ("images", "List images"),
        ("import", "Import the contents from a tarball or directory to create an image"),
        ("info", "Display system-wide information"),
        ("inspect", "Return low-level information on containers and images"),
        ("load", "Load an image from a tar archive or STDIN"),
        ("rmi", "Remove one or more images"),
        ("save", "Save one or more images to a tar archive (streamed to STDOUT by default)"),
        ("system", "Manage berth (df)"),
        ("tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
        ("top", "Display the running processes of a container"),
        ("update", "Update configuration of one or more containers"),
        ("version", "Show the berth version information"),
    ],
};

const TOP: &[Command] = &[
    Command { name: "agent", cmd: &container::AGENT, run: container::agent },
    Command { name: "attach", cmd: &logs::ATTACH, run: logs::attach },
    Command { name: "check", cmd: &check::CHECK, run: check::check },
    Command { name: "cp", cmd: &cp::CP, run: cp::cp },
    Command { name: "create", cmd: &container::CREATE, run: container::create },
    Command { name: "kill", cmd: &container::KILL, run: container::kill },
    Command { name: "logs", cmd: &logs::LOGS, run: logs::logs },
    Command { name: "ps", cmd: &container::PS, run: container::ps },
    Command { name: "restart", cmd: &container::RESTART, run: container::restart },
    Command { name: "rename", cmd: &container::RENAME, run: container::rename },
    Command { name: "rm", cmd: &container::RM, run: container::rm },
    Command { name: "rollback", cmd: &deploy::ROLLBACK, run: deploy::rollback },
    Command { name: "run", cmd: &container::RUN, run: container::run },
    Command { name: "start", cmd: &container::START, run: container::start },
    Command { name: "stats", cmd: &stats::STATS, run: stats::stats },
    Command { name: "stop", cmd: &container::STOP, run: container::stop },
    Command { name: "wait", cmd: &container::WAIT, run: container::wait },
    Command { name: "events", cmd: &events::EVENTS, run: events::events },
    Command { name: "exec", cmd: &container::EXEC, run: container::exec },
    Command { name: "export", cmd: &image::EXPORT, run: image::export },
    Command { name: "images", cmd: &image::IMAGES, run: image::images },
    Command { name: "import", cmd: &image::IMPORT, run: image::import },
    Command { name: "info", cmd: &system::INFO, run: system::info },
    Command { name: "inspect", cmd: &container::INSPECT, run: container::inspect },
    Command { name: "load", cmd: &image::LOAD, run: image::load },
    Command { name: "rmi", cmd: &image::RMI, run: image::rmi },
    Command { name: "save", cmd: &image::SAVE, run: image::save },
    Command { name: "tag", cmd: &image::TAG, run: image::tag },
    Command { name: "top", cmd: &stats::TOP, run: stats::top },
    Command { name: "update", cmd: &container::UPDATE, run: container::update },
    Command { name: "version", cmd: &system::VERSION_CMD, run: system::version },
];

/// Command groups (`berth image ls`): name, spec listing the subcommands, and the subcommands.
const GROUPS: &[(&str, &Cmd, &[Command])] = &[
    ("board", &board::GROUP, board::SUBCOMMANDS),
    ("container", &CONTAINER_GROUP, CONTAINER_SUBCOMMANDS),
    ("deployment", &deploy::GROUP, deploy::SUBCOMMANDS),
    ("image", &image::GROUP, image::SUBCOMMANDS),
    ("system", &system::GROUP, system::SUBCOMMANDS),
];

const CONTAINER_GROUP: Cmd = group(
    "berth container",
    "Manage containers",
    &[
        ("create", "Create a new container"),
        ("exec", "Execute a command in a running container"),
        ("inspect", "Display detailed information on one or more containers"),
        ("kill", "Kill one or more running containers"),
        ("logs", "Fetch the logs of a container"),
        ("ls", "List containers"),
        ("prune", "Remove all stopped containers"),
        ("rename", "Rename a container"),
        ("restart", "Restart one or more containers"),
        ("rm", "Remove one or more containers"),
        ("run", "Create and run a new container from an image"),
        ("start", "Start one or more stopped containers"),
        ("stats", "Display a live stream of container(s) resource usage statistics"),
        ("stop", "Stop one or more running containers"),
        ("top", "Display the running processes of a container"),
        ("update", "Update configuration of one or more containers"),
        ("wait", "Block until one or more containers stop, then print their exit codes"),
    ],
);

/// `berth container X` is `berth X` (plus `ls` and `prune`).
const CONTAINER_SUBCOMMANDS: &[Command] = &[
    Command { name: "cp", cmd: &cp::CP, run: cp::cp },
    Command { name: "create", cmd: &container::CREATE, run: container::create },
    Command { name: "exec", cmd: &container::EXEC, run: container::exec },
    Command { name: "inspect", cmd: &container::INSPECT, run: container::inspect },
    Command { name: "kill", cmd: &container::KILL, run: container::kill },
    Command { name: "logs", cmd: &logs::LOGS, run: logs::logs },
    Command { name: "ls", cmd: &container::LS, run: container::ps },
    Command { name: "list", cmd: &container::LS, run: container::ps },
    Command { name: "ps", cmd: &container::LS, run: container::ps },
    Command { name: "prune", cmd: &container::PRUNE, run: container::prune },
    Command { name: "rename", cmd: &container::RENAME, run: container::rename },
    Command { name: "restart", cmd: &container::RESTART, run: container::restart },
    Command { name: "rm", cmd: &container::RM, run: container::rm },
    Command { name: "run", cmd: &container::RUN, run: container::run },
    Command { name: "start", cmd: &container::START, run: container::start },
    Command { name: "stats", cmd: &stats::STATS, run: stats::stats },
    Command { name: "stop", cmd: &container::STOP, run: container::stop },
    Command { name: "top", cmd: &stats::TOP, run: stats::top },
    Command { name: "update", cmd: &container::UPDATE, run: container::update },
    Command { name: "wait", cmd: &container::WAIT, run: container::wait },
];

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// Runs the CLI on `args` (without the program name) and returns the exit code.
pub fn main(args: &[String]) -> i32 {
    match dispatch(args) {
        Ok(code) => code,
        Err(CliError::Usage(e)) => {
            eprintln!("{e}");
            125
        }
        Err(CliError::Op(e)) => {
            eprintln!("Error: {e}");
            1
        }
        Err(CliError::Exit(code)) => code,
    }
}

fn run_cmd(c: &Command, ctx: &Ctx, args: &[String]) -> Result<i32, CliError> {
    match args::parse(c.cmd, args)? {
        Parsed::Help(h) => {
            print!("{h}");
            Ok(0)
        }
        Parsed::Matches(m) => (c.run)(ctx, &m),
    }
}

fn unknown(path: &'static str, name: &str) -> CliError {
    CliError::Usage(UsageError { msg: format!("unknown command: \"{name}\""), cmd: path })
}

fn dispatch(args: &[String]) -> Result<i32, CliError> {
    let m = match args::parse(&GLOBAL, args)? {
        Parsed::Help(h) => {
            print!("{h}");
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
    let rest = m.args();
    let Some(name) = rest.first() else {
        print!("{}", args::help(&GLOBAL));
        return Ok(0);
    };
    if let Some(c) = TOP.iter().find(|c| c.name == name) {
        return run_cmd(c, &ctx, &rest[1..]);
    }
    if name == "fleet" {
        return fleet::main(&ctx, &rest[1..]);
    }
    #[cfg(feature = "compose")]
    if name == "compose" {
        return compose::main(&ctx, &rest[1..]);
    }
    if let Some((_, group, subs)) = GROUPS.iter().find(|(g, _, _)| g == name) {
        let gm = match args::parse(group, &rest[1..])? {
            Parsed::Help(h) => {
                print!("{h}");
                return Ok(0);
            }
            Parsed::Matches(gm) => gm,
        };
        let Some(sub) = gm.args().first() else {
            print!("{}", args::help(group));
            return Ok(0);
        };
        let c = subs.iter().find(|c| c.name == sub).ok_or_else(|| unknown(group.path, sub))?;
        return run_cmd(c, &ctx, &gm.args()[1..]);
    }
    Err(unknown("berth", name))
}

/// A group's own spec: it only names its subcommands.
pub const fn group(path: &'static str, about: &'static str, subcommands: &'static [(&'static str, &'static str)]) -> Cmd {
    Cmd { path, usage: "COMMAND", about, opts: &[], min_args: 0, max_args: None, stop_at_positional: true, subcommands }
}
