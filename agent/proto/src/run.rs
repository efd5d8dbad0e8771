//! The `run`/`create` argument grammar: one table of flags, each row the option as help shows it
//! and how it fills [`RunOptions`]. The CLI, the agent's preload file, update manifests and
//! `berth fleet push --run` all parse run arguments here, so they accept exactly the same words.
//!
//! Adding a flag: one row in `RUN_FLAGS` (usually `set!(field, how)`) and one field in
//! `RunOptions` (`socket.rs`).

use berth_runtime::cgroup::parse_size;

use crate::args::{self, cmd, opt, Cmd, Matches, Opt, Parsed, UsageError};
use crate::error::{op_err, CliError};
use crate::socket::RunOptions;

/// Fills `RunOptions` from the flag named by the row (the name is passed for messages).
pub type Setter = fn(&mut RunOptions, &Matches, &'static str) -> Result<(), CliError>;

/// Sets `o.$field` from the row's flag, read by one of `flag`, `string`, `list`, `num`, `size`.
macro_rules! set {
    ($field:ident, $how:ident) => {
        |o: &mut RunOptions, m: &Matches, name: &'static str| {
            o.$field = $how(m, name)?;
            Ok(())
        }
    };
}

// The resource flags `run` and `update` share.
pub const MEMORY: Opt = opt("memory", Some('m'), Some("bytes"), "Memory limit");
pub const MEMORY_SWAP: Opt = opt("memory-swap", None, Some("bytes"), "Swap limit equal to memory plus swap: '-1' to enable unlimited swap");
pub const MEMORY_RESERVATION: Opt = opt("memory-reservation", None, Some("bytes"), "Memory soft limit");
pub const PIDS_LIMIT: Opt = opt("pids-limit", None, Some("int"), "Tune container pids limit (set -1 for unlimited)");
pub const CPUS: Opt = opt("cpus", None, Some("decimal"), "Number of CPUs");
pub const CPU_SHARES: Opt = opt("cpu-shares", Some('c'), Some("int"), "CPU shares (relative weight)");

