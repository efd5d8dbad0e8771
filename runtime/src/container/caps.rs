//! Capabilities: Docker's default set, `--cap-add/--cap-drop`, and applying them in the child.

use caps::{CapSet, Capability, CapsHashSet};

use crate::error::{Error, Result};

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DOCKER_DEFAULT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn parse(name: &str) -> Result<Capability> {
    let canon = caps::to_canonical(name);
    canon.parse::<Capability>().map_err(|_| Error::invalid(format!("unknown capability: {name:?}")))
}

/// The set a container gets: Docker's default, plus `add`, minus `drop` (`ALL` allowed in both);
/// `--privileged` gets every capability berth itself holds, never more (asking for more is what
/// makes Docker's `--privileged` fail on hosts without, say, CAP_SYS_RESOURCE).
pub fn resolve(add: &[String], drop: &[String], privileged: bool) -> Result<Vec<String>> {
    let held = held()?;
    let mut set: CapsHashSet = if privileged { held.clone() } else { DOCKER_DEFAULT.iter().map(|n| parse(n)).collect::<Result<_>>()? };
    for d in drop {
        if d.eq_ignore_ascii_case("all") {
            set.clear();
        } else {
            set.remove(&parse(d)?);
        }
    }
    for a in add {
        if a.eq_ignore_ascii_case("all") {
            set.extend(held.iter().copied());
        } else {
            set.insert(parse(a)?);
        }
    }
    let mut names: Vec<String> = set.intersection(&held).map(|c| c.to_string()).collect();
    names.sort();
    Ok(names)
}

/// berth's own bounding set, read once (a call per capability the kernel has): berth never
/// shrinks its own, only its children's.
fn held() -> Result<CapsHashSet> {
    static HELD: std::sync::OnceLock<CapsHashSet> = std::sync::OnceLock::new();
    if let Some(h) = HELD.get() {
        return Ok(h.clone());
    }
    let h = caps::read(None, CapSet::Bounding).map_err(|e| Error::invalid(format!("read bounding capabilities: {e}")))?;
    Ok(HELD.get_or_init(|| h).clone())
}

/// In the container's process, before exec: shrink the bounding set, then set the rest. Setting
/// a non-root user afterwards clears permitted and effective, as with Docker.
pub fn apply_bounding(names: &[String]) -> Result<CapsHashSet> {
    let want: CapsHashSet = names.iter().map(|n| parse(n)).collect::<Result<_>>()?;
    // One PR_CAPBSET_DROP per capability not wanted (dropping one already gone succeeds);
    // reading the set first would cost a call per capability the kernel has, twice.
    for c in caps::all().difference(&want) {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(c.index()), 0, 0, 0) } != 0 {
            let e = std::io::Error::last_os_error();
            // EINVAL: a capability this kernel does not know, so nothing to drop.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(Error::invalid(format!("set capabilities: drop {c} from the bounding set: {e}")));
            }
        }
    }
    Ok(want)
}

pub fn apply_sets(want: &CapsHashSet) -> Result<()> {
    let err = |e: caps::errors::CapsError| Error::invalid(format!("set capabilities: {e}"));
    caps::clear(None, CapSet::Ambient).map_err(err)?;
    // Empty, as Docker since 20.10.14 (CVE-2022-24769): a file's inheritable bits must not
    // grant anything across exec of a non-root program.
    caps::clear(None, CapSet::Inheritable).map_err(err)?;
    caps::set(None, CapSet::Effective, want).map_err(err)?;
    caps::set(None, CapSet::Permitted, want).map_err(err)
}
