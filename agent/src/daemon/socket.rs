//! The agent's local socket: bound with its group and mode, and one task per connection reading
//! frames (and the descriptors a foreground `run` passes) and answering each request.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::UnixStream;

use berth_proto::error::Kind;
use berth_proto::socket::{self as proto, Request, Response};
use berth_runtime::{Error, Result};

use super::{events, fdpass, handlers, Shared, Updates};

fn group_id(name: &str) -> Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let text = fs::read_to_string("/etc/group").unwrap_or_default();
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| f.get(2).and_then(|g| g.parse().ok()))
        .ok_or_else(|| Error::not_found(format!("group {name} not found")))
}

pub(super) fn bind(socket: &Path, group: Option<&str>) -> Result<std::os::unix::net::UnixListener> {
    if let Some(dir) = socket.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io_at("create", dir, e))?;
    }
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(Error::conflict(format!("socket {} is in use by another agent", socket.display())));
        }
        let _ = fs::remove_file(socket);
    }
    let l = std::os::unix::net::UnixListener::bind(socket).map_err(|e| Error::io_at("listen on", socket, e))?;
    fs::set_permissions(socket, fs::Permissions::from_mode(0o660)).map_err(|e| Error::io_at("chmod", socket, e))?;
    if let Some(g) = group {
        std::os::unix::fs::chown(socket, Some(0), Some(group_id(g)?)).map_err(|e| Error::io_at("chown", socket, e))?;
    }
    l.set_nonblocking(true).map_err(|e| Error::io("socket", e))?;
    Ok(l)
}

pub(super) async fn connection(stream: UnixStream, sup: Shared, upd: Updates) {
    let mut buf = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut stream = stream;
    loop {
        let frame = match proto::take_frame(&mut buf) {
            Ok(Some(f)) => f,
            Ok(None) => {
                let raw = stream.as_raw_fd();
                let got = stream.async_io(Interest::READABLE, || fdpass::recv_with_fds(raw, &mut chunk)).await;
                match got {
                    Ok((0, _)) | Err(_) => return,
                    Ok((n, f)) => {
                        buf.extend_from_slice(&chunk[..n]);
                        fds.extend(f);
                        continue;
                    }
                }
            }
            Err(_) => return,
        };
        let resp = match proto::decode::<Request>(&frame) {
            Ok(Request::Events { since, until }) => {
                events::stream(&mut stream, &sup, since, until).await;
                return;
            }
            Ok(req) => {
                crate::debug!("request {req:?}");
                handlers::handle(req, &sup, &upd, &mut fds).await
            }
            Err(e) => Response::Error { kind: Kind::Usage, msg: e.to_string() },
        };
        let Ok(out) = proto::encode(&resp) else { return };
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}
