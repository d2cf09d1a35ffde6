//! The plain model both sources fill and every renderer reads: [`Interface`], [`OperState`],
//! the [`Scan`] of one request, and the filter [`Options`].
//!
//! Invariant: imports nothing of ours but [`Glob`]; knows no source, no renderer and no IO.

use std::fmt;
use std::io;

use crate::glob::Glob;

/// RFC 2863 operational states, as the kernel spells them in `operstate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperState {
    Unknown,
    NotPresent,
    Down,
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
    /// A value the kernel does not write; kept so the seed's "any other state = 2" holds.
    Other,
}

impl OperState {
    pub const ALL: [OperState; 7] = [
        OperState::Unknown,
        OperState::NotPresent,
        OperState::Down,
        OperState::LowerLayerDown,
        OperState::Testing,
        OperState::Dormant,
        OperState::Up,
    ];

    pub fn parse(s: &[u8]) -> OperState {
        match s {
            b"unknown" => OperState::Unknown,
            b"notpresent" => OperState::NotPresent,
            b"down" => OperState::Down,
            b"lowerlayerdown" => OperState::LowerLayerDown,
            b"testing" => OperState::Testing,
            b"dormant" => OperState::Dormant,
            b"up" => OperState::Up,
            _ => OperState::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OperState::Unknown => "unknown",
            OperState::NotPresent => "notpresent",
            OperState::Down => "down",
            OperState::LowerLayerDown => "lowerlayerdown",
            OperState::Testing => "testing",
            OperState::Dormant => "dormant",
            OperState::Up => "up",
            OperState::Other => "other",
        }
    }

    /// The seed exporter's encoding: down = 0, up = 1, anything else = 2.
    pub fn seed_value(self) -> u8 {
        match self {
            OperState::Down => 0,
            OperState::Up => 1,
            _ => 2,
        }
    }
}

/// One interface as read in one scan. `None` and empty strings mean "no value".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    /// The directory name, which need not be UTF-8.
    pub name: Vec<u8>,
    /// `operstate` as read, trimmed.
    pub operstate: Vec<u8>,
    /// The kernel's interface index; read to tell which namespace a source describes.
    pub ifindex: Option<u64>,
    pub admin_up: Option<bool>,
    pub carrier: Option<bool>,
    pub carrier_changes: Option<u64>,
    pub carrier_up: Option<u64>,
    pub carrier_down: Option<u64>,
    pub mtu: Option<u64>,
    /// Link speed in Mb/s; `None` when the driver reports none or -1.
    pub speed_mbps: Option<u64>,
    pub address: Vec<u8>,
    pub duplex: Vec<u8>,
    pub ifalias: Vec<u8>,
    /// Present only with `--collector.statistics`, in the order of `sysfs::STATISTICS`.
    pub statistics: Option<[Option<u64>; 8]>,
    /// When the oper state, admin state or carrier last changed, in milliseconds since the
    /// Unix epoch (IF-MIB's ifLastChange); the exporter's start time when no change has been
    /// seen since it started, and the time it appeared for an interface that came later.
    pub last_change_ms: Option<u64>,
}

impl Interface {
    pub fn oper(&self) -> OperState {
        OperState::parse(&self.operstate)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub statistics: bool,
    pub include: Vec<Glob>,
    pub exclude: Vec<Glob>,
}

impl Options {
    /// Exclude wins; with includes given, only matching names pass.
    pub fn wants(&self, name: &[u8]) -> bool {
        !self.exclude.iter().any(|g| g.matches(name))
            && (self.include.is_empty() || self.include.iter().any(|g| g.matches(name)))
    }
}

/// What one scan found. Kept between scans only to reuse its allocations.
#[derive(Debug, Default)]
pub struct Scan {
    /// Sorted by name.
    pub interfaces: Vec<Interface>,
    /// Reads that failed for a reason other than the expected ones.
    pub errors: u64,
    /// Interfaces of earlier scans, kept for their allocations.
    spare: Vec<Interface>,
}

/// Why a scan could not see every interface. Its answer would be partial, and a partial answer
/// served with 200 makes Prometheus record stale series as fresh, so a scan that fails this way
/// is answered with 503 instead. "The kernel has no value for this attribute" is not one of
/// these: it only leaves a sample out.
#[derive(Debug)]
pub struct ScanError {
    /// What the scan was doing, e.g. "cannot list interfaces".
    pub what: &'static str,
    /// The path, interface or socket it was doing it to.
    pub subject: String,
    pub err: io::Error,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.what, self.subject, self.err)
    }
}

