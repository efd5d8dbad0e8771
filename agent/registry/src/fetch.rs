//! A plain HTTP(S) GET for `ADD URL` in a Dockerfile: the registry client's transport (proxy,
//! `certs.d`, the clock floor, insecure hosts), redirects followed, the body streamed out.

use std::io::{self, Write};

use berth_runtime::error::{Error, Result};

use crate::client::Options;
use crate::http::{Body, Request, Transport, Url};
use crate::tls;

/// Redirects followed before giving up (curl's and Go's default is 10 too).
const MAX_REDIRECTS: usize = 10;

/// Downloads `url` into `out`; returns the byte count. A status other than 200 is an error that
/// names it, as `docker build` reports a failed `ADD`.
pub fn download(url: &str, opts: &Options, out: &mut dyn Write) -> Result<u64> {
    let o = opts.clone();
    let transport = Transport {
        tls: Box::new(move |u: &Url| tls::config(&o.cert_dirs, &u.host, u.port, o.floor, o.is_insecure(&u.host, u.port))),
        proxy: opts.proxy.clone(),
        connect_timeout: opts.connect_timeout,
        io_timeout: opts.io_timeout,
    };
    let mut at = Url::parse(url)?;
    for _ in 0..=MAX_REDIRECTS {
        let mut req = Request { method: "GET", url: at.clone(), headers: Vec::new(), body: Body::Empty };
        let mut resp = transport.send(&mut req).map_err(|e| e.context(format!("GET {url}")))?;
        match resp.status {
            200 => return io::copy(&mut resp, out).map_err(|e| Error::io(format!("download {url}"), e)),
            301 | 302 | 303 | 307 | 308 => {
                let loc = resp.header("location").ok_or_else(|| Error::invalid(format!("GET {url}: redirect without a Location")))?;
                at = at.join(loc)?;
            }
            s => return Err(Error::invalid(format!("GET {url}: HTTP {s}"))),
        }
    }
    Err(Error::invalid(format!("GET {url}: more than {MAX_REDIRECTS} redirects")))
}
