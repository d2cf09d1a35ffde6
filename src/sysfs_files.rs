//! The attribute files the sysfs source reads in every interface directory on a default scan,
//! in the order it reads them: one list, for two readers that must not drift apart. The sysfs
//! source walks [`Attr::DEFAULT`] and stores each value with an exhaustive `match`, so it can
//! neither read a file the list lacks nor skip one it holds; the benchmark's floor
//! (scripts/bench/floor.rs) includes this file by `#[path]` and opens the same files, so the
//! floor a scrape is held against is always the scrape's own work. What is read only with a
//! flag (`statistics/*`, see `model::STATISTICS`) and the `master` link, which is read with
//! `readlinkat` and opens nothing, are not in it.
//!
//! Invariant: std only and nothing of ours, so that a program outside the crate can include it.

use std::ffi::CStr;

/// One attribute file of an interface directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    Operstate,
    Ifindex,
    Flags,
    Carrier,
    CarrierChanges,
    CarrierUpCount,
    CarrierDownCount,
    Mtu,
    Speed,
    Address,
    Duplex,
    Ifalias,
    Type,
    TxQueueLen,
    Uevent,
}

impl Attr {
    /// What a default scan reads, in order. `operstate` comes first: an interface without one
    /// is left out, and nothing else of it need be read.
    pub const DEFAULT: [Attr; 15] = [
        Attr::Operstate,
        Attr::Ifindex,
        Attr::Flags,
        Attr::Carrier,
        Attr::CarrierChanges,
        Attr::CarrierUpCount,
        Attr::CarrierDownCount,
        Attr::Mtu,
        Attr::Speed,
        Attr::Address,
        Attr::Duplex,
        Attr::Ifalias,
        Attr::Type,
        Attr::TxQueueLen,
        Attr::Uevent,
    ];

    /// The file's name in the interface directory.
    pub fn file(self) -> &'static CStr {
        match self {
            Attr::Operstate => c"operstate",
            Attr::Ifindex => c"ifindex",
            Attr::Flags => c"flags",
            Attr::Carrier => c"carrier",
            Attr::CarrierChanges => c"carrier_changes",
            Attr::CarrierUpCount => c"carrier_up_count",
            Attr::CarrierDownCount => c"carrier_down_count",
            Attr::Mtu => c"mtu",
            Attr::Speed => c"speed",
            Attr::Address => c"address",
            Attr::Duplex => c"duplex",
            Attr::Ifalias => c"ifalias",
            Attr::Type => c"type",
            Attr::TxQueueLen => c"tx_queue_len",
            Attr::Uevent => c"uevent",
        }
    }
}
