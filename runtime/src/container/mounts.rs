//! What `-v` and `--mount` ask for, parsed as the docker CLI parses them (same error texts), and
//! resolved into the spec's mounts. Pure except for `resolve`, which looks at the host (does a
//! bind source exist) and makes volumes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::container::spec::Mount;
use crate::error::{Error, Result};
use crate::volume::{invalid_name, valid_name, Volumes};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bind,
    Volume,
    Tmpfs,
}

/// One `-v` or `--mount`, before anything is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: Kind,
    /// A host path (bind), a volume name (empty: anonymous), nothing (tmpfs).
    pub source: String,
    pub target: String,
    pub readonly: bool,
    /// `bind-propagation` (Docker's default is rprivate).
    pub propagation: Option<String>,
    /// `volume-nocopy` / `-v ...:nocopy`: no copy-up of the image's content.
    pub nocopy: bool,
    pub tmpfs_size: Option<u64>,
    pub tmpfs_mode: Option<u32>,
    /// `volume-opt` and `volume-label`, used when the volume is created.
    pub volume_opts: BTreeMap<String, String>,
    pub volume_labels: BTreeMap<String, String>,
    /// `-v`: a missing bind source is made as a directory; `--mount` refuses it.
    pub create_source: bool,
}

impl Request {
    fn new(kind: Kind) -> Request {
        Request {
            kind,
            source: String::new(),
            target: String::new(),
            readonly: false,
            propagation: None,
            nocopy: false,
            tmpfs_size: None,
            tmpfs_mode: None,
            volume_opts: BTreeMap::new(),
            volume_labels: BTreeMap::new(),
            create_source: false,
        }
    }
}

const PROPAGATIONS: &[&str] = &["private", "rprivate", "shared", "rshared", "slave", "rslave"];

/// Go's strconv.ParseBool.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Splits a `--mount` value on commas as Go's csv reader does (a field may be quoted).
fn csv_fields(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(Error::invalid(format!("invalid argument \"{s}\" for \"--mount\" flag: extraneous or missing \" in quoted-field")));
    }
    out.push(cur);
    Ok(out)
}

