//! `berth network ...` and `berth port`: listing and inspecting read the network records
//! directly (as `ps` reads container records); creating, removing, connecting and pruning go
//! through the agent, which owns the bridges and rules in its network namespace.

use std::io::{self, Write};

use serde_json::{json, Value};

use berth_proto::args::{cmd, opt, Cmd, Matches, Opt};
use berth_proto::socket::{NetworkRequest, Request, Response};
use berth_runtime::container::record;
use berth_runtime::net::config::ContainerNet;
use berth_runtime::net::docker;
use berth_runtime::net::network::{Network, Store};
use berth_runtime::Error;

use super::client::{check, Client};
use super::{command, group, op_err, CliError, Command, Ctx};
use crate::term::format::{render, Format};
use crate::term::output::table;

pub const GROUP: Cmd = group("berth network", "Manage networks");

const CREATE_OPTS: &[Opt] = &[
    opt("driver", Some('d'), Some("string"), "Driver to manage the Network (bridge)"),
    opt("subnet", None, Some("strings"), "Subnet in CIDR format that represents a network segment"),
    opt("gateway", None, Some("strings"), "IPv4 Gateway for the master subnet"),
    opt("ip-range", None, Some("strings"), "Allocate container ip from a sub-range"),
    opt("internal", None, None, "Restrict external access to the network"),
    opt("ipv6", None, None, "Enable IPv6 networking (not supported yet: refused)"),
    opt("label", None, Some("list"), "Set metadata on a network"),
    opt("opt", Some('o'), Some("map"), "Set driver specific options (com.docker.network.bridge.name=NAME)"),
];
pub const CREATE: Cmd = cmd("berth network create", "[OPTIONS] NETWORK", "Create a network", CREATE_OPTS, 1, Some(1));

const LS_OPTS: &[Opt] = &[
    opt("filter", Some('f'), Some("filter"), "Provide filter values (e.g. \"name=apps\", \"driver=bridge\", \"id=...\", \"label=k\")"),
    opt("format", None, Some("string"), "Format output: \"table\", \"json\" or a Go template"),
    opt("quiet", Some('q'), None, "Only display network IDs"),
    opt("no-trunc", None, None, "Do not truncate the output"),
];
pub const LS: Cmd = cmd("berth network ls", "[OPTIONS]", "List networks", LS_OPTS, 0, Some(0));

const INSPECT_OPTS: &[Opt] = &[opt("format", Some('f'), Some("string"), "Format output using a Go template")];
pub const INSPECT: Cmd = cmd(
    "berth network inspect",
    "[OPTIONS] NETWORK [NETWORK...]",
    "Display detailed information on one or more networks",
    INSPECT_OPTS,
    1,
    None,
);

const RM_OPTS: &[Opt] = &[opt("force", Some('f'), None, "Also when stopped containers still name the network")];
pub const RM: Cmd = cmd("berth network rm", "NETWORK [NETWORK...]", "Remove one or more networks", RM_OPTS, 1, None);

const CONNECT_OPTS: &[Opt] = &[
    opt("alias", None, Some("strings"), "Add network-scoped alias for the container"),
    opt("ip", None, Some("string"), "IPv4 address (e.g., \"172.30.100.104\")"),
];
pub const CONNECT: Cmd =
    cmd("berth network connect", "[OPTIONS] NETWORK CONTAINER", "Connect a container to a network", CONNECT_OPTS, 2, Some(2));

const DISCONNECT_OPTS: &[Opt] = &[opt("force", Some('f'), None, "Force the container to disconnect from a network")];
pub const DISCONNECT: Cmd =
    cmd("berth network disconnect", "[OPTIONS] NETWORK CONTAINER", "Disconnect a container from a network", DISCONNECT_OPTS, 2, Some(2));

const PRUNE_OPTS: &[Opt] = &[opt("force", Some('f'), None, "Do not prompt for confirmation")];
pub const PRUNE: Cmd = cmd("berth network prune", "[OPTIONS]", "Remove all unused networks", PRUNE_OPTS, 0, Some(0));

