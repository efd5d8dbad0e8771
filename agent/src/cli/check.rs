//! `berth check`: does this kernel have what berth needs? Like `lxc-checkconfig`, from the kernel's
//! config and what the running system shows (the list and the probing live in
//! `berth_runtime::kernel`). Exit 0 when every required option is there, 1 when one is missing.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use berth_runtime::kernel::{self, Finding, Host, KernelConfig, Need, Status};
use berth_runtime::Error;

use super::{op_err, CliError, Ctx};
use crate::term::format::Format;
use crate::term::output::is_tty;
use berth_proto::args::{opt, Cmd, Matches, Opt};

const CHECK_OPTS: &[Opt] = &[
    opt("format", None, Some("string"), "Format output: \"json\" for one JSON object per line"),
    opt("kernel-config", None, Some("file"), "Check this kernel config (.config, config.gz) instead of the running kernel"),
    opt("list", None, None, "Print the CONFIG_ options berth checks (required and optional), one per line"),
];

pub const CHECK: Cmd = Cmd {
    path: "berth check",
    usage: "[OPTIONS]",
    about: "Check that the kernel has what berth needs (namespaces, cgroups, overlayfs, seccomp...)",
    opts: CHECK_OPTS,
    min_args: 0,
    max_args: Some(0),
    stop_at_positional: false,
    subcommands: &[],
};

fn write_err(e: std::io::Error) -> CliError {
    CliError::Op(Error::io("write output", e))
}

pub fn check(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let mut out = std::io::stdout().lock();
    if m.flag("list") {
        for r in kernel::REQUIREMENTS {
            writeln!(out, "CONFIG_{}", r.name).map_err(write_err)?;
        }
        return Ok(0);
    }
    let json = match Format::parse(m.value("format"))? {
        Format::Table => false,
        Format::Json => true,
        Format::Template(_) => return Err(op_err("check takes --format json or table")),
    };

    // What is checked: a given config file alone, or the running kernel (config if it has one,
    // plus what the live system shows).
    let mut header = Vec::new();
    let findings = match m.value("kernel-config") {
        Some(file) => {
            let cfg = KernelConfig::read(Path::new(file))?;
            header.push(format!("Kernel config: {file} (a file: the running kernel is not probed)"));
            kernel::check(Some(&cfg), None)
        }
        None => {
            let host = Host::live();
            let cfg = host.running_config()?;
            let release = host.release().unwrap_or_else(|| "unknown".into());
            header.push(match &cfg {
                Some((p, _)) => format!("Kernel: {release}, config from {}", p.display()),
                None => format!("Kernel: {release}, no config found (/proc/config.gz, /boot/config-{release}): probing only"),
            });
            header.push(cgroup_line(&host.cgroups()));
            kernel::check(cfg.as_ref().map(|(_, c)| c), Some(&host))
        }
    };

    if json {
        for f in &findings {
            let line = json!({
                "Name": format!("CONFIG_{}", f.req.name),
                "Status": f.status.as_str(),
                "Required": f.req.need == Need::Required,
                "Reason": f.req.reason,
                "Feature": f.req.feature,
                "Config": f.config.map(|t| t.as_str()),
                "Probe": f.probe,
                "Note": f.note,
            });
            writeln!(out, "{}", crate::term::format::json_line(&line)).map_err(write_err)?;
        }
    } else {
        let colour = is_tty(1);
        for h in &header {
            writeln!(out, "{h}").map_err(write_err)?;
        }
        writeln!(out).map_err(write_err)?;
        for f in &findings {
            writeln!(out, "{}", line(f, colour)).map_err(write_err)?;
        }
        writeln!(out).map_err(write_err)?;
        writeln!(out, "{}", summary(&findings)).map_err(write_err)?;
        writeln!(out, "{}", networking(&findings, m.value("kernel-config").is_none())).map_err(write_err)?;
        if m.value("kernel-config").is_none() {
            writeln!(out, "{}", user_namespaces(&ctx.root)).map_err(write_err)?;
        }
    }
    let missing = findings.iter().any(|f| f.req.need == Need::Required && f.status == Status::Missing);
    Ok(if missing { 1 } else { 0 })
}