/// `--mount type=bind|volume|tmpfs,source=...,target=...,...`
pub fn parse_mount(s: &str) -> Result<Request> {
    let mut r = Request::new(Kind::Volume);
    let mut kind: Option<String> = None;
    let (mut bind_opts, mut vol_opts, mut tmpfs_opts) = (false, false, false);
    for field in csv_fields(s)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v.to_string())),
            None => (field.to_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => r.readonly = true,
                "volume-nocopy" => {
                    r.nocopy = true;
                    vol_opts = true;
                }
                _ => return Err(Error::invalid(format!("invalid field '{field}' must be a key=value pair"))),
            }
            continue;
        };
        let bad = || Error::invalid(format!("invalid value for {key}: {value}"));
        match key.as_str() {
            "type" => kind = Some(value.to_lowercase()),
            "source" | "src" => r.source = value.clone(),
            "target" | "dst" | "destination" => r.target = value.clone(),
            "readonly" | "ro" => r.readonly = parse_bool(&value).ok_or_else(bad)?,
            "bind-propagation" => {
                let p = value.to_lowercase();
                if !PROPAGATIONS.contains(&p.as_str()) {
                    return Err(Error::invalid(format!("invalid propagation mode: {value}")));
                }
                r.propagation = Some(p);
                bind_opts = true;
            }
            "volume-nocopy" => {
                r.nocopy = parse_bool(&value).ok_or_else(|| Error::invalid(format!("invalid value for volume-nocopy: {value}")))?;
                vol_opts = true;
            }
            "volume-driver" => {
                if value != "local" {
                    return Err(Error::invalid(format!("volume driver {value:?} is not supported: berth has the local driver only")));
                }
                vol_opts = true;
            }
            "volume-opt" | "volume-label" => {
                let (k, v) =
                    value.split_once('=').ok_or_else(|| Error::invalid(format!("invalid field '{field}' must be a key=value pair")))?;
                let map = if key == "volume-opt" { &mut r.volume_opts } else { &mut r.volume_labels };
                map.insert(k.to_string(), v.to_string());
                vol_opts = true;
            }
            "tmpfs-size" => {
                r.tmpfs_size = Some(crate::cgroup::parse_size(&value).ok().and_then(|n| u64::try_from(n).ok()).ok_or_else(bad)?);
                tmpfs_opts = true;
            }
            "tmpfs-mode" => {
                r.tmpfs_mode = Some(u32::from_str_radix(&value, 8).ok().filter(|m| *m <= 0o7777).ok_or_else(bad)?);
                tmpfs_opts = true;
            }
            "consistency" => {}
            _ => return Err(Error::invalid(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    r.kind = match kind.as_deref() {
        None | Some("volume") => Kind::Volume,
        Some("bind") => Kind::Bind,
        Some("tmpfs") => Kind::Tmpfs,
        Some(other) => return Err(Error::invalid(format!("invalid mount type: {other:?}: berth supports bind, volume and tmpfs"))),
    };
    let type_name = kind.as_deref().unwrap_or("volume");
    if r.target.is_empty() {
        return Err(Error::invalid("target is required"));
    }
    if vol_opts && r.kind != Kind::Volume {
        return Err(Error::invalid(format!("cannot mix 'volume-*' options with mount type '{type_name}'")));
    }
    if bind_opts && r.kind != Kind::Bind {
        return Err(Error::invalid(format!("cannot mix 'bind-*' options with mount type '{type_name}'")));
    }
    if tmpfs_opts && r.kind != Kind::Tmpfs {
        return Err(Error::invalid(format!("cannot mix 'tmpfs-*' options with mount type '{type_name}'")));
    }
    let invalid = |msg: String| Error::invalid(format!("invalid mount config for type \"{type_name}\": {msg}"));
    if !r.target.starts_with('/') {
        return Err(invalid(format!("invalid mount path: '{}' mount path must be absolute", r.target)));
    }
    match r.kind {
        Kind::Bind if r.source.is_empty() => return Err(invalid("field Source must not be empty".into())),
        Kind::Bind if !r.source.starts_with('/') => {
            return Err(invalid(format!("invalid mount path: '{}' mount path must be absolute", r.source)))
        }
        Kind::Tmpfs if !r.source.is_empty() => return Err(invalid("field Source must not be specified".into())),
        Kind::Volume if !r.source.is_empty() && !valid_name(&r.source) => return Err(invalid_name(&r.source)),
        _ => {}
    }
    Ok(r)
}

/// `-v [SOURCE:]TARGET[:OPTIONS]`: an absolute source is a bind mount (made as a directory when
/// missing), a name is a named volume, no source an anonymous volume.
pub fn parse_volume(v: &str) -> Result<Request> {
    let bad = || Error::invalid(format!("invalid volume specification: '{v}'"));
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [dst] => ("", *dst, ""),
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => return Err(bad()),
    };
    if src.is_empty() && parts.len() > 1 {
        return Err(bad());
    }
    if !dst.starts_with('/') {
        return Err(Error::invalid(format!("invalid volume specification: '{v}': invalid mount config for type \"{}\": invalid mount path: '{dst}' mount path must be absolute", if src.starts_with('/') { "bind" } else { "volume" })));
    }
    if dst == "/" {
        return Err(Error::invalid(format!(
            "invalid volume specification: '{v}': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"
        )));
    }
    let mut r = Request::new(if src.starts_with('/') { Kind::Bind } else { Kind::Volume });
    r.source = src.to_string();
    r.target = dst.to_string();
    r.create_source = r.kind == Kind::Bind;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => r.readonly = true,
            "rw" => r.readonly = false,
            "nocopy" if r.kind == Kind::Volume => r.nocopy = true,
            "z" | "Z" => {}
            p if PROPAGATIONS.contains(&p) && r.kind == Kind::Bind => r.propagation = Some(p.to_string()),
            _ => return Err(bad()),
        }
    }
    if r.kind == Kind::Volume && !src.is_empty() && !valid_name(src) {
        return Err(invalid_name(src));
    }
    Ok(r)
}

/// A volume a container mounts: made at create if missing, and filled from the image when
/// empty (Docker's copy-up) unless `nocopy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeUse {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub anonymous: bool,
    /// The path in the image whose content goes into the volume when it is empty.
    pub copy_from: Option<String>,
}