pub const SUBCOMMANDS: &[Command] = &[
    command("connect", &CONNECT, connect),
    command("create", &CREATE, create),
    command("disconnect", &DISCONNECT, disconnect),
    command("inspect", &INSPECT, inspect),
    command("ls", &LS, ls),
    command("list", &LS, ls),
    command("prune", &PRUNE, prune),
    command("rm", &RM, rm),
    command("remove", &RM, rm),
];

pub const PORT: Cmd =
    cmd("berth port", "CONTAINER [PRIVATE_PORT[/PROTO]]", "List port mappings or a specific mapping for the container", &[], 1, Some(2));

fn out_err(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    CliError::Op(Error::io("write output", e))
}

fn call(ctx: &Ctx, r: NetworkRequest) -> Result<Response, CliError> {
    check(Client::connect(ctx)?.call(&Request::Network(r))?)
}

fn store(ctx: &Ctx) -> Result<Store, CliError> {
    Ok(Store::open(&ctx.root)?)
}

pub fn create(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    if m.flag("ipv6") {
        return Err(CliError::Op(Error::invalid("IPv6 networks are not supported yet (--ipv6)")));
    }
    let r = NetworkRequest::Create {
        name: m.args()[0].to_string(),
        driver: m.value("driver").map(str::to_string),
        subnet: m.value("subnet").map(str::to_string),
        gateway: m.value("gateway").map(str::to_string),
        ip_range: m.value("ip-range").map(str::to_string),
        internal: m.flag("internal"),
        labels: m.values("label").into_iter().map(str::to_string).collect(),
        options: m.values("opt").into_iter().map(str::to_string).collect(),
    };
    if let Response::Text(id) = call(ctx, r)? {
        println!("{id}");
    }
    Ok(0)
}

