//! Volumes as Docker's `local` driver keeps them: `<root>/volumes/<name>/_data` holds the data
//! and `<root>/volumes/<name>/volume.json` a small record (driver, labels, options, creation
//! time, whether it is anonymous), written atomically. A volume whose options name a file system
//! (`-o type=tmpfs -o device=tmpfs -o o=size=64m`, or `-o o=bind -o device=/srv/x`) is mounted
//! on `_data` in the host's mount namespace when a container first needs it, and unmounted when
//! the volume is removed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::atomic_write;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// Seconds since the epoch.
    pub created: i64,
    /// Made for a container (`-v /path`, an image's VOLUME): removed with it by `rm -v`.
    pub anonymous: bool,
}

const RECORD: &str = "volume.json";
/// Docker's label on anonymous volumes (since 23.0), which `volume prune` uses to tell them apart.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Docker's rule for local volume names.
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphanumeric() && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

pub fn invalid_name(n: &str) -> Error {
    Error::invalid(format!(
        "\"{n}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    ))
}

pub fn random_name() -> Result<String> {
    crate::random::hex(32).ctx(|| "random volume name".into())
}

/// How a volume with file-system options is mounted: (source, fstype, flags, data).
pub type MountPlan = (String, String, libc::c_ulong, String);

/// The local driver's options (`type`, `device`, `o`) as one mount, checked when the volume is
/// created. None for a plain directory.
pub fn mount_plan(opts: &BTreeMap<String, String>) -> Result<Option<MountPlan>> {
    for k in opts.keys() {
        if !matches!(k.as_str(), "type" | "device" | "o") {
            return Err(Error::invalid(format!("invalid option key: {k:?}")));
        }
    }
    if opts.is_empty() {
        return Ok(None);
    }
    let fstype = opts.get("type").cloned().unwrap_or_default();
    let device = opts.get("device").cloned().unwrap_or_default();
    let mut flags: libc::c_ulong = 0;
    let mut data = Vec::new();
    for o in opts.get("o").map(String::as_str).unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        match o {
            "bind" => flags |= libc::MS_BIND,
            "rbind" => flags |= libc::MS_BIND | libc::MS_REC,
            "ro" => flags |= libc::MS_RDONLY,
            "rw" => flags &= !libc::MS_RDONLY,
            "nosuid" => flags |= libc::MS_NOSUID,
            "nodev" => flags |= libc::MS_NODEV,
            "noexec" => flags |= libc::MS_NOEXEC,
            "noatime" => flags |= libc::MS_NOATIME,
            "suid" | "dev" | "exec" | "defaults" => {}
            other => data.push(other.to_string()),
        }
    }
    if device.is_empty() {
        return Err(Error::invalid("the local volume driver needs a device option (e.g. -o device=tmpfs)"));
    }
    if flags & libc::MS_BIND == 0 && fstype.is_empty() {
        return Err(Error::invalid("the local volume driver needs a type option (e.g. -o type=tmpfs) unless o=bind"));
    }
    if flags & libc::MS_BIND != 0 && !Path::new(&device).is_absolute() {
        return Err(Error::invalid(format!("bind device {device:?} must be an absolute path")));
    }
    if fstype == "tmpfs" {
        // Sizes as Docker writes them (size=64m) are fine for the kernel; check them early.
        crate::container::spec::tmpfs_options(&data.join(","))?;
    }
    Ok(Some((device, fstype, flags, data.join(","))))
}

pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    pub fn open(root: &Path) -> Volumes {
        Volumes { dir: root.join("volumes") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The directory containers see (the volume's `Mountpoint`).
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// The volume whose data directory is `source`, if `source` is one.
    pub fn name_of(&self, source: &Path) -> Option<String> {
        let rest = source.strip_prefix(&self.dir).ok()?;
        let mut c = rest.components();
        let name = c.next()?.as_os_str().to_str()?.to_string();
        (c.next()?.as_os_str() == "_data" && c.next().is_none()).then_some(name)
    }

    /// Creates a volume (a random name when `name` is None). An existing named volume is
    /// returned as it is, as Docker's `volume create` and `-v NAME:/path` do; asking for
    /// different options is an error.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<VolumeRecord> {
        let name = match name {
            Some(n) if !valid_name(n) => return Err(invalid_name(n)),
            Some(n) => n.to_string(),
            None => random_name()?,
        };
        mount_plan(&options)?;
        if let Ok(existing) = self.get(&name) {
            if !options.is_empty() && existing.options != options {
                return Err(Error::conflict(format!("volume {name} already exists with different options")));
            }
            return Ok(existing);
        }
        let mut labels = labels;
        if anonymous {
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
        }
        let rec = VolumeRecord { name: name.clone(), driver: "local".into(), labels, options, created: crate::timefmt::now(), anonymous };
        let data = self.data_dir(&name);
        fs::create_dir_all(&data).ctx_path("create volume", &data)?;
        let body = serde_json::to_vec_pretty(&rec).map_err(|e| Error::invalid(format!("encode volume {name}: {e}")))?;
        // The record last: a volume without one (a crash in between) is not listed and is made
        // again by the next create of the same name.
        atomic_write(&self.path(&name).join(RECORD), &body)?;
        Ok(rec)
    }

    pub fn get(&self, name: &str) -> Result<VolumeRecord> {
        let missing = || Error::not_found(format!("get {name}: no such volume"));
        if !valid_name(name) {
            return Err(missing());
        }
        let p = self.path(name).join(RECORD);
        let body = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(Error::io_at("read", &p, e)),
        };
        serde_json::from_slice(&body).map_err(|e| Error::invalid(format!("volume record {}: {e}", p.display())))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<VolumeRecord>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io_at("read", &self.dir, e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.ctx_path("read", &self.dir)?;
            if let Some(name) = e.file_name().to_str() {
                if let Ok(v) = self.get(name) {
                    out.push(v);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Mounts the volume's file system on `_data` (host namespace) unless it has none or it is
    /// mounted already.
    pub fn ensure_mounted(&self, v: &VolumeRecord) -> Result<()> {
        let Some((src, fstype, flags, data)) = mount_plan(&v.options)? else { return Ok(()) };
        let target = self.data_dir(&v.name);
        if is_mount_point(&target) {
            return Ok(());
        }
        crate::container::rootfs::mount(&src, &target, &fstype, flags, &data).map_err(|e| e.context(format!("mount volume {}", v.name)))
    }

    /// Removes a volume; `users` are the containers that use it (Docker refuses while there
    /// are any, `force` or not, but a forced remove of a missing volume is quiet).
    pub fn remove(&self, name: &str, users: &[String]) -> Result<()> {
        self.get(name)?;
        if !users.is_empty() {
            return Err(Error::conflict(format!("remove {name}: volume is in use - [{}]", users.join(", "))));
        }
        let data = self.data_dir(name);
        if is_mount_point(&data) {
            let c = crate::fsutil::cstring(&data)?;
            // SAFETY: a NUL-terminated path; detach so that a busy mount still goes away.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                return Err(Error::io(format!("unmount volume {name}"), std::io::Error::last_os_error()));
            }
        }
        // The record first: a crash halfway leaves no listed volume with half its data.
        let dir = self.path(name);
        fs::remove_file(dir.join(RECORD)).ctx(|| format!("remove volume {name}"))?;
        crate::fsutil::remove_all(&dir)
    }

    /// Disk use of a volume's data (for `system df` and `volume ls`'s size).
    pub fn size(&self, name: &str) -> u64 {
        crate::fsutil::tree_size(&self.data_dir(name))
    }
}

/// Whether `p` is a mount point (its own entry in /proc/self/mountinfo).
pub fn is_mount_point(p: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return false };
    let want = p.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| unescape_mountinfo(m) == want))
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// `volume ls --filter`: `name=` (substring), `label=K` / `label=K=V`, `dangling=true|false`,
/// `driver=`. `users` tells whether a volume is in use.
pub fn matches_filter(v: &VolumeRecord, filter: &str, in_use: bool) -> Result<bool> {
    let (k, val) = filter.split_once('=').ok_or_else(|| Error::invalid(format!("bad format of filter (expected name=value): {filter}")))?;
    Ok(match k {
        "name" => v.name.contains(val),
        "driver" => v.driver == val,
        "label" => match val.split_once('=') {
            Some((lk, lv)) => v.labels.get(lk).is_some_and(|x| x == lv),
            None => v.labels.contains_key(val),
        },
        "dangling" => match val {
            "true" | "1" => !in_use,
            "false" | "0" => in_use,
            _ => return Err(Error::invalid(format!("invalid filter 'dangling={val}'"))),
        },
        _ => return Err(Error::invalid(format!("invalid filter '{k}'"))),
    })
}

/// Docker's `volume inspect` shape.
pub fn inspect_json(v: &VolumeRecord, mountpoint: &Path) -> serde_json::Value {
    serde_json::json!({
        "CreatedAt": crate::timefmt::rfc3339(v.created),
        "Driver": v.driver,
        "Labels": v.labels,
        "Mountpoint": mountpoint,
        "Name": v.name,
        // Docker: {} for a volume made by `volume create`, null for a container's anonymous one.
        "Options": if v.anonymous && v.options.is_empty() { serde_json::Value::Null } else { serde_json::json!(v.options) },
        "Scope": "local",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-vol-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn create_list_get_remove() {
        let root = scratch("crud");
        let v = Volumes::open(&root);
        let mut labels = BTreeMap::new();
        labels.insert("app".to_string(), "db".to_string());
        let a = v.create(Some("data"), labels.clone(), BTreeMap::new(), false).unwrap();
        assert_eq!(a.driver, "local");
        assert!(v.data_dir("data").is_dir());
        // Creating it again returns the same volume.
        assert_eq!(v.create(Some("data"), BTreeMap::new(), BTreeMap::new(), false).unwrap(), a);
        let anon = v.create(None, BTreeMap::new(), BTreeMap::new(), true).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert!(anon.labels.contains_key(ANONYMOUS_LABEL));
        let names: Vec<String> = v.list().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names.len(), 2);
        assert_eq!(v.name_of(&v.data_dir("data")).as_deref(), Some("data"));
        assert_eq!(v.name_of(&root.join("elsewhere")), None);
        let e = v.remove("data", &["abc".to_string()]).unwrap_err();
        assert_eq!(e.message(), "remove data: volume is in use - [abc]");
        v.remove("data", &[]).unwrap();
        assert_eq!(v.get("data").unwrap_err().message(), "get data: no such volume");
        assert!(!v.path("data").exists());
        assert!(v.create(Some("/abs"), BTreeMap::new(), BTreeMap::new(), false).is_err());
        assert!(matches_filter(&a, "label=app=db", false).unwrap());
        assert!(matches_filter(&a, "label=app", false).unwrap());
        assert!(!matches_filter(&a, "label=app=x", false).unwrap());
        assert!(matches_filter(&a, "dangling=true", false).unwrap());
        assert!(matches_filter(&a, "name=at", false).unwrap());
        assert!(matches_filter(&a, "bogus=1", false).is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn local_driver_options() {
        let o = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let (src, fs, _, data) = mount_plan(&o(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=64m,uid=1000")])).unwrap().unwrap();
        assert_eq!((src.as_str(), fs.as_str(), data.as_str()), ("tmpfs", "tmpfs", "size=64m,uid=1000"));
        let (src, _, flags, _) = mount_plan(&o(&[("device", "/srv/x"), ("o", "bind")])).unwrap().unwrap();
        assert_eq!(src, "/srv/x");
        assert_ne!(flags & libc::MS_BIND, 0);
        assert!(mount_plan(&o(&[("bogus", "1")])).is_err());
        assert!(mount_plan(&o(&[("type", "tmpfs")])).is_err());
        assert!(mount_plan(&o(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=lots")])).is_err());
        assert_eq!(mount_plan(&BTreeMap::new()).unwrap(), None);
    }
}