/// The spec's mounts for a set of requests, and what `make` must do at create.
#[derive(Debug, Default)]
pub struct Plan {
    pub mounts: Vec<Mount>,
    /// Bind sources to create as directories (`-v` of a missing path).
    pub create_dirs: Vec<PathBuf>,
    pub volumes: Vec<VolumeUse>,
}

impl Plan {
    /// The anonymous volumes' names (removed with the container by `rm -v`).
    pub fn anonymous(&self) -> Vec<String> {
        self.volumes.iter().filter(|v| v.anonymous).map(|v| v.name.clone()).collect()
    }
}

/// An anonymous volume for each of the image's `VOLUME` paths that no `-v`/`--mount`/`--tmpfs`
/// already covers, as Docker adds them.
pub fn image_volumes(reqs: &mut Vec<Request>, image_volumes: &[String], tmpfs_targets: &[String]) {
    let norm = |p: &str| p.trim_end_matches('/').to_string();
    for path in image_volumes {
        let p = norm(path);
        if p.is_empty() || reqs.iter().any(|r| norm(&r.target) == p) || tmpfs_targets.iter().any(|t| norm(t) == p) {
            continue;
        }
        let mut r = Request::new(Kind::Volume);
        r.target = p;
        reqs.push(r);
    }
}

/// Turns the requests into the spec's mounts without changing anything on disk (a refused run
/// leaves nothing behind): bind sources must exist unless `-v` asked for them, and new anonymous
/// volumes get their names here.
pub fn plan(volumes: &Volumes, reqs: &[Request]) -> Result<Plan> {
    let mut out = Plan::default();
    for (i, r) in reqs.iter().enumerate() {
        if reqs[..i].iter().any(|o| o.target.trim_end_matches('/') == r.target.trim_end_matches('/')) {
            return Err(Error::invalid(format!("Duplicate mount point: {}", r.target)));
        }
        match r.kind {
            Kind::Bind => {
                let source = PathBuf::from(&r.source);
                if std::fs::symlink_metadata(&source).is_err() {
                    if !r.create_source {
                        return Err(Error::invalid(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {}",
                            r.source
                        )));
                    }
                    out.create_dirs.push(source.clone());
                }
                out.mounts.push(bind(source, r));
            }
            Kind::Volume => {
                crate::volume::mount_plan(&r.volume_opts)?;
                let anonymous = r.source.is_empty();
                let name = if anonymous { crate::volume::random_name()? } else { r.source.clone() };
                if let Ok(existing) = volumes.get(&name) {
                    if !r.volume_opts.is_empty() && existing.options != r.volume_opts {
                        return Err(Error::conflict(format!("volume {name} already exists with different options")));
                    }
                }
                out.mounts.push(bind(volumes.data_dir(&name), r));
                out.volumes.push(VolumeUse {
                    name,
                    labels: r.volume_labels.clone(),
                    options: r.volume_opts.clone(),
                    anonymous,
                    copy_from: (!r.nocopy).then(|| r.target.clone()),
                });
            }
            Kind::Tmpfs => {
                let mut opts = Vec::new();
                if let Some(s) = r.tmpfs_size {
                    opts.push(format!("size={s}"));
                }
                if let Some(m) = r.tmpfs_mode {
                    opts.push(format!("mode={m:o}"));
                }
                if r.readonly {
                    opts.push("ro".into());
                }
                out.mounts.push(Mount::Tmpfs { target: r.target.clone(), options: opts.join(",") });
            }
        }
    }
    Ok(out)
}

/// At create: makes the planned bind directories and volumes, and copies the image's content
/// into each empty volume (`layer_roots`: the image's layers, lowest first). Returns the
/// volumes it made, for the caller to remove if the create fails later.
pub fn make(volumes: &Volumes, plan: &Plan, layer_roots: &[PathBuf]) -> Result<Vec<String>> {
    let mut made = Vec::new();
    let res = (|| {
        for d in &plan.create_dirs {
            std::fs::create_dir_all(d).map_err(|e| Error::io_at("create bind source", d, e))?;
        }
        for v in &plan.volumes {
            let existed = volumes.get(&v.name).is_ok();
            let rec = volumes.create(Some(&v.name), v.labels.clone(), v.options.clone(), v.anonymous)?;
            if !existed {
                made.push(v.name.clone());
            }
            volumes.ensure_mounted(&rec)?;
            if let Some(from) = &v.copy_from {
                let data = volumes.data_dir(&v.name);
                let empty = std::fs::read_dir(&data).map_err(|e| Error::io_at("read", &data, e))?.next().is_none();
                if empty {
                    crate::container::copyfs::copy_up(layer_roots, from, &data)
                        .map_err(|e| e.context(format!("copy the image's {from} into volume {}", v.name)))?;
                }
            }
        }
        Ok(())
    })();
    match res {
        Ok(()) => Ok(made),
        Err(e) => {
            for n in &made {
                let _ = volumes.remove(n, &[]);
            }
            Err(e)
        }
    }
}

