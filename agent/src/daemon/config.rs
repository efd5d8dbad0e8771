//! `/etc/berth/berth.toml`: the agent's MQTT and update settings. Flags override the file.
//! Unknown keys are errors, so a misspelt setting is found at start, not in the field.

use std::path::{Path, PathBuf};

use berth_device::toml;
use berth_runtime::{Error, IoContext, Result};

pub const DEFAULT_PATH: &str = "/etc/berth/berth.toml";

#[derive(Debug, Default, Clone)]
pub struct Config {
    pub mqtt: Mqtt,
    pub update: Update,
    pub registry: RegistryConf,
    pub network: NetworkSection,
    pub security: Security,
    pub storage: Storage,
}

/// `[storage]`: what keeps a full disk from stopping the agent (docs/storage.md).
#[derive(Debug, Default, Clone)]
pub struct Storage {
    /// Space held back for berth's own records (journal, container records, image database):
    /// a size (`16m`, the default), a percentage of the root's disk (`2%`) or `0` for none.
    pub reserve: Option<String>,
    /// Free space (percentage of the root's disk, `10%`) below which the agent removes images
    /// no container and no rollback target uses, oldest first. Default: off.
    pub gc_threshold: Option<String>,
}

/// `[security]`: user namespaces.
#[derive(Debug, Default, Clone)]
pub struct Security {
    /// `default` (ranges of user `berth`, else berth's own) or a user name (its ranges, which
    /// must exist): containers then run with `--userns=auto` unless they ask for `host`.
    pub userns_remap: Option<String>,
    /// Subordinate-ID files (default /etc/subuid and /etc/subgid).
    pub subuid_file: Option<PathBuf>,
    pub subgid_file: Option<PathBuf>,
}

/// `[network]`: containers' default network and the default bridge.
#[derive(Debug, Default, Clone)]
pub struct NetworkSection {
    /// `bridge` (the default, as Docker's) or `host` (boards without bridge/nf_tables support).
    pub default: Option<String>,
    /// The default bridge's subnet (default 172.17.0.0/16).
    pub subnet: Option<String>,
}

/// `[registry]`: as Docker's daemon.json has them (`berth pull`/`push` read it).
#[derive(Debug, Default, Clone)]
pub struct RegistryConf {
    /// Docker Hub mirrors, tried in order before Docker Hub (`https://mirror.example`).
    pub mirrors: Vec<String>,
    /// `host[:port]` or CIDR entries that may use plain HTTP or any certificate.
    pub insecure_registries: Vec<String>,
    /// A `certs.d` directory (`DIR/HOST[:PORT]/ca.crt`) searched before /etc/berth/certs.d and
    /// /etc/docker/certs.d.
    pub certs_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Clone)]
pub struct Mqtt {
    /// Broker URLs, tried in order (failover) and round again.
    pub brokers: Vec<String>,
    pub device_id: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Seconds.
    pub keep_alive: Option<u64>,
    /// Default `berth/v1/<device-id>/`; `{device}` is replaced by the device id.
    pub topic_root: Option<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Update {
    /// Public keys (SPKI PEM files) whose signatures are trusted.
    pub trusted_keys: Vec<PathBuf>,
    /// Largest tarball accepted, e.g. "512m" (default: whatever fits on the disk).
    pub max_size: Option<String>,
}

impl Config {
    pub fn parse(text: &str, origin: &str) -> Result<Config> {
        Config::read(text).map_err(|e| Error::invalid(format!("{origin}: {e}")))
    }

