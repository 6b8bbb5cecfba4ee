//! The bodies of the fuzz targets. Each takes arbitrary bytes and must never
//! hang or touch memory it should not, and panics only when larch breaks a
//! promise (each target's documentation says which); the cargo-fuzz targets
//! in `fuzz/` and plain tests over a checked-in corpus both call them
//! (docs/reliability.md, suites 8 and 9).
//!
//! # Damaged files
//!
//! `open_bytes`, `meta_pages` and `page_bytes` build a file image from their
//! input and treat it as an application that trusts the file would, before
//! anything checks it: hold a read transaction and some of the values it
//! hands out; commit inserts (small values and overflow runs), removes of the
//! keys read, a table created, filled and deleted, and one-page values for
//! every free page of the reader's snapshot, so that every page its free
//! list names is reused while the reader lives; compare; drop the reader and
//! commit once more; reopen; and only then run `check` and [`exercise`].
//!
//! 1. Verified: open with `verify(true)`, which is how larch is to be given a
//!    file it cannot vouch for. If that succeeds, the sequence runs strictly:
//!    - a value a held reader was handed never changes while it lives, and
//!      reading the same entries again through it gives the same bytes;
//!    - every commit that returns `Ok` leaves a state that passes `check`;
//!    - an acknowledged commit is never dropped: the reopen (verified again)
//!      must succeed and show at least the transaction the last successful
//!      commit made (the opened one if none did), unless a write or sync
//!      failed. A newer one, or the same one holding other contents, means
//!      the reopen took a meta that no commit of the run wrote (left in the
//!      slot the run's commits did not overwrite); that is counted
//!      (`verified_superseded`), not asserted.
//! 2. Unverified: open the same image again, as a trusted file. When the
//!    verified open used the newest valid meta (it set aside no valid one),
//!    this is the same commit and adds nothing, so it is skipped. Otherwise
//!    the commit opened is one the integrity check rejects (or verify opened
//!    nothing): outside the safety contract of `open`, a free list may name
//!    a live page. The sequence runs without assertions, and a changed held
//!    value or a dropped or superseded commit at the reopen is only counted
//!    ([`Findings`]). Panics, hangs and wild reads are still findings.
//!
//! After each reopen, [`exercise`] reads everything, checks, writes and
//! checks again.

mod act;
mod damaged;
mod findings;
mod ops;
mod read_write;
mod scratch;

pub use damaged::{meta_pages, open_bytes, page_bytes};
pub use findings::{Findings, take_findings};
pub use ops::ops;
pub use read_write::exercise;