impl Scan {
    /// Starts a scan: the last one's interfaces become spares and the error count restarts.
    pub fn begin(&mut self) {
        self.spare.append(&mut self.interfaces);
        self.errors = 0;
    }

    /// An interface to fill, reusing a spare's allocations when there is one.
    pub fn take_spare(&mut self) -> Interface {
        self.spare.pop().unwrap_or_default()
    }

    /// Gives back an interface that was taken but not kept.
    pub fn give_back(&mut self, iface: Interface) {
        self.spare.push(iface);
    }

    /// Makes room for `n` interfaces, and for as many spares, in one fallible step: at
    /// thousands of interfaces these two vectors are a scan's largest allocations, and a scan
    /// that cannot have them is better refused than allowed to abort the process.
    pub fn try_reserve(&mut self, n: usize) -> Result<(), std::collections::TryReserveError> {
        self.interfaces
            .try_reserve(n.saturating_sub(self.interfaces.len()))?;
        self.spare.try_reserve(n.saturating_sub(self.spare.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::Rng;

    #[test]
    fn oper_states() {
        for state in OperState::ALL {
            assert_eq!(OperState::parse(state.name().as_bytes()), state);
        }
        assert_eq!(OperState::parse(b"UP"), OperState::Other);
        assert_eq!(OperState::parse(b""), OperState::Other);
        assert_eq!(OperState::Up.seed_value(), 1);
        assert_eq!(OperState::Down.seed_value(), 0);
        for other in [
            OperState::Unknown,
            OperState::LowerLayerDown,
            OperState::Dormant,
            OperState::Testing,
            OperState::NotPresent,
            OperState::Other,
        ] {
            assert_eq!(other.seed_value(), 2);
        }
    }

    #[test]
    fn filters() -> Result<(), crate::glob::GlobError> {
        let opts = Options {
            statistics: false,
            include: vec![Glob::new("e*")?, Glob::new("br?")?],
            exclude: vec![Glob::new("eth9")?],
        };
        assert!(opts.wants(b"eth0"));
        assert!(!opts.wants(b"eth9"));
        assert!(opts.wants(b"br0"));
        assert!(!opts.wants(b"lo"));
        let all = Options::default();
        assert!(all.wants(b"lo"));
        Ok(())
    }

    #[test]
    fn fuzz_oper_state_against_the_names() {
        let mut rng = Rng(0x5f5f_5eed_0000_0002);
        for _ in 0..100_000 {
            let mut v = rng.pick(&OperState::ALL).name().as_bytes().to_vec();
            match rng.below(6) {
                0 => v.truncate(rng.below(v.len() + 1)),
                1 => v.push(*rng.pick(b"\n \0x")),
                2 => {
                    let at = rng.below(v.len());
                    v[at] ^= 0x20;
                }
                3 => v = (0..rng.below(16)).map(|_| rng.next() as u8).collect(),
                _ => {}
            }
            let expected = OperState::ALL
                .into_iter()
                .find(|s| s.name().as_bytes() == v)
                .unwrap_or(OperState::Other);
            let state = OperState::parse(&v);
            assert_eq!(state, expected, "{:?}", String::from_utf8_lossy(&v));
            assert!(state.seed_value() <= 2);
        }
    }
}