    /// Each section's keys, of the kind each must be; unknown keys and sections are errors.
    fn read(text: &str) -> std::result::Result<Config, toml::Error> {
        let mut doc = toml::parse(text)?;
        let mut t = doc.table("mqtt")?;
        let mqtt = Mqtt {
            brokers: t.strings("brokers")?,
            device_id: t.string("device_id")?,
            ca: t.path("ca")?,
            cert: t.path("cert")?,
            key: t.path("key")?,
            username: t.string("username")?,
            password: t.string("password")?,
            password_file: t.path("password_file")?,
            keep_alive: t.uint("keep_alive")?,
            topic_root: t.string("topic_root")?,
            groups: t.strings("groups")?,
        };
        t.finish()?;
        let mut t = doc.table("update")?;
        let update = Update { trusted_keys: t.paths("trusted_keys")?, max_size: t.string("max_size")? };
        t.finish()?;
        let mut t = doc.table("registry")?;
        let registry = RegistryConf {
            mirrors: t.strings("mirrors")?,
            insecure_registries: t.strings("insecure_registries")?,
            certs_dir: t.path("certs_dir")?,
        };
        t.finish()?;
        let mut t = doc.table("network")?;
        let network = NetworkSection { default: t.string("default")?, subnet: t.string("subnet")? };
        t.finish()?;
        let mut t = doc.table("security")?;
        let security =
            Security { userns_remap: t.string("userns_remap")?, subuid_file: t.path("subuid_file")?, subgid_file: t.path("subgid_file")? };
        t.finish()?;
        let mut t = doc.table("storage")?;
        let storage = Storage { reserve: t.string("reserve")?, gc_threshold: t.string("gc_threshold")? };
        t.finish()?;
        doc.finish()?;
        Ok(Config { mqtt, update, registry, network, security, storage })
    }

    /// The file at `path`; with `required` false a missing file is an empty configuration.
    pub fn load(path: &Path, required: bool) -> Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(t) => Config::parse(&t, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Config::default()),
            Err(e) => Err(e).ctx_path("read", path),
        }
    }
}

/// The machine id (systemd's /etc/machine-id, else D-Bus's): the default device id.
pub fn machine_id() -> Result<String> {
    for p in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
        if let Ok(s) = std::fs::read_to_string(p) {
            let s = s.trim();
            if !s.is_empty() {
                return Ok(s.to_string());
            }
        }
    }
    Err(Error::not_found("no device id: /etc/machine-id is missing; set [mqtt] device_id or --device-id"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::names::valid_device_id;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let c = Config::parse(
            "[mqtt]\nbrokers = [\"mqtts://a:8883\", \"mqtt://b\"]\ndevice_id = \"dev1\"\ngroups = [\"lab\"]\nkeep_alive = 20\n\
             [update]\ntrusted_keys = [\"/etc/berth/k.pub\"]\nmax_size = \"64m\"\n\
             [storage]\nreserve = \"8m\"\ngc_threshold = \"10%\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.mqtt.brokers.len(), 2);
        assert_eq!(c.mqtt.device_id.as_deref(), Some("dev1"));
        assert_eq!(c.update.trusted_keys, vec![PathBuf::from("/etc/berth/k.pub")]);
        assert_eq!((c.storage.reserve.as_deref(), c.storage.gc_threshold.as_deref()), (Some("8m"), Some("10%")));
        let e = Config::parse("[mqtt]\nbroker = \"x\"\n", "f.toml").unwrap_err().to_string();
        assert_eq!(e, "f.toml: line 2: unknown key `broker` in [mqtt]");
        let e = Config::parse("[nope]\n", "t").unwrap_err().to_string();
        assert_eq!(e, "t: line 1: unknown key `nope`");
        let e = Config::parse("[mqtt]\nkeep_alive = \"20\"\n", "t").unwrap_err().to_string();
        assert_eq!(e, "t: line 2: mqtt.keep_alive: expected an integer, found a string");
        assert!(Config::load(Path::new("/nonexistent/berth.toml"), false).is_ok());
        assert!(Config::load(Path::new("/nonexistent/berth.toml"), true).is_err());
        // The file the Yocto layer installs stays readable.
        let shipped = include_str!("../../../yocto-layer/recipes-containers/berth/files/berth.toml");
        if let Err(e) = Config::parse(shipped, "yocto berth.toml") {
            panic!("{e}");
        }
        // ... and every key it documents in a comment is one the agent reads.
        let keys: Vec<&str> = shipped
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(r) if r.split_once(" = ").is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')) => r,
                _ => l,
            })
            .collect();
        assert!(keys.iter().filter(|l| l.contains(" = ")).count() >= 12, "{keys:?}");
        if let Err(e) = Config::parse(&keys.join("\n"), "yocto berth.toml, uncommented") {
            panic!("{e}");
        }
        assert!(valid_device_id("dev-1.a_b") && !valid_device_id("a/b") && !valid_device_id("a+"));
    }
}