/// Every `run`/`create` flag, in help order, with what it sets.
pub const RUN_FLAGS: &[(Opt, Setter)] = &[
    (opt("detach", Some('d'), None, "Run container in background and print container ID"), none),
    (opt("interactive", Some('i'), None, "Keep STDIN open even if not attached"), set!(interactive, flag)),
    (opt("tty", Some('t'), None, "Allocate a pseudo-TTY"), set!(tty, flag)),
    (opt("name", None, Some("string"), "Assign a name to the container"), set!(name, string)),
    (opt("rm", None, None, "Automatically remove the container when it exits"), set!(auto_remove, flag)),
    (opt("env", Some('e'), Some("list"), "Set environment variables"), env),
    (opt("env-file", None, Some("list"), "Read in a file of environment variables"), none),
    (opt("workdir", Some('w'), Some("string"), "Working directory inside the container"), set!(workdir, string)),
    (opt("user", Some('u'), Some("string"), "Username or UID (format: <name|uid>[:<group|gid>])"), set!(user, string)),
    (opt("hostname", Some('h'), Some("string"), "Container host name"), set!(hostname, string)),
    (opt("entrypoint", None, Some("string"), "Overwrite the default ENTRYPOINT of the image"), set!(entrypoint, string)),
    (opt("volume", Some('v'), Some("list"), "Bind mount a volume (HOST:CONTAINER[:ro], NAME:CONTAINER or CONTAINER)"), set!(volumes, list)),
    (opt("tmpfs", None, Some("list"), "Mount a tmpfs directory (PATH[:size=..,mode=..])"), set!(tmpfs, list)),
    (
        opt(
            "mount",
            None,
            Some("mount"),
            "Attach a filesystem mount to the container (type=bind|volume|tmpfs,source=..,target=..[,readonly])",
        ),
        mount,
    ),
    (opt("read-only", None, None, "Mount the container's root filesystem as read only"), set!(read_only, flag)),
    (
        opt("storage-opt", None, Some("list"), "Storage driver options for the container (size=SIZE: limit of its writable layer)"),
        set!(storage_opt, list),
    ),
    (opt("net", None, Some("string"), "Connect a container to a network: bridge (default), NAME, host, none, container:NAME"), net),
    (opt("network", None, Some("string"), "Same as --net"), none),
    (opt("publish", Some('p'), Some("list"), "Publish a container's port(s) to the host ([IP:][HOST:]CONTAINER[/PROTO])"), publish),
    (opt("publish-all", Some('P'), None, "Publish all exposed ports to random ports"), set!(publish_all, flag)),
    (opt("ip", None, Some("string"), "IPv4 address (e.g., 172.30.100.104)"), set!(ip, string)),
    (opt("mac-address", None, Some("string"), "Container MAC address (e.g., 92:d0:c6:0a:29:33)"), set!(mac_address, string)),
    (opt("network-alias", None, Some("list"), "Add network-scoped alias for the container"), set!(network_aliases, list)),
    (opt("dns", None, Some("list"), "Set custom DNS servers"), set!(dns, list)),
    (opt("dns-search", None, Some("list"), "Set custom DNS search domains"), set!(dns_search, list)),
    (opt("dns-option", None, Some("list"), "Set DNS options"), set!(dns_options, list)),
    (opt("add-host", None, Some("list"), "Add a custom host-to-IP mapping (host:ip)"), set!(add_hosts, list)),
    (opt("link", None, Some("list"), "Add link to another container (NAME[:ALIAS])"), set!(links, list)),
    (MEMORY, set!(memory, size)),
    (MEMORY_SWAP, set!(memory_swap, size)),
    (MEMORY_RESERVATION, set!(memory_reservation, size)),
    (PIDS_LIMIT, set!(pids_limit, num)),
    (CPUS, set!(cpus, decimal)),
    (CPU_SHARES, set!(cpu_shares, num)),
    (opt("cap-add", None, Some("list"), "Add Linux capabilities"), set!(cap_add, list)),
    (opt("cap-drop", None, Some("list"), "Drop Linux capabilities"), set!(cap_drop, list)),
    (opt("security-opt", None, Some("list"), "Security options (no-new-privileges, seccomp=PROFILE.json|unconfined)"), security_opt),
    (opt("ulimit", None, Some("ulimit"), "Ulimit options (name=soft[:hard])"), set!(ulimits, list)),
    (
        opt("sysctl", None, Some("list"), "Sysctl options (NAME=VALUE: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)"),
        set!(sysctls, list),
    ),
    (opt("label", Some('l'), Some("list"), "Set meta data on a container"), set!(labels, list)),
    (opt("stop-signal", None, Some("string"), "Signal to stop the container"), set!(stop_signal, string)),
    (opt("stop-timeout", None, Some("int"), "Timeout (in seconds) to stop a container"), set!(stop_timeout, num)),
    (opt("init", None, None, "Run an init inside the container that forwards signals and reaps processes"), set!(init, flag)),
    (opt("privileged", None, None, "Give extended privileges to this container"), set!(privileged, flag)),
    (
        opt(
            "device",
            None,
            Some("list"),
            "Add a host device to the container (HOST[:CONTAINER][:PERMS], a board device NAME, or usb:VID:PID[:SERIAL])",
        ),
        set!(devices, list),
    ),
    (
        opt("device-cgroup-rule", None, Some("list"), "Add a rule to the cgroup allowed devices list ('c 89:* rwm')"),
        set!(device_cgroup_rules, list),
    ),
    (opt("userns", None, Some("string"), "User namespace to use: host, auto or auto:size=N (a range of host IDs of its own)"), userns),
    (opt("restart", None, Some("string"), "Restart policy: no, on-failure[:max-retries], always, unless-stopped"), set!(restart, string)),
    (opt("health-cmd", None, Some("string"), "Command to run to check health"), set!(health_cmd, string)),
    (
        opt("health-interval", None, Some("duration"), "Time between running the check (ms|s|m|h) (default 30s)"),
        set!(health_interval, string),
    ),
    (
        opt("health-timeout", None, Some("duration"), "Maximum time to allow one check to run (ms|s|m|h) (default 30s)"),
        set!(health_timeout, string),
    ),
    (opt("health-retries", None, Some("int"), "Consecutive failures needed to report unhealthy"), set!(health_retries, num)),
    (
        opt(
            "health-start-period",
            None,
            Some("duration"),
            "Start period for the container to initialize before failures count (ms|s|m|h) (default 0s)",
        ),
        set!(health_start_period, string),
    ),
    (opt("no-healthcheck", None, None, "Disable any container-specified HEALTHCHECK"), set!(no_healthcheck, flag)),
    (
        opt("log-driver", None, Some("string"), "Logging driver: local (size-capped ring files, the default), json-file (same), none"),
        set!(log_driver, string),
    ),
    (opt("log-opt", None, Some("list"), "Log driver options: max-size=10m, max-file=3 (the defaults)"), set!(log_opts, list)),
];
const RUN_OPTS: [Opt; RUN_FLAGS.len()] = opts(RUN_FLAGS);

/// The options column of a flag table, for the command's spec.
const fn opts<const N: usize>(flags: &[(Opt, Setter)]) -> [Opt; N] {
    let mut out = [opt("", None, None, ""); N];
    let mut i = 0;
    while i < N {
        out[i] = flags[i].0;
        i += 1;
    }
    out
}

