//! The agent's side of container networks: `network create/rm/connect/disconnect/prune`
//! requests, and the settings that decide a container's default network. The records, bridges
//! and rules are `berth_runtime::net`'s; the supervisor connects containers as they start and
//! disconnects them as they end.

use std::collections::BTreeMap;

use berth_proto::error::Kind;
use berth_proto::socket::{NetworkRequest, Response};
use berth_runtime::net::network::{ConnectRequest, CreateRequest};
use berth_runtime::Error;

use super::Shared;

/// A network command's failure: a missing network or container is 1 as for Docker's daemon
/// errors on `network` commands; so is anything else (Docker exits 1 for every `network` error).
fn failed(e: &Error) -> Response {
    Response::Error { kind: Kind::Failed, msg: e.to_string() }
}

fn pairs(items: &[String], what: &str) -> Result<BTreeMap<String, String>, Error> {
    let mut m = BTreeMap::new();
    for i in items {
        let (k, v) = i.split_once('=').unwrap_or((i.as_str(), ""));
        if k.is_empty() {
            return Err(Error::invalid(format!("invalid {what} {i:?}: want KEY=VALUE")));
        }
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

pub(super) fn handle(sup: &Shared, req: NetworkRequest) -> Response {
    match req {
        NetworkRequest::Create { name, driver, subnet, gateway, ip_range, internal, labels, options } => {
            let res = (|| {
                let req = CreateRequest {
                    name,
                    driver,
                    subnet,
                    gateway,
                    ip_range,
                    internal,
                    labels: pairs(&labels, "label")?,
                    options: pairs(&options, "option")?,
                };
                sup.borrow_mut().network_create(&req)
            })();
            match res {
                Ok(id) => Response::Text(id),
                Err(e) => failed(&e),
            }
        }
        NetworkRequest::Remove { name, force } => match sup.borrow_mut().network_remove(&name, force) {
            Ok(()) => Response::Done,
            Err(e) => failed(&e),
        },
        NetworkRequest::Connect { network, container, aliases, ip } => {
            let res = (|| {
                let ip = ip.map(|i| i.parse().map_err(|_| Error::invalid(format!("invalid IP address: {i}")))).transpose()?;
                let id = sup.borrow().find(&container)?;
                sup.borrow_mut().network_connect(&network, &id, ConnectRequest { aliases, ip, ..Default::default() })
            })();
            match res {
                Ok(()) => Response::Done,
                Err(e) => failed(&e),
            }
        }
        NetworkRequest::Disconnect { network, container, force } => {
            // The lookup's borrow ends before the change borrows the supervisor again.
            let id = sup.borrow().find(&container);
            let res = id.and_then(|id| sup.borrow_mut().network_disconnect(&network, &id, force));
            match res {
                Ok(()) => Response::Done,
                Err(e) => failed(&e),
            }
        }
        NetworkRequest::Prune => match sup.borrow_mut().network_prune() {
            Ok(names) => Response::Text(names.join("\n")),
            Err(e) => failed(&e),
        },
    }
}
