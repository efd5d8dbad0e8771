//! Device cgroup rules: `--device-cgroup-rule 'c 89:* rmw'` as Docker parses it, the v1
//! `devices.allow` line each one is, and the matching the v2 eBPF filter and hotplug need.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which devices a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Type {
    All,
    Char,
    Block,
}

impl Type {
    pub fn letter(self) -> char {
        match self {
            Type::All => 'a',
            Type::Char => 'c',
            Type::Block => 'b',
        }
    }
}

/// Access bits in the kernel's `BPF_DEVCG_ACC_*` encoding, so the eBPF filter can use them as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Access(pub u8);

impl Access {
    pub const MKNOD: u8 = 1;
    pub const READ: u8 = 2;
    pub const WRITE: u8 = 4;
    pub const ALL: Access = Access(7);

    /// `r`, `w`, `m` each at most once, at least one: Docker's `validDeviceMode`.
    pub fn parse(s: &str) -> Option<Access> {
        let mut bits = 0u8;
        if s.is_empty() {
            return None;
        }
        for c in s.chars() {
            let b = match c {
                'r' => Self::READ,
                'w' => Self::WRITE,
                'm' => Self::MKNOD,
                _ => return None,
            };
            if bits & b != 0 {
                return None;
            }
            bits |= b;
        }
        Some(Access(bits))
    }

    pub fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, c) in [(Self::READ, 'r'), (Self::WRITE, 'w'), (Self::MKNOD, 'm')] {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// One allow rule; `None` for a wildcard major or minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    pub kind: Type,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: Access,
}

/// Majors and minors above this cannot be device numbers (12 and 20 bits) and would not fit the
/// eBPF filter's signed 32-bit immediates.
const MAX_NUMBER: u32 = (1 << 20) - 1;

impl Rule {
    /// Everything: what `--privileged` means for devices.
    pub const ALLOW_ALL: Rule = Rule { kind: Type::All, major: None, minor: None, access: Access::ALL };

    /// Docker's `--device-cgroup-rule` syntax, `<a|b|c> <major|*>:<minor|*> <rwm>`, plus the bare
    /// `a` the v1 controller also takes (everything).
    pub fn parse(s: &str) -> Result<Rule> {
        let bad = || Error::invalid(format!("invalid device cgroup format '{s}'"));
        let fields: Vec<&str> = s.split(' ').collect();
        let (kind, numbers, access) = match fields.as_slice() {
            ["a"] => return Ok(Rule::ALLOW_ALL),
            [k, n, a] => (*k, *n, *a),
            _ => return Err(bad()),
        };
        let kind = match kind {
            "a" => Type::All,
            "c" => Type::Char,
            "b" => Type::Block,
            _ => return Err(bad()),
        };
        let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
        let number = |n: &str| -> Result<Option<u32>> {
            if n == "*" {
                return Ok(None);
            }
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            match n.parse::<u32>() {
                Ok(v) if v <= MAX_NUMBER => Ok(Some(v)),
                _ => Err(bad()),
            }
        };
        let access = Access::parse(access).ok_or_else(bad)?;
        Ok(Rule { kind, major: number(major)?, minor: number(minor)?, access })
    }

    /// Whether this rule lets `access` through to the device `kind major:minor`.
    pub fn allows(&self, kind: Type, major: u32, minor: u32, access: Access) -> bool {
        (self.kind == Type::All || self.kind == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
            && self.access.contains(access)
    }

    /// Whether the rule names this device (any access but mknod): hotplug creates the node in
    /// containers whose rules say they may open it.
    pub fn opens(&self, kind: Type, major: u32, minor: u32) -> bool {
        (self.allows(kind, major, minor, Access(Access::READ)) || self.allows(kind, major, minor, Access(Access::WRITE)))
            && !(self.kind == Type::All && self.major.is_none() && self.minor.is_none())
    }
}

/// The v1 `devices.allow` line.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        write!(f, "{} {}:{} {}", self.kind.letter(), n(self.major), n(self.minor), self.access)
    }
}

/// Docker's default rules: mknod of anything, use of the standard nodes only.
pub const DEFAULT_RULES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// Parses a list of rule lines (as stored in a container's resources).
pub fn parse_all(lines: &[String]) -> Result<Vec<Rule>> {
    lines.iter().map(|l| Rule::parse(l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rule_syntax() {
        let r = Rule::parse("c 89:* rmw").unwrap();
        assert_eq!(r, Rule { kind: Type::Char, major: Some(89), minor: None, access: Access::ALL });
        assert_eq!(r.to_string(), "c 89:* rwm");
        assert_eq!(Rule::parse("a").unwrap(), Rule::ALLOW_ALL);
        assert_eq!(Rule::parse("a *:* rwm").unwrap(), Rule::ALLOW_ALL);
        let b = Rule::parse("b 8:0 r").unwrap();
        assert_eq!(b.to_string(), "b 8:0 r");
        assert!(b.allows(Type::Block, 8, 0, Access(Access::READ)));
        assert!(!b.allows(Type::Block, 8, 0, Access(Access::WRITE)));
        assert!(!b.allows(Type::Char, 8, 0, Access(Access::READ)));
        assert!(!b.allows(Type::Block, 8, 1, Access(Access::READ)));
        assert_eq!(Rule::parse("c *:* m").unwrap().to_string(), "c *:* m");
        for bad in [
            "",
            "c",
            "x 1:2 r",
            "c 1:2",
            "c 1:2 rwx",
            "c 1:2 rr",
            "c 1-2 r",
            "c :2 r",
            "c 1: r",
            "c a:2 r",
            "c 1:2  r",
            "c 1:2 r extra",
            "c 99999999999:1 r",
            "c -1:2 r",
            "C 1:2 r",
        ] {
            let e = Rule::parse(bad).unwrap_err();
            assert_eq!(e.message(), format!("invalid device cgroup format '{bad}'"));
        }
    }

    #[test]
    fn access_subsets() {
        for s in ["r", "w", "m", "rw", "wr", "rm", "mw", "rwm", "mwr"] {
            let a = Access::parse(s).unwrap();
            assert_eq!(a.to_string().len(), s.len(), "{s}");
        }
        for s in ["", "x", "rr", "rwmr", "R"] {
            assert!(Access::parse(s).is_none(), "{s}");
        }
        assert_eq!(Access::parse("mr").unwrap().to_string(), "rm");
    }

    #[test]
    fn opens_ignores_mknod_only_and_allow_all() {
        assert!(!Rule::parse("c *:* m").unwrap().opens(Type::Char, 4, 1));
        assert!(Rule::parse("b 7:* rw").unwrap().opens(Type::Block, 7, 200));
        assert!(!Rule::parse("b 7:* rw").unwrap().opens(Type::Char, 7, 200));
        assert!(!Rule::ALLOW_ALL.opens(Type::Block, 7, 1));
        for r in DEFAULT_RULES {
            Rule::parse(r).unwrap();
        }
    }
}