pub fn rm(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let mut code = 0;
    for name in m.args() {
        match call(ctx, NetworkRequest::Remove { name: name.to_string(), force: m.flag("force") }) {
            Ok(_) => println!("{name}"),
            Err(CliError::Op(e)) => {
                eprintln!("Error: {e}");
                code = 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(code)
}

pub fn connect(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let a = m.args();
    let aliases = m.values("alias").into_iter().flat_map(|v| v.split(',')).filter(|s| !s.is_empty()).map(str::to_string).collect();
    call(
        ctx,
        NetworkRequest::Connect { network: a[0].to_string(), container: a[1].to_string(), aliases, ip: m.value("ip").map(str::to_string) },
    )?;
    Ok(0)
}

pub fn disconnect(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let a = m.args();
    call(ctx, NetworkRequest::Disconnect { network: a[0].to_string(), container: a[1].to_string(), force: m.flag("force") })?;
    Ok(0)
}

pub fn prune(ctx: &Ctx, _m: &Matches) -> Result<i32, CliError> {
    if let Response::Text(names) = call(ctx, NetworkRequest::Prune)? {
        if !names.is_empty() {
            println!("Deleted Networks:\n{names}\n");
        }
    }
    Ok(0)
}

fn matches_filters(n: &Network, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| match k.as_str() {
        "name" => n.name.contains(v.as_str()),
        "id" => n.id.starts_with(v.as_str()),
        "driver" => n.driver == *v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => n.labels.get(lk).is_some_and(|x| x == lv),
            None => n.labels.contains_key(v),
        },
        "type" => (v == "builtin") == n.is_default(),
        _ => false,
    })
}

pub fn ls(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let fmt = Format::parse(m.value("format"))?;
    let mut filters = Vec::new();
    for f in m.values("filter") {
        let (k, v) = f.split_once('=').ok_or_else(|| op_err(format!("bad format of filter (expected name=value): {f}")))?;
        if !matches!(k, "name" | "id" | "driver" | "label" | "type") {
            return Err(op_err(format!("invalid filter '{k}'")));
        }
        filters.push((k.to_string(), v.to_string()));
    }
    let nets: Vec<Network> = store(ctx)?.list()?.into_iter().filter(|n| matches_filters(n, &filters)).collect();
    let id = |n: &Network| if m.flag("no-trunc") { n.id.clone() } else { n.short_id().to_string() };
    let mut out = io::stdout().lock();
    if m.flag("quiet") {
        for n in &nets {
            writeln!(out, "{}", id(n)).map_err(out_err)?;
        }
        return Ok(0);
    }
    match fmt {
        Format::Table => {
            let rows: Vec<Vec<String>> = nets.iter().map(|n| vec![id(n), n.name.clone(), n.driver.clone(), "local".into()]).collect();
            table(&mut out, &["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows).map_err(out_err)?;
        }
        Format::Json | Format::Template(_) => {
            let rows: Vec<Value> = nets
                .iter()
                .map(|n| {
                    let mut v = docker::network_ls(n);
                    v["ID"] = json!(id(n));
                    v
                })
                .collect();
            match &fmt {
                // `table ...` templates get Docker's column titles, as `ps` and `volume ls`.
                Format::Template(t) => {
                    let titles = json!({
                        "ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
                        "Internal": "INTERNAL", "CreatedAt": "CREATED AT", "Labels": "LABELS",
                    });
                    out.write_all(crate::term::format::render_rows(t, &titles, &rows)?.as_bytes()).map_err(out_err)?;
                }
                _ => {
                    for v in &rows {
                        writeln!(out, "{}", crate::term::format::json_line(v)).map_err(out_err)?;
                    }
                }
            }
        }
    }
    Ok(0)
}

pub fn inspect(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let st = store(ctx)?;
    let mut found = Vec::new();
    let mut code = 0;
    for key in m.args() {
        match st.get(key) {
            Ok(n) => found.push(docker::network_inspect(&n)),
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
            }
        }
    }
    let mut out = io::stdout().lock();
    match m.value("format") {
        Some(t) => {
            for v in &found {
                writeln!(out, "{}", render(t, v)?).map_err(out_err)?;
            }
        }
        None => {
            let text = serde_json::to_string_pretty(&Value::Array(found)).unwrap_or_default();
            writeln!(out, "{text}").map_err(out_err)?;
        }
    }
    Ok(code)
}

/// `berth port CONTAINER [PORT[/PROTO]]`.
pub fn port(ctx: &Ctx, m: &Matches) -> Result<i32, CliError> {
    let (recs, _) = record::list(&ctx.root);
    let r = record::find(&recs, &m.args()[0])?;
    let nets = store(ctx)?.list()?;
    let published = docker::published(&nets, &r.id);
    let mut out = io::stdout().lock();
    match m.args().get(1) {
        None => {
            for p in &published {
                writeln!(out, "{}", p.describe()).map_err(out_err)?;
            }
        }
        Some(want) => {
            let (port, proto) = want.split_once('/').unwrap_or((want, "tcp"));
            let port: u16 = port.parse().map_err(|_| op_err(format!("invalid port: {want}")))?;
            let hits: Vec<_> = published.iter().filter(|p| p.container_port == port && p.proto.as_str() == proto).collect();
            if hits.is_empty() {
                return Err(op_err(format!("No public port '{port}/{proto}' published for {}", r.name)));
            }
            for p in hits {
                writeln!(out, "{}:{}", p.host_ip.map_or_else(|| "0.0.0.0".to_string(), |i| i.to_string()), p.host_port).map_err(out_err)?;
            }
        }
    }
    Ok(0)
}

/// The PORTS column of `ps` for one container.
pub fn ps_ports(root: &std::path::Path, nets: &[Network], id: &str) -> String {
    let cfg = ContainerNet::load(&record::dir(root, id)).unwrap_or_default();
    docker::ps_ports(&cfg, &docker::published(nets, id))
}