fn bind(source: PathBuf, r: &Request) -> Mount {
    match &r.propagation {
        Some(p) if p != "rprivate" => Mount::BindWith { source, target: r.target.clone(), readonly: r.readonly, propagation: p.clone() },
        _ => Mount::Bind { source, target: r.target.clone(), readonly: r.readonly },
    }
}

/// A mount's propagation flag for mount(2).
pub fn propagation_flags(p: &str) -> libc::c_ulong {
    match p {
        "private" => libc::MS_PRIVATE,
        "shared" => libc::MS_SHARED,
        "slave" => libc::MS_SLAVE,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        _ => libc::MS_PRIVATE | libc::MS_REC,
    }
}

/// Docker's `Mounts` entry of inspect for one of the spec's mounts.
pub fn inspect_entry(volumes: &Volumes, m: &Mount) -> Option<serde_json::Value> {
    let (source, target, readonly, propagation) = match m {
        Mount::Bind { source, target, readonly } => (source, target, *readonly, "rprivate"),
        Mount::BindWith { source, target, readonly, propagation } => (source, target, *readonly, propagation.as_str()),
        Mount::Tmpfs { .. } => return None,
    };
    Some(match volumes.name_of(source) {
        Some(name) => serde_json::json!({
            "Type": "volume", "Name": name, "Source": source, "Destination": target, "Driver": "local",
            "Mode": if readonly { "ro" } else { "" }, "RW": !readonly, "Propagation": "",
        }),
        None => serde_json::json!({
            "Type": "bind", "Source": source, "Destination": target, "Mode": if readonly { "ro" } else { "" },
            "RW": !readonly, "Propagation": propagation,
        }),
    })
}

/// The volumes a container's mounts use.
pub fn volumes_used(volumes: &Volumes, mounts: &[Mount]) -> Vec<String> {
    mounts
        .iter()
        .filter_map(|m| match m {
            Mount::Bind { source, .. } | Mount::BindWith { source, .. } => volumes.name_of(source),
            Mount::Tmpfs { .. } => None,
        })
        .collect()
}

