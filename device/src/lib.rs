//! Device passthrough for berth containers: Docker's `--device` and `--device-cgroup-rule`, the
//! nodes they give (stat of the host node, or every node under a directory), device cgroup rules
//! (v1 `devices.allow` lines and a v2 `BPF_PROG_TYPE_CGROUP_DEVICE` program generated here), USB
//! matching by vendor:product[:serial] through sysfs, kernel uevents for hotplug, and board profiles.
//!
//! Synchronous and small: `libc` at the syscall edge, no BPF or udev library. The static musl build
//! has no libudev, so hotplug reads the kernel's own uevents (NETLINK_KOBJECT_UEVENT); udev's
//! rules and symlinks are not needed for passing nodes by major:minor.

pub mod board;
pub mod bpf;
pub mod error;
pub mod hotplug;
pub mod node;
pub mod rule;
pub mod spec;
pub mod toml;
pub mod uevent;
pub mod usb;

pub use error::{Error, Kind, Result};
