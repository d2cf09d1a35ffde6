//! The one integration-test crate: every test runs the real binary.
//!
//! Tests that create network namespaces need root, as CI has; run as another user they fail
//! with a message saying so rather than skip.

mod attack;
mod browser;
mod cli;
mod deploy;
mod image;
mod linkstate;
mod netlink;
mod process;
mod prometheus;
mod resources;
mod serve;
mod since;
mod untrusted;
mod util;
