//! The numbers of the rtnetlink and ethtool ABI (linux/netlink.h, linux/rtnetlink.h,
//! linux/if_link.h, linux/if.h, linux/ethtool.h, linux/sockios.h, linux/socket.h) that both the
//! netlink source and the benchmark's floor (scripts/bench/floor.rs) speak: one list, so that
//! the floor a netlink scrape is held against sends the same request and reads the same
//! replies. The floor includes this file by `#[path]`, as it includes `sysfs_files.rs`.
//! Every number here is the same on x86_64 and aarch64, the two targets the exporter ships for.
//!
//! Invariant: constants only, std only and nothing of ours, so that a program outside the crate
//! can include it; the calls that use them stay in `sys.rs` (and the floor's own `unsafe`).

// Sockets and the ethtool ioctl.
pub const AF_UNIX: i32 = 1;
pub const AF_NETLINK: i32 = 16;
pub const SOCK_DGRAM: i32 = 2;
pub const SOCK_RAW: i32 = 3;
pub const NETLINK_ROUTE: i32 = 0;
pub const MSG_TRUNC: i32 = 0x20;
pub const SIOCETHTOOL: std::ffi::c_ulong = 0x8946;
pub const ETHTOOL_GLINKSETTINGS: u32 = 0x4c;
/// An interface name and its NUL.
pub const IFNAMSIZ: usize = 16;

// Netlink message headers and flags.
pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_DUMP_INTR: u16 = 0x10;

// rtnetlink link messages.
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;
pub const AF_UNSPEC: u8 = 0;
/// `struct ifinfomsg`: family, pad, type (u16), index (i32), flags (u32), change (u32).
pub const IFINFOMSG_LEN: usize = 16;
pub const RTA_HDRLEN: usize = 4;
/// `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` ride in the top bits of an attribute's type.
pub const NLA_TYPE_MASK: u16 = 0x3fff;
pub const IFF_UP: u32 = 0x1;
pub const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;

// Link attributes.
pub const IFLA_ADDRESS: u16 = 1;
pub const IFLA_IFNAME: u16 = 3;
pub const IFLA_MTU: u16 = 4;
pub const IFLA_MASTER: u16 = 10;
pub const IFLA_TXQLEN: u16 = 13;
pub const IFLA_OPERSTATE: u16 = 16;
pub const IFLA_LINKINFO: u16 = 18;
pub const IFLA_IFALIAS: u16 = 20;
pub const IFLA_STATS64: u16 = 23;
pub const IFLA_EXT_MASK: u16 = 29;
pub const IFLA_PROMISCUITY: u16 = 30;
pub const IFLA_CARRIER: u16 = 33;
pub const IFLA_CARRIER_CHANGES: u16 = 35;
pub const IFLA_CARRIER_UP_COUNT: u16 = 47;
pub const IFLA_CARRIER_DOWN_COUNT: u16 = 48;
/// Nested in `IFLA_LINKINFO`: the kind of link (`veth`, `bridge`), NUL-terminated.
pub const IFLA_INFO_KIND: u16 = 1;
