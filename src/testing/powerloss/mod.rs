//! The power-loss simulator (docs/reliability.md, suite 3).
//!
//! A seeded workload runs on a database whose storage is a [`Recorder`]. At
//! every sync (a crash point) the monitor checks that no pending write touches
//! a page reachable from either durable meta or from a live reader, and crash
//! images are built from the durable image plus subsets of the pending
//! operations, each applied, dropped or torn at 512-byte sectors. Every image
//! must open through the real map, pass `check`, and hold exactly the last
//! acknowledged commit or the one in flight; then more transactions run on it
//! and it must pass `check` again.
//!
//! [`Recorder`]: super::Recorder

mod chain;
mod expect;
mod figures;
mod images;
mod txns;
mod workload;

pub(crate) use chain::Chain;
pub use figures::Figures;
pub use workload::run;
