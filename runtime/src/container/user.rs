//! `-u user[:group]`: resolved in the container's own /etc/passwd and /etc/group (after
//! pivot_root), as Docker does, then applied with setgroups/setgid/setuid.

use std::io;

use crate::error::{Error, Result};

fn lookup(file: &str, name: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>()).find(|f| f.first().is_some_and(|n| n == name))
}

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The user's home directory from /etc/passwd, `/` when it has no entry (runc's default).
    pub home: String,
}

fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines()
                .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
                .find(|f| f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(uid))
                .and_then(|f| f.get(5).cloned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

/// The environment as the process gets it: Docker (through runc) adds `HOME` from the user's
/// passwd entry unless the image or `-e` set it.
pub fn with_home(env: &[String], home: &str) -> Vec<String> {
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    env
}

/// The ids and home for a `user[:group]` spec; empty means root. Reads the container's own
/// /etc/passwd and /etc/group (call it after pivot_root).
pub fn resolve(spec: &str) -> Result<Ids> {
    let (uid, gid, groups) = resolve_ids(spec)?;
    Ok(Ids { uid, gid, groups, home: home_of(uid) })
}

fn resolve_ids(spec: &str) -> Result<(u32, u32, Vec<u32>)> {
    if spec.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, name, mut gid) = match u.parse::<u32>() {
        Ok(n) => {
            let entry = std::fs::read_to_string("/etc/passwd").ok().and_then(|t| {
                t.lines()
                    .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
                    .find(|f| f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(n))
            });
            let gid = entry.as_ref().and_then(|f| f.get(3)).and_then(|x| x.parse().ok()).unwrap_or(0);
            (n, entry.and_then(|f| f.first().cloned()), gid)
        }
        Err(_) => {
            let f = lookup("/etc/passwd", u)
                .ok_or_else(|| Error::invalid(format!("unable to find user {u}: no matching entries in passwd file")))?;
            let uid = f.get(2).and_then(|x| x.parse().ok()).ok_or_else(|| Error::invalid(format!("malformed passwd entry for {u}")))?;
            let gid = f.get(3).and_then(|x| x.parse().ok()).unwrap_or(0);
            (uid, Some(u.to_string()), gid)
        }
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("/etc/group", g)
                .and_then(|f| f.get(2).and_then(|x| x.parse().ok()))
                .ok_or_else(|| Error::invalid(format!("unable to find group {g}: no matching entries in group file")))?,
        };
    }
    let mut groups = vec![gid];
    if let (Some(name), Ok(text)) = (name, std::fs::read_to_string("/etc/group")) {
        for f in text.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if f.get(3).is_some_and(|m| m.split(',').any(|x| x == name)) {
                if let Some(id) = f.get(2).and_then(|x| x.parse().ok()) {
                    if !groups.contains(&id) {
                        groups.push(id);
                    }
                }
            }
        }
    }
    Ok((uid, gid, groups))
}

pub fn switch(uid: u32, gid: u32, groups: &[u32]) -> Result<()> {
    // SAFETY: plain credential syscalls; `groups` is valid for its length.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
            return Err(Error::io("setgroups", io::Error::last_os_error()));
        }
        if libc::setgid(gid) != 0 {
            return Err(Error::io(format!("setgid {gid}"), io::Error::last_os_error()));
        }
        if libc::setuid(uid) != 0 {
            return Err(Error::io(format!("setuid {uid}"), io::Error::last_os_error()));
        }
    }
    Ok(())
}
