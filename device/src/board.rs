//! Board profiles (`board-configs/<board>.toml`): what a board is (target, cgroup version its usual
//! kernel uses, memory budget for containers, storage paths, console UART) and the names of its
//! device nodes, so that `--device i2c-1` means `/dev/i2c-1` on that board. Unknown keys are
//! errors: a typo in a profile must not silently drop a setting.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::spec;
use crate::toml;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    /// Short name, the file's stem (`raspberrypi4`).
    pub name: String,
    pub description: String,
    /// The Yocto MACHINE this profile is for, if it has one.
    pub machine: Option<String>,
    /// Debian-style architecture: `arm64`, `armhf`, `amd64`.
    pub arch: String,
    /// The Rust target triple berth is built for on this board.
    pub target: String,
    /// `v1`, `v2` or `hybrid`: what the board's usual (Yocto) kernel and init set up.
    pub cgroup: String,
    /// The serial console, which containers must not be given by accident.
    pub console: String,
    pub memory: Memory,
    pub storage: Storage,
    /// Device names for `--device NAME`: a node or directory under /dev, or `usb:VID:PID[:SERIAL]`.
    pub devices: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// RAM of the smallest variant the profile covers (`1G`).
    pub total: String,
    /// What containers together may use; the rest is for the kernel, the agent and the system.
    pub containers: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// berth's root (images, containers).
    pub root: String,
    /// Persistent application data (volumes), if the image has a data partition.
    pub data: Option<String>,
}

/// `512M`, `2G`, `1536k`, plain bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        (_, c) if c.is_ascii_digit() => (s, 1),
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

const ARCHES: &[(&str, &[&str])] = &[
    ("arm64", &["aarch64-unknown-linux-musl", "aarch64-unknown-linux-gnu"]),
    (
        "armhf",
        &["armv7-unknown-linux-musleabihf", "armv7-unknown-linux-gnueabihf", "arm-unknown-linux-musleabihf", "arm-unknown-linux-gnueabihf"],
    ),
    ("amd64", &["x86_64-unknown-linux-musl", "x86_64-unknown-linux-gnu"]),
];

/// A device path a profile may name: absolute, clean, under /dev.
fn dev_path_ok(p: &str) -> bool {
    p.starts_with("/dev/") && spec::clean(p) == p && p.len() > 5
}