pub const RUN: Cmd = Cmd {
    stop_at_positional: true,
    ..cmd("berth run", "[OPTIONS] IMAGE [COMMAND] [ARG...]", "Create and run a new container from an image", &RUN_OPTS, 1, None)
};
pub const CREATE: Cmd = Cmd { path: "berth create", about: "Create a new container", ..RUN };

/// A bool flag: given and not `=false`.
pub fn flag(m: &Matches, name: &str) -> Result<bool, CliError> {
    Ok(m.flag(name))
}

/// The last value of a flag.
pub fn string(m: &Matches, name: &str) -> Result<Option<String>, CliError> {
    Ok(m.value(name).map(str::to_string))
}

/// Every value of a repeatable flag, in order.
pub fn list(m: &Matches, name: &str) -> Result<Vec<String>, CliError> {
    Ok(m.values(name).into_iter().map(str::to_string).collect())
}

/// A number (`--cpus 1.5`, `--pids-limit 100`).
pub fn num<T: std::str::FromStr>(m: &Matches, name: &str) -> Result<Option<T>, CliError> {
    m.value(name).map(|v| v.parse::<T>().map_err(|_| op_err(format!("invalid argument {v:?} for \"--{name}\" flag")))).transpose()
}

/// A decimal number (`--cpus 1.5`), as `num` reads it (berth_runtime::decimal: core's float
/// parser is 13 KB of the aarch64 firmware).
pub fn decimal(m: &Matches, name: &str) -> Result<Option<f64>, CliError> {
    m.value(name)
        .map(|v| berth_runtime::decimal::parse_f64(v).ok_or_else(|| op_err(format!("invalid argument {v:?} for \"--{name}\" flag"))))
        .transpose()
}

/// A size in bytes with Docker's suffixes (`512m`), or -1 for unlimited.
pub fn size(m: &Matches, name: &str) -> Result<Option<i64>, CliError> {
    match m.value(name) {
        Some("-1") => Ok(Some(-1)),
        Some(v) => Ok(Some(parse_size(v).map_err(|e| op_err(format!("invalid argument {v:?} for \"--{name}\" flag: {e}")))?)),
        None => Ok(None),
    }
}

/// A row that sets nothing itself (read elsewhere: `--detach` by the caller, `--env-file` with
/// `--env`, `--network` with `--net`).
fn none(_: &mut RunOptions, _: &Matches, _: &'static str) -> Result<(), CliError> {
    Ok(())
}

/// `-e KEY` takes KEY from the CLI's own environment (dropped if unset), as Docker does.
pub fn env_entry(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

/// `--env-file` entries first, then `-e`, as Docker orders them.
fn env(o: &mut RunOptions, m: &Matches, _: &'static str) -> Result<(), CliError> {
    for f in m.values("env-file") {
        let text = std::fs::read_to_string(f).map_err(|e| berth_runtime::Error::io(format!("open env file {f}"), e))?;
        o.env.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(env_entry));
    }
    o.env.extend(m.values("env").into_iter().filter_map(env_entry));
    Ok(())
}

/// `--network` and its older name `--net`; the newer name wins.
/// `--mount`: checked here, as the docker CLI does before it asks the daemon (bad usage, 125).
fn mount(o: &mut RunOptions, m: &Matches, name: &'static str) -> Result<(), CliError> {
    for v in list(m, name)? {
        berth_runtime::container::mounts::parse_mount(&v).map_err(|e| {
            CliError::Usage(UsageError { msg: format!("invalid argument \"{v}\" for \"--mount\" flag: {}", e.message()), cmd: "berth run" })
        })?;
        o.mounts.push(v);
    }
    Ok(())
}

fn net(o: &mut RunOptions, m: &Matches, _: &'static str) -> Result<(), CliError> {
    o.net = m.value("network").or(m.value("net")).map(str::to_string);
    Ok(())
}

/// `-p` values, checked here so a typo fails before anything is sent (125, Docker's words).
fn publish(o: &mut RunOptions, m: &Matches, name: &'static str) -> Result<(), CliError> {
    for p in m.values(name) {
        berth_runtime::net::ports::parse(p)?;
        o.publish.push(p.to_string());
    }
    Ok(())
}

fn security_opt(o: &mut RunOptions, m: &Matches, name: &'static str) -> Result<(), CliError> {
    for s in m.values(name) {
        match s {
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => o.no_new_privileges = true,
            "no-new-privileges=false" | "no-new-privileges:false" => o.no_new_privileges = false,
            _ if s.starts_with("seccomp=") || s.starts_with("seccomp:") => o.seccomp = Some(seccomp_profile(&s[8..])?),
            other => {
                return Err(op_err(format!(
                    "unsupported security option {other:?} (supported: no-new-privileges, seccomp=PROFILE.json|unconfined)"
                )))
            }
        }
    }
    Ok(())
}