fn cgroup_line(cg: &kernel::Cgroups) -> String {
    let mut s = format!("Cgroups: {}", cg.mode.as_str());
    if !cg.v1.is_empty() {
        let names: Vec<&str> = cg.v1.iter().map(|(c, _)| c.as_str()).collect();
        s.push_str(&format!("; v1 controllers: {}", names.join(" ")));
    }
    if let Some((mnt, ctrl)) = &cg.v2 {
        let list = if ctrl.is_empty() { "none".to_string() } else { ctrl.join(" ") };
        s.push_str(&format!("; cgroup2 at {}, controllers: {list}", mnt.display()));
    }
    s
}

/// `CONFIG_X: status  (required: reason; disables feature)`, the status coloured on a terminal.
fn line(f: &Finding, colour: bool) -> String {
    let need = match f.req.need {
        Need::Required => "required",
        Need::Optional => "optional",
    };
    let status = f.status.as_str();
    let shown = if colour {
        let code = match (f.status, f.req.need) {
            (Status::Enabled, _) => "32",
            (Status::Missing, Need::Required) => "31",
            _ => "33",
        };
        format!("\x1b[{code}m{status}\x1b[0m")
    } else {
        status.to_string()
    };
    let effect = match f.status {
        Status::Enabled => "enables",
        Status::Missing | Status::Unknown => "disables",
    };
    let mut s = format!("CONFIG_{}: {shown}  ({need}: {}; {effect} {})", f.req.name, f.req.reason, f.req.feature);
    if let Some(note) = &f.note {
        s.push_str(&format!(" [{note}]"));
    }
    s
}

/// Whether bridge networks can work: the kernel options (berth makes its netfilter rules over
/// netlink itself, no nftables userland needed), and on the live system IPv4 forwarding (the
/// agent turns it on).
fn networking(findings: &[Finding], live: bool) -> String {
    let missing = kernel::bridge_networking_missing(findings);
    let mut s = if missing.is_empty() {
        "Bridge networks: kernel options present.".to_string()
    } else {
        format!(
            "Bridge networks: unavailable without {} (containers can still run with --network host or none; start the agent with --default-network host).",
            missing.join(" ")
        )
    };
    if live {
        if let Ok(v) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward") {
            let on = if v.trim() == "1" { "on" } else { "off (the agent turns it on for bridge networks)" };
            s.push_str(&format!("\nIPv4 forwarding: {on}"));
        }
    }
    s
}

/// Whether `--userns=auto` can work here: user namespaces, and an overlay over id-mapped lower
/// layers tried for real on the store's file system (root only).
fn user_namespaces(root: &Path) -> String {
    if let Err(e) = berth_runtime::userns::kernel_support() {
        return format!("User namespaces (--userns=auto): unavailable: {e}.");
    }
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return "User namespaces (--userns=auto): available; id-mapped overlay layers not probed (run as root).".into();
    }
    let scratch = if root.is_dir() { root.to_path_buf() } else { std::env::temp_dir() };
    match berth_runtime::userns::probe_idmapped_overlay(&scratch) {
        Ok(()) => "User namespaces (--userns=auto): available, with id-mapped overlay layers.".into(),
        Err(e) => format!("User namespaces (--userns=auto): unavailable: {e}."),
    }
}

fn summary(findings: &[Finding]) -> String {
    let names = |need: Need, status: Status| -> Vec<String> {
        findings.iter().filter(|f| f.req.need == need && f.status == status).map(|f| format!("CONFIG_{}", f.req.name)).collect()
    };
    let missing = names(Need::Required, Status::Missing);
    let unknown = names(Need::Required, Status::Unknown);
    let mut s = if missing.is_empty() {
        "All required kernel options are present.".to_string()
    } else {
        format!("Missing required kernel options: {}", missing.join(" "))
    };
    if !unknown.is_empty() {
        s.push_str(&format!("\nCould not tell (no kernel config; pass --kernel-config FILE): {}", unknown.join(" ")));
    }
    let optional = names(Need::Optional, Status::Missing);
    if !optional.is_empty() {
        s.push_str(&format!("\nMissing optional: {}", optional.join(" ")));
    }
    s
}
