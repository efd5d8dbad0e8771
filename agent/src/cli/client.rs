//! The CLI's connection to the agent: blocking, one request at a time.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use berth_runtime::Error;

use super::{CliError, Ctx};
use berth_proto::args::Matches;
use berth_proto::error::exit_code;
use berth_proto::socket::{self as proto, Request, Response};

pub struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to the agent named by `-H`, or explains how to start one.
    pub fn connect(ctx: &Ctx) -> Result<Client, CliError> {
        let path = ctx.host.strip_prefix("unix://").unwrap_or(&ctx.host);
        match UnixStream::connect(path) {
            Ok(stream) => Ok(Client { stream, buf: Vec::new() }),
            Err(e) => Err(CliError::Op(Error::new(
                berth_runtime::Kind::Io,
                format!(
                    "Cannot connect to the berth agent at {} ({}). Is the agent running? Start it with 'berth --root {} -H {} agent' (or 'systemctl start berth').",
                    ctx.host,
                    e.kind(),
                    ctx.root.display(),
                    ctx.host
                ),
            ))),
        }
    }

    pub fn call(&mut self, req: &Request) -> Result<Response, CliError> {
        self.call_with_fds(req, &[])
    }

    pub fn call_with_fds(&mut self, req: &Request, fds: &[RawFd]) -> Result<Response, CliError> {
        self.send(req, fds)?;
        self.recv()
    }

    pub fn send(&mut self, req: &Request, fds: &[RawFd]) -> Result<(), CliError> {
        let io = |e: std::io::Error| CliError::Op(Error::io("talk to the berth agent", e));
        let frame = proto::encode(req).map_err(io)?;
        let n = crate::daemon::fdpass::send_with_fds(self.stream.as_raw_fd(), &frame, fds).map_err(io)?;
        self.stream.write_all(&frame[n..]).map_err(io)
    }

    pub fn recv(&mut self) -> Result<Response, CliError> {
        let io = |e: std::io::Error| CliError::Op(Error::io("talk to the berth agent", e));
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(body) = proto::take_frame(&mut self.buf).map_err(io)? {
                return proto::decode(&body).map_err(io);
            }
            let n = self.stream.read(&mut chunk).map_err(io)?;
            if n == 0 {
                return Err(CliError::Op(Error::new(berth_runtime::Kind::Io, "the berth agent closed the connection")));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A response that is not an error, or the error as the CLI reports it (one line, its exit code).
pub fn check(r: Response) -> Result<Response, CliError> {
    match r {
        Response::Error { kind, msg } => {
            eprintln!("Error: {msg}");
            Err(CliError::Exit(exit_code(kind)))
        }
        other => Ok(other),
    }
}

/// Sends one request per named container; errors are reported as they come, and the exit code is
/// 1 if any failed.
pub fn each(ctx: &Ctx, m: &Matches, req: impl Fn(String) -> Request) -> Result<i32, CliError> {
    let mut c = Client::connect(ctx)?;
    let mut code = 0;
    for name in m.args() {
        match c.call(&req(name.clone()))? {
            Response::Error { msg, .. } => {
                eprintln!("Error: {msg}");
                code = 1;
            }
            Response::Exited { code } => println!("{code}"),
            _ => println!("{name}"),
        }
    }
    Ok(code)
}
