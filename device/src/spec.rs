//! `--device` as Docker parses it (`HOST[:CONTAINER][:PERMS]`, PERMS a subset of `rwm`), plus the
//! two forms berth adds for boards: a name from the board profile (`i2c-1[:CONTAINER][:PERMS]`) and
//! a USB device by id (`usb:VID:PID[:SERIAL][:PERMS]`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rule::Access;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// A host path: a device node, or a directory of them.
    Path(String),
    /// A name in the board profile's `[devices]`.
    Name(String),
    /// A USB device by vendor and product id (4 hex digits each) and optional serial.
    Usb { vendor: u16, product: u16, serial: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceArg {
    pub source: Source,
    /// Where the node goes in the container; the host path when not given.
    pub container: Option<String>,
    pub access: Access,
}

/// Docker's `path.Clean` for the paths it prints back and uses.
pub fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let body = out.join("/");
    match (abs, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

fn usb_id(s: &str, what: &str, arg: &str) -> Result<u16> {
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid(format!("bad USB {what} id {s:?} in {arg:?}: expected 4 hex digits (usb:VID:PID[:SERIAL])")));
    }
    u16::from_str_radix(s, 16).map_err(|_| Error::invalid(format!("bad USB {what} id {s:?} in {arg:?}")))
}

/// Parses one `--device` value. Errors are Docker's words where Docker has them (`bad format for
/// path`, `bad mode specified`, `is not an absolute path`).
pub fn parse(arg: &str) -> Result<DeviceArg> {
    if let Some(rest) = arg.strip_prefix("usb:") {
        let parts: Vec<&str> = rest.split(':').collect();
        let (ids, tail) = parts.split_at(parts.len().min(2));
        let [vendor, product] = ids else {
            return Err(Error::invalid(format!("bad format for USB device {arg:?}: expected usb:VID:PID[:SERIAL][:PERMS]")));
        };
        let (vendor, product) = (usb_id(vendor, "vendor", arg)?, usb_id(product, "product", arg)?);
        let (serial, access) = match tail {
            [] => (None, Access::ALL),
            [one] => match Access::parse(one) {
                Some(a) => (None, a),
                None if !one.is_empty() => (Some(one.to_string()), Access::ALL),
                None => return Err(Error::invalid(format!("bad format for USB device {arg:?}: empty serial"))),
            },
            [serial, mode] if !serial.is_empty() => {
                (Some(serial.to_string()), Access::parse(mode).ok_or_else(|| Error::invalid(format!("bad mode specified: {mode}")))?)
            }
            _ => return Err(Error::invalid(format!("bad format for USB device {arg:?}: expected usb:VID:PID[:SERIAL][:PERMS]"))),
        };
        return Ok(DeviceArg { source: Source::Usb { vendor, product, serial }, container: None, access });
    }
    let bad = || Error::invalid(format!("bad format for path: {arg}"));
    if arg.matches(':').count() > 2 {
        return Err(bad());
    }
    let split: Vec<&str> = arg.splitn(3, ':').collect();
    if split[0].is_empty() {
        return Err(bad());
    }
    let (host, container, access) = match split.as_slice() {
        [h] => (*h, None, Access::ALL),
        // HOST:PERMS when the second part is a valid mode, else HOST:CONTAINER (Docker's rule).
        [h, second] => match Access::parse(second) {
            Some(a) => (*h, None, a),
            None => (*h, Some(*second), Access::ALL),
        },
        [h, c, mode] => (*h, Some(*c), Access::parse(mode).ok_or_else(|| Error::invalid(format!("bad mode specified: {mode}")))?),
        _ => return Err(bad()),
    };
    let source = if host.starts_with('/') {
        Source::Path(clean(host))
    } else if valid_name(host) {
        Source::Name(host.to_string())
    } else {
        return Err(Error::invalid(format!("{host} is not an absolute path (nor a device name of the board profile)")));
    };
    let container = match container {
        Some(c) if !c.starts_with('/') => return Err(Error::invalid(format!("{c} is not an absolute path"))),
        Some(c) => Some(clean(c)),
        None => None,
    };
    Ok(DeviceArg { source, container, access })
}

/// A board profile's device name: `i2c-1`, `spidev0.0`, `uart_gps`.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DeviceArg {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_forms() {
        let a = p("/dev/ttyUSB0");
        assert_eq!(a, DeviceArg { source: Source::Path("/dev/ttyUSB0".into()), container: None, access: Access::ALL });
        let a = p("/dev/ttyUSB0:/dev/serial");
        assert_eq!(a.container.as_deref(), Some("/dev/serial"));
        assert_eq!(a.access, Access::ALL);
        let a = p("/dev/ttyUSB0:r");
        assert_eq!((a.container, a.access), (None, Access(Access::READ)));
        let a = p("/dev/sda:/dev/xvdc:rm");
        assert_eq!(a.container.as_deref(), Some("/dev/xvdc"));
        assert_eq!(a.access.to_string(), "rm");
        // A second part that is not a mode is a container path, and must then be absolute.
        assert_eq!(parse("/dev/a:rx").unwrap_err().message(), "rx is not an absolute path");
        assert_eq!(p("/dev/../dev/./null").source, Source::Path("/dev/null".into()));
    }

    #[test]
    fn docker_errors() {
        assert_eq!(parse("").unwrap_err().message(), "bad format for path: ");
        assert_eq!(parse(":/dev/x").unwrap_err().message(), "bad format for path: :/dev/x");
        assert_eq!(parse("/a:/b:rw:x").unwrap_err().message(), "bad format for path: /a:/b:rw:x");
        assert_eq!(parse("/dev/a:/dev/b:rwx").unwrap_err().message(), "bad mode specified: rwx");
        assert_eq!(parse("/dev/a:/dev/b:rr").unwrap_err().message(), "bad mode specified: rr");
        assert_eq!(parse("/dev/a:/dev/b:").unwrap_err().message(), "bad mode specified: ");
        assert!(parse("../dev/a").is_err());
    }

    #[test]
    fn board_names_and_usb() {
        assert_eq!(p("i2c-1").source, Source::Name("i2c-1".into()));
        let a = p("spidev0.0:/dev/spi:rw");
        assert_eq!(a.source, Source::Name("spidev0.0".into()));
        assert_eq!(a.container.as_deref(), Some("/dev/spi"));
        let u = p("usb:0403:6001");
        assert_eq!(u.source, Source::Usb { vendor: 0x0403, product: 0x6001, serial: None });
        let u = p("usb:0403:6001:A50285BI");
        assert_eq!(u.source, Source::Usb { vendor: 0x0403, product: 0x6001, serial: Some("A50285BI".into()) });
        assert_eq!(u.access, Access::ALL);
        let u = p("usb:0403:6001:rw");
        assert_eq!((u.source.clone(), u.access.to_string()), (Source::Usb { vendor: 0x0403, product: 0x6001, serial: None }, "rw".into()));
        let u = p("usb:1a86:7523:XYZ:r");
        assert_eq!(u.access.to_string(), "r");
        for bad in ["usb:", "usb:0403", "usb:403:6001", "usb:0403:60011", "usb:04g3:6001", "usb:0403:6001:S:rwx", "usb:0403:6001::r"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean("/dev//bus/./usb/"), "/dev/bus/usb");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean("/"), "/");
    }
}