/// `seccomp=unconfined`, or a profile file: its text, checked now so that a bad one starts
/// nothing (Docker's CLI, too, reads the file where the command is typed).
fn seccomp_profile(v: &str) -> Result<String, CliError> {
    if v == "unconfined" {
        return Ok(v.to_string());
    }
    let text = std::fs::read_to_string(v).map_err(|e| op_err(format!("opening seccomp profile ({v}) failed: {e}")))?;
    berth_runtime::seccomp::check(&text).map_err(|e| op_err(format!("{v}: {e}")))?;
    Ok(text)
}

fn userns(o: &mut RunOptions, m: &Matches, name: &'static str) -> Result<(), CliError> {
    if let Some(u) = m.value(name) {
        berth_runtime::userns::parse_mode(u).map_err(|e| op_err(e.to_string()))?;
        o.userns = Some(u.to_string());
    }
    Ok(())
}

/// `run` arguments (after `run`) as options, for the preload file and updates: the same parser
/// and checks as the command line.
pub fn parse_run_words(words: &[String]) -> std::result::Result<RunOptions, String> {
    let m = match args::parse(&RUN, words).map_err(|e| e.msg)? {
        Parsed::Matches(m) => m,
        Parsed::Help(_) => return Err("--help is not a container".into()),
    };
    run_options(&m).map(|(o, _)| o).map_err(|e| match e {
        CliError::Op(e) => e.to_string(),
        CliError::Usage(u) => u.msg,
        CliError::Exit(c) => format!("exit {c}"),
    })
}

/// Parsed `run`/`create` arguments as options, and whether `-d` was given.
pub fn run_options(m: &Matches) -> Result<(RunOptions, bool), CliError> {
    let args = m.args();
    let mut o = RunOptions { image: args[0].clone(), cmd: args[1..].to_vec(), ..RunOptions::default() };
    for (f, set) in RUN_FLAGS {
        set(&mut o, m, f.long)?;
    }
    check_devices(&o)?;
    Ok((o, m.flag("detach")))
}

/// Docker checks `--device` and `--device-cgroup-rule` syntax in the client: a bad value is a usage
/// error (exit 125) before the agent is asked anything.
fn check_devices(o: &RunOptions) -> Result<(), CliError> {
    let usage = |flag: &str, v: &str, e: berth_device::Error| {
        CliError::Usage(UsageError { msg: format!("invalid argument {v:?} for \"--{flag}\" flag: {e}"), cmd: "berth run" })
    };
    for d in &o.devices {
        berth_device::spec::parse(d).map_err(|e| usage("device", d, e))?;
    }
    for r in &o.device_cgroup_rules {
        berth_device::rule::Rule::parse(r).map_err(|e| usage("device-cgroup-rule", r, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn every_row_fills_its_field() {
        let o = parse_run_words(&words(
            "--name web -m 64m --cpus 1.5 --net none -v /a:/b --rm -t --security-opt no-new-privileges --restart always img sh -c x",
        ))
        .unwrap();
        assert_eq!(o.image, "img");
        assert_eq!(o.cmd, words("sh -c x"));
        assert_eq!(o.name.as_deref(), Some("web"));
        assert_eq!(o.memory, Some(64 << 20));
        assert_eq!(o.cpus, Some(1.5));
        assert_eq!(o.net.as_deref(), Some("none"));
        assert_eq!(o.volumes, words("/a:/b"));
        assert!(o.auto_remove && o.tty && o.no_new_privileges && !o.interactive);
        assert_eq!(o.restart.as_deref(), Some("always"));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse_run_words(&words("--cpus x img")).unwrap_err().contains("--cpus"));
        assert!(parse_run_words(&words("--userns private img")).unwrap_err().contains("--userns"));
        assert!(parse_run_words(&words("--security-opt bogus img")).is_err());
        assert!(parse_run_words(&words("--device-cgroup-rule x img")).is_err());
        assert!(parse_run_words(&words("--mount type=bind,target=/x,bogus=1 img")).unwrap_err().contains("unexpected key 'bogus'"));
        assert_eq!(parse_run_words(&words("--mount type=tmpfs,dst=/t img")).unwrap().mounts, words("type=tmpfs,dst=/t"));
        assert!(parse_run_words(&words("--help")).is_err());
    }

    #[test]
    fn the_spec_lists_every_row() {
        assert_eq!(RUN.opts.len(), RUN_FLAGS.len());
        assert!(RUN.opts.iter().zip(RUN_FLAGS).all(|(a, (b, _))| a.long == b.long));
    }
}
