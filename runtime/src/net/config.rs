//! What a container asked of its networks (`--network` and `network connect`, `--ip`,
//! `--mac-address`, `--network-alias`, `-p`/`-P`, `--dns*`, `--add-host`, `--link`), kept in its
//! own file beside the container's record, `<container dir>/network.json`: the record's format
//! stays as it was (older records still load), and every start connects the container again
//! from it.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::net::ports::PortRequest;

/// One network the container is on, with its per-network options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRef {
    pub name: String,
    pub aliases: Vec<String>,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<[u8; 6]>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerNet {
    /// The first is the container's `eth0` and carries its default route and published ports.
    pub networks: Vec<NetworkRef>,
    pub ports: Vec<PortRequest>,
    /// `-P` (its ports are already in `ports`; kept for inspect's HostConfig).
    pub publish_all: bool,
    /// `-p` as given (for inspect's HostConfig.PortBindings).
    pub publish: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub add_hosts: Vec<String>,
    /// `--link NAME[:ALIAS]` as given.
    pub links: Vec<String>,
}

const FILE: &str = "network.json";

impl ContainerNet {
    /// The container's network options; none for a container made before networks existed.
    pub fn load(dir: &Path) -> Result<ContainerNet> {
        let p = dir.join(FILE);
        match std::fs::read(&p) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| Error::invalid(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ContainerNet::default()),
            Err(e) => Err(Error::io_at("read", &p, e)),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let data = serde_json::to_vec(self).map_err(|e| Error::invalid(format!("encode network options: {e}")))?;
        crate::fsutil::atomic_write(&dir.join(FILE), &data).map_err(|e| e.context("save network options"))
    }

    /// The entry for network `name`, if the container is on it.
    pub fn network(&self, name: &str) -> Option<&NetworkRef> {
        self.networks.iter().find(|n| n.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("berth-netcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(ContainerNet::load(&dir).unwrap(), ContainerNet::default());
        let c = ContainerNet {
            networks: vec![NetworkRef { name: "apps".into(), aliases: vec!["db".into()], ip: Some(Ipv4Addr::new(10, 0, 0, 5)), mac: None }],
            ports: crate::net::ports::parse("8080:80").unwrap(),
            ..Default::default()
        };
        c.save(&dir).unwrap();
        assert_eq!(ContainerNet::load(&dir).unwrap(), c);
        assert_eq!(c.network("apps").unwrap().aliases, vec!["db".to_string()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