/// Whether a bind source needs a file (not a directory) as its mount point.
pub fn is_dir_source(p: &Path) -> bool {
    p.is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        parse_mount(s).unwrap_err().message().to_string()
    }

    #[test]
    fn mount_flag_as_docker_parses_it() {
        let r = parse_mount("type=bind,source=/etc/os-release,target=/os-release,readonly").unwrap();
        assert_eq!(
            (r.kind, r.source.as_str(), r.target.as_str(), r.readonly, r.create_source),
            (Kind::Bind, "/etc/os-release", "/os-release", true, false)
        );
        let r = parse_mount("type=bind,src=/srv,dst=/srv,ro=false,bind-propagation=rslave").unwrap();
        assert_eq!((r.readonly, r.propagation.as_deref()), (false, Some("rslave")));
        let r = parse_mount("source=data,target=/data,volume-nocopy,volume-label=a=b").unwrap();
        assert_eq!((r.kind, r.nocopy, r.volume_labels.get("a").map(String::as_str)), (Kind::Volume, true, Some("b")));
        let r = parse_mount("type=tmpfs,destination=/run,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        assert_eq!((r.tmpfs_size, r.tmpfs_mode), (Some(64 << 20), Some(0o1770)));
        let r = parse_mount("\"type=bind\",\"source=/a,b\",target=/x").unwrap();
        assert_eq!(r.source, "/a,b");
        assert_eq!(err("type=bind,source=/a"), "target is required");
        assert_eq!(err("type=bind,source=/a,target=/b,bogus=1"), "unexpected key 'bogus' in 'bogus=1'");
        assert_eq!(err("type=bind,source=/a,target=/b,what"), "invalid field 'what' must be a key=value pair");
        assert_eq!(err("type=bind,source=/a,target=/b,readonly=maybe"), "invalid value for readonly: maybe");
        assert_eq!(err("type=bind,source=/a,target=/b,tmpfs-size=1m"), "cannot mix 'tmpfs-*' options with mount type 'bind'");
        assert_eq!(err("type=volume,target=/b,bind-propagation=shared"), "cannot mix 'bind-*' options with mount type 'volume'");
        assert_eq!(err("type=tmpfs,target=/b,volume-nocopy"), "cannot mix 'volume-*' options with mount type 'tmpfs'");
        assert_eq!(err("type=tmpfs,target=/b,tmpfs-mode=999"), "invalid value for tmpfs-mode: 999");
        assert_eq!(err("type=bind,target=/b"), "invalid mount config for type \"bind\": field Source must not be empty");
        assert_eq!(
            err("type=bind,source=rel,target=/b"),
            "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            err("type=bind,source=/a,target=b"),
            "invalid mount config for type \"bind\": invalid mount path: 'b' mount path must be absolute"
        );
        assert_eq!(err("type=tmpfs,source=/a,target=/b"), "invalid mount config for type \"tmpfs\": field Source must not be specified");
        assert!(err("type=npipe,target=/b").contains("invalid mount type"));
    }

    #[test]
    fn volume_flag() {
        let r = parse_volume("/etc/os-release:/os-release:ro").unwrap();
        assert_eq!((r.kind, r.readonly, r.create_source), (Kind::Bind, true, true));
        let r = parse_volume("data:/data:nocopy").unwrap();
        assert_eq!((r.kind, r.source.as_str(), r.nocopy), (Kind::Volume, "data", true));
        let r = parse_volume("/data").unwrap();
        assert_eq!((r.kind, r.source.as_str()), (Kind::Volume, ""));
        assert!(parse_volume("a:b:c:d").is_err());
        assert!(parse_volume("/x:/").is_err());
        assert!(parse_volume("/x:rel").is_err());
        assert!(parse_volume("/x:/y:bogus").is_err());
        assert!(parse_volume("bad name:/y").is_err());
    }

    #[test]
    fn plan_binds_and_volumes() {
        let root = std::env::temp_dir().join(format!("berth-mounts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let vols = Volumes::open(&root);
        let missing = root.join("nope");
        let m = parse_mount(&format!("type=bind,source={},target=/x", missing.display())).unwrap();
        let e = plan(&vols, &[m]).unwrap_err();
        assert_eq!(e.message(), format!("invalid mount config for type \"bind\": bind source path does not exist: {}", missing.display()));
        let mut reqs = vec![
            parse_volume(&format!("{}:/x", missing.display())).unwrap(),
            parse_volume("/data").unwrap(),
            parse_volume("named:/n").unwrap(),
        ];
        image_volumes(&mut reqs, &["/data/".to_string(), "/var/lib/app".to_string(), "/t".to_string()], &["/t".to_string()]);
        assert_eq!(reqs.len(), 4);
        let p = plan(&vols, &reqs).unwrap();
        assert_eq!(p.create_dirs, vec![missing.clone()]);
        assert_eq!(p.anonymous().len(), 2);
        // Nothing is made until `make`.
        assert!(!root.exists());
        let made = make(&vols, &p, &[]).unwrap();
        assert_eq!(made.len(), 3);
        assert!(missing.is_dir());
        assert_eq!(volumes_used(&vols, &p.mounts).len(), 3);
        let e = inspect_entry(&vols, &p.mounts[2]).unwrap();
        assert_eq!((e["Type"].as_str(), e["Name"].as_str(), e["Destination"].as_str()), (Some("volume"), Some("named"), Some("/n")));
        // A second container using it makes nothing new.
        let p = plan(&vols, &[parse_volume("named:/n").unwrap()]).unwrap();
        assert!(make(&vols, &p, &[]).unwrap().is_empty());
        assert!(plan(&vols, &[parse_volume("/a").unwrap(), parse_volume("bb:/a").unwrap()]).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
