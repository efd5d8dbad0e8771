//! USB devices by vendor:product[:serial], found in sysfs (what udev itself reads): the device's
//! `/dev/bus/usb/BBB/DDD` node and the tty nodes its interfaces own (`ttyUSB*`, `ttyACM*`). The
//! sysfs root is a parameter so tests can use a fabricated tree.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One matching USB device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbDevice {
    /// `/sys/bus/usb/devices/<name>` (e.g. `1-1.2`).
    pub sysfs: PathBuf,
    pub vendor: u16,
    pub product: u16,
    pub serial: Option<String>,
    /// Host device nodes, `/dev/bus/usb/001/004` first.
    pub nodes: Vec<String>,
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn hex(p: &Path) -> Option<u16> {
    u16::from_str_radix(&read_trim(p)?, 16).ok()
}

/// The device's nodes: bus node from busnum/devnum, then tty nodes of its interfaces.
fn nodes_of(dev: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(bus), Some(num)) = (read_trim(&dev.join("busnum")), read_trim(&dev.join("devnum"))) {
        if let (Ok(b), Ok(d)) = (bus.parse::<u32>(), num.parse::<u32>()) {
            out.push(format!("/dev/bus/usb/{b:03}/{d:03}"));
        }
    }
    let mut ttys = Vec::new();
    let Ok(rd) = fs::read_dir(dev) else { return out };
    for intf in rd.flatten() {
        // Interfaces are `<dev>:<config>.<n>` directories.
        if !intf.file_name().to_string_lossy().contains(':') {
            continue;
        }
        let Ok(children) = fs::read_dir(intf.path()) else { continue };
        for c in children.flatten() {
            let name = c.file_name().to_string_lossy().into_owned();
            if name.starts_with("ttyUSB") {
                ttys.push(format!("/dev/{name}"));
            } else if name == "tty" {
                // cdc_acm: <intf>/tty/ttyACM0
                if let Ok(t) = fs::read_dir(c.path()) {
                    ttys.extend(t.flatten().map(|e| format!("/dev/{}", e.file_name().to_string_lossy())));
                }
            }
        }
    }
    ttys.sort();
    out.extend(ttys);
    out
}

/// Every USB device under `<sysfs>/bus/usb/devices` with this vendor and product (and serial, if
/// given).
pub fn find(sysfs: &Path, vendor: u16, product: u16, serial: Option<&str>) -> Result<Vec<UsbDevice>> {
    let dir = sysfs.join("bus/usb/devices");
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("read {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        // Symlinks into /sys/devices; interfaces have no idVendor.
        let (Some(v), Some(pr)) = (hex(&p.join("idVendor")), hex(&p.join("idProduct"))) else { continue };
        if v != vendor || pr != product {
            continue;
        }
        let s = read_trim(&p.join("serial"));
        if serial.is_some_and(|want| s.as_deref() != Some(want)) {
            continue;
        }
        let sysfs = fs::canonicalize(&p).unwrap_or(p.clone());
        out.push(UsbDevice { nodes: nodes_of(&p), sysfs, vendor: v, product: pr, serial: s });
    }
    out.sort_by(|a, b| a.sysfs.cmp(&b.sysfs));
    Ok(out)
}

/// The host nodes of the one device matching `usb:VID:PID[:SERIAL]`; an error when none matches,
/// or when several do and no serial tells them apart.
pub fn resolve(sysfs: &Path, vendor: u16, product: u16, serial: Option<&str>) -> Result<UsbDevice> {
    let id = match serial {
        Some(s) => format!("{vendor:04x}:{product:04x}:{s}"),
        None => format!("{vendor:04x}:{product:04x}"),
    };
    let mut found = find(sysfs, vendor, product, serial)?;
    match found.len() {
        0 => Err(Error::not_found(format!("no USB device matches usb:{id} (is it plugged in? `lsusb` lists vendor:product ids)"))),
        1 => Ok(found.remove(0)),
        n => {
            let serials: Vec<String> = found.iter().map(|d| d.serial.clone().unwrap_or_else(|| "(none)".into())).collect();
            Err(Error::invalid(format!("{n} USB devices match usb:{id}: add the serial to pick one (serials: {})", serials.join(", "))))
        }
    }
}