impl Board {
    /// Reads and validates a profile; errors name the file.
    pub fn load(path: &Path) -> Result<Board> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("read board profile {}", path.display()), e))?;
        Board::parse(&text).map_err(|e| Error::new(e.kind(), format!("{}: {}", path.display(), e.message())))
    }

    pub fn parse(text: &str) -> Result<Board> {
        let b = Board::read(text).map_err(|e| Error::invalid(e.to_string()))?;
        b.validate()?;
        Ok(b)
    }

    /// The profile's keys, each of the kind it must be; unknown keys are errors.
    fn read(text: &str) -> std::result::Result<Board, toml::Error> {
        let mut doc = toml::parse(text)?;
        let mut mem = doc.table("memory")?;
        let memory = Memory { total: mem.required("total")?, containers: mem.required("containers")? };
        mem.finish()?;
        let mut st = doc.table("storage")?;
        let storage = Storage { root: st.required("root")?, data: st.string("data")? };
        st.finish()?;
        let b = Board {
            name: doc.required("name")?,
            description: doc.required("description")?,
            machine: doc.string("machine")?,
            arch: doc.required("arch")?,
            target: doc.required("target")?,
            cgroup: doc.required("cgroup")?,
            console: doc.required("console")?,
            memory,
            storage,
            devices: doc.table("devices")?.string_map()?,
        };
        doc.finish()?;
        Ok(b)
    }

    /// Every rule a profile must keep; all problems are reported together.
    pub fn validate(&self) -> Result<()> {
        let mut errs: Vec<String> = Vec::new();
        if !spec::valid_name(&self.name) {
            errs.push(format!("name {:?}: letters, digits, '-', '_', '.' only", self.name));
        }
        match ARCHES.iter().find(|(a, _)| *a == self.arch) {
            None => errs.push(format!("arch {:?}: one of arm64, armhf, amd64", self.arch)),
            Some((_, triples)) if !triples.contains(&self.target.as_str()) => {
                errs.push(format!("target {:?} does not match arch {} (one of {})", self.target, self.arch, triples.join(", ")))
            }
            Some(_) => {}
        }
        if !matches!(self.cgroup.as_str(), "v1" | "v2" | "hybrid") {
            errs.push(format!("cgroup {:?}: v1, v2 or hybrid", self.cgroup));
        }
        if !dev_path_ok(&self.console) {
            errs.push(format!("console {:?}: must be a device under /dev", self.console));
        }
        match (parse_size(&self.memory.total), parse_size(&self.memory.containers)) {
            (None, _) => errs.push(format!("memory.total {:?}: a size such as 1G or 512M", self.memory.total)),
            (_, None) => errs.push(format!("memory.containers {:?}: a size such as 1G or 512M", self.memory.containers)),
            (Some(t), Some(c)) if c == 0 || c >= t => errs.push(format!(
                "memory.containers ({}) must be above 0 and below memory.total ({})",
                self.memory.containers, self.memory.total
            )),
            _ => {}
        }
        for (k, p) in [("storage.root", Some(&self.storage.root)), ("storage.data", self.storage.data.as_ref())] {
            if let Some(p) = p {
                if !p.starts_with('/') || spec::clean(p) != *p || p == "/" {
                    errs.push(format!("{k} {p:?}: an absolute, clean path other than /"));
                }
            }
        }
        for (name, target) in &self.devices {
            if !spec::valid_name(name) {
                errs.push(format!("devices.{name}: names are letters, digits, '-', '_', '.'"));
            }
            if target.starts_with("usb:") {
                if let Err(e) = spec::parse(target) {
                    errs.push(format!("devices.{name} = {target:?}: {e}"));
                }
            } else if !dev_path_ok(target) {
                errs.push(format!("devices.{name} = {target:?}: device paths must be under /dev (absolute, no '..')"));
            }
            if *target == self.console {
                errs.push(format!("devices.{name} = {target:?}: that is the console UART"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(errs.join("; ")))
        }
    }

    /// What `--device NAME` means on this board.
    pub fn device(&self, name: &str) -> Option<&str> {
        self.devices.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "testboard"
description = "a test board"
arch = "arm64"
target = "aarch64-unknown-linux-musl"
cgroup = "v2"
console = "/dev/ttyS0"

[memory]
total = "1G"
containers = "512M"

[storage]
root = "/var/lib/berth"

[devices]
i2c-1 = "/dev/i2c-1"
usb-bus = "/dev/bus/usb"
ftdi = "usb:0403:6001"
"#;

    #[test]
    fn loads_and_names_devices() {
        let b = Board::parse(GOOD).unwrap();
        assert_eq!(b.device("i2c-1"), Some("/dev/i2c-1"));
        assert_eq!(b.device("nope"), None);
        assert_eq!(parse_size("1536k"), Some(1536 * 1024));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn refuses_unknown_keys_and_paths_outside_dev() {
        let e = Board::parse(&format!("bogus = 1\n{GOOD}")).unwrap_err();
        assert!(e.message().contains("line 1: unknown key `bogus`"), "{e}");
        let e = Board::parse(&GOOD.replace("containers = \"512M\"", "containers = \"512M\"\nswap = \"1G\"")).unwrap_err();
        assert!(e.message().contains("unknown key `swap` in [memory]"), "{e}");
        for (from, to, want) in [
            ("\"/dev/i2c-1\"", "\"/etc/passwd\"", "devices.i2c-1 = \"/etc/passwd\": device paths must be under /dev"),
            ("\"/dev/i2c-1\"", "\"/dev/../etc/shadow\"", "device paths must be under /dev"),
            ("\"usb:0403:6001\"", "\"usb:xyz\"", "devices.ftdi"),
            ("arch = \"arm64\"", "arch = \"armhf\"", "does not match arch armhf"),
            ("cgroup = \"v2\"", "cgroup = \"v3\"", "cgroup \"v3\""),
            ("containers = \"512M\"", "containers = \"2G\"", "below memory.total"),
            ("console = \"/dev/ttyS0\"", "console = \"ttyS0\"", "console"),
            ("root = \"/var/lib/berth\"", "root = \"var\"", "storage.root"),
        ] {
            let e = Board::parse(&GOOD.replace(from, to)).unwrap_err();
            assert!(e.message().contains(want), "{to}: {e}");
        }
        assert!(Board::parse("name = 1").is_err());
    }
}
