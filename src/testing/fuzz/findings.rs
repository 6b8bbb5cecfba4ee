//! [`Findings`]: what the damaged-file targets count instead of asserting,
//! kept per thread.

/// What the damaged-file targets saw and counted instead of asserting: events
/// larch does not promise to prevent on a file opened without
/// [`Options::verify`](crate::Options::verify) (whose caller vouches for the
/// contents), and the ones on verified files worth a look that break no
/// promise. Kept per thread (each fuzzer and each test runs its inputs on one
/// thread).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Images that `verify(true)` opened: the asserted sequence ran.
    pub verified: u64,
    /// After a verified open, write transactions that failed (an operation or
    /// the commit returned an error): the check passed, yet an operation
    /// found something wrong.
    pub verified_write_errors: u64,
    /// After a verified open, reopens that showed a newer transaction than the
    /// last acknowledged one, or the same one with other contents: a meta no
    /// commit of the run wrote, left in the slot the run's commits did not
    /// overwrite.
    pub verified_superseded: u64,
    /// Images opened without verify at a commit that verify sets aside (or
    /// when verify opened nothing): the sequence ran without its assertions.
    pub unverified: u64,
    /// Without verify: a held reader's slice changed under it, or its
    /// snapshot read otherwise the second time.
    pub unverified_reader_changed: u64,
    /// Without verify: the reopen showed an older transaction than the last
    /// acknowledged one, or failed.
    pub unverified_dropped: u64,
    /// Without verify: the reopen showed a newer transaction than the last
    /// acknowledged one.
    pub unverified_superseded: u64,
}

thread_local! {
    static FINDINGS: std::cell::Cell<Findings> = std::cell::Cell::new(Findings::default());
}

/// The findings counted on this thread since the last call, and resets them.
pub fn take_findings() -> Findings {
    FINDINGS.with(|f| f.take())
}

/// Counts one event; names it on standard error when `LARCH_FUZZ_VERBOSE` is
/// set (so a fuzzer's run can be searched for them), unless it only counts a
/// run (`verified`, `unverified`).
pub(super) fn count(event: &str, field: fn(&mut Findings) -> &mut u64) {
    FINDINGS.with(|f| {
        let mut v = f.get();
        *field(&mut v) += 1;
        f.set(v);
    });
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let verbose = *VERBOSE.get_or_init(|| std::env::var_os("LARCH_FUZZ_VERBOSE").is_some());
    if verbose && !matches!(event, "verified" | "unverified") {
        crate::testing::report(&format!("FUZZ-FINDING {event}"));
    }
}