/// For a uevent's DEVPATH (`/devices/.../1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0`): vendor, product and
/// serial of the USB device it belongs to, if any (the nearest ancestor with `idVendor`).
pub fn owner_of(sysfs: &Path, devpath: &str) -> Option<(u16, u16, Option<String>)> {
    let mut p = sysfs.join(devpath.trim_start_matches('/'));
    loop {
        if let (Some(v), Some(pr)) = (hex(&p.join("idVendor")), hex(&p.join("idProduct"))) {
            return Some((v, pr, read_trim(&p.join("serial"))));
        }
        if !p.pop() || p == sysfs {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sysfs tree shaped like the kernel's: devices under /sys/devices, links in
    /// /sys/bus/usb/devices, an FTDI adapter (ttyUSB0) and a CDC-ACM board (ttyACM0).
    fn fake_sysfs() -> PathBuf {
        let root = std::env::temp_dir().join(format!("berth-usb-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = fs::remove_dir_all(&root);
        let devs = root.join("devices/pci0000:00/0000:00:14.0/usb1");
        let mk = |dir: &Path, files: &[(&str, &str)]| {
            fs::create_dir_all(dir).unwrap();
            for (f, v) in files {
                fs::write(dir.join(f), format!("{v}\n")).unwrap();
            }
        };
        mk(&devs.join("1-1"), &[("idVendor", "0403"), ("idProduct", "6001"), ("serial", "A50285BI"), ("busnum", "1"), ("devnum", "4")]);
        mk(&devs.join("1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0"), &[("dev", "188:0")]);
        mk(&devs.join("1-2"), &[("idVendor", "2341"), ("idProduct", "0043"), ("busnum", "1"), ("devnum", "12")]);
        mk(&devs.join("1-2/1-2:1.0/tty/ttyACM0"), &[("dev", "166:0")]);
        mk(&devs.join("1-3"), &[("idVendor", "0403"), ("idProduct", "6001"), ("serial", "FT99"), ("busnum", "1"), ("devnum", "7")]);
        let links = root.join("bus/usb/devices");
        fs::create_dir_all(&links).unwrap();
        for d in ["1-1", "1-1:1.0", "1-2", "1-2:1.0", "1-3"] {
            let target = if d.contains(':') { devs.join(d.split(':').next().unwrap()).join(d) } else { devs.join(d) };
            std::os::unix::fs::symlink(target, links.join(d)).unwrap();
        }
        root
    }

    #[test]
    fn finds_by_id_and_serial() {
        let sys = fake_sysfs();
        let d = resolve(&sys, 0x0403, 0x6001, Some("A50285BI")).unwrap();
        assert_eq!(d.nodes, vec!["/dev/bus/usb/001/004".to_string(), "/dev/ttyUSB0".to_string()]);
        let acm = resolve(&sys, 0x2341, 0x0043, None).unwrap();
        assert_eq!(acm.nodes, vec!["/dev/bus/usb/001/012".to_string(), "/dev/ttyACM0".to_string()]);
        assert_eq!(acm.serial, None);
        // Two FTDI adapters: ambiguous without a serial.
        let e = resolve(&sys, 0x0403, 0x6001, None).unwrap_err();
        assert!(e.message().contains("2 USB devices match usb:0403:6001"), "{e}");
        let e = resolve(&sys, 0x1234, 0x5678, None).unwrap_err();
        assert_eq!(e.kind(), crate::Kind::NotFound);
        assert!(e.message().starts_with("no USB device matches usb:1234:5678"), "{e}");
        assert!(resolve(&sys, 0x0403, 0x6001, Some("nope")).is_err());
        let owner = owner_of(&sys, "/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0").unwrap();
        assert_eq!(owner, (0x0403, 0x6001, Some("A50285BI".into())));
        assert!(owner_of(&sys, "/devices/virtual/block/loop0").is_none());
        // No USB at all (this build machine): nothing matches, no error.
        assert!(find(Path::new("/nonexistent-sysfs"), 1, 2, None).unwrap().is_empty());
        fs::remove_dir_all(&sys).unwrap();
    }
}
