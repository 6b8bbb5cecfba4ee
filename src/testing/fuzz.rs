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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::recorder::{Fate, NoSync, Op, Recorder, apply};
use super::{Model, Rng, read_model};
use crate::pager::FileStorage;
use crate::{Database, Options};

/// A scratch file of its own for each call (fuzzers run calls in parallel).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("larch-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir.join(format!("{tag}-{n}.larch")))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes `image` to `path`, leaving its all-zero 4 KiB blocks as holes
/// (they read as zeros): most of a base image is the file's unused tail.
fn write_image(path: &Path, image: &[u8]) {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 4096;
    let file = std::fs::File::create(path).expect("create the image");
    file.set_len(image.len() as u64).expect("size the image");
    let mut at = 0;
    while at < image.len() {
        // One comparison per block: a byte loop here would be traced per byte.
        let zero = |i: usize| {
            let block = &image[i..(i + BLOCK).min(image.len())];
            block == &[0u8; BLOCK][..block.len()]
        };
        if zero(at) {
            at += BLOCK;
            continue;
        }
        let mut end = at + BLOCK;
        while end < image.len() && !zero(end) {
            end += BLOCK;
        }
        let end = end.min(image.len());
        file.write_all_at(&image[at..end], at as u64)
            .expect("write the image");
        at = end;
    }
}

fn open(path: &Path, page_size: u32) -> crate::Result<Database> {
    open_with(path, page_size, false)
}

fn open_with(path: &Path, page_size: u32, verify: bool) -> crate::Result<Database> {
    let opts = Options::new()
        .page_size(page_size)
        .map_size(1 << 30)
        .verify(verify)
        .storage(|f| Ok(Box::new(NoSync(FileStorage::new(f)))));
    opts.open_scratch(path)
}

/// Reads everything reachable, both ways, checks, then writes and checks
/// again. Errors are fine; panics are not. Returns the first error.
pub fn exercise(db: &Database) -> crate::Result<()> {
    let r = db.begin_read()?;
    let names = r.list_tables()?;
    for name in names.iter().take(8) {
        let t = r.open_table(name)?;
        let mut first = None;
        for (i, e) in t.iter()?.enumerate() {
            let (k, _) = e?;
            if i == 0 {
                first = Some(k.to_vec());
            }
            if i > 100_000 {
                break;
            }
        }
        for e in t.iter()?.rev().take(100_000) {
            e?;
        }
        if let Some(k) = first {
            t.get(&k)?;
            let mut c = t.cursor();
            c.seek(&k)?;
            c.prev()?;
            c.next()?;
            c.last()?;
        }
        t.get(b"key")?;
    }
    db.check()?;
    drop(r);
    let mut w = db.begin_write()?;
    for name in names.iter().take(2) {
        let mut t = w.open_table(name)?;
        t.insert(b"fuzz", b"value")?;
        t.insert(b"fuzz-large", &[7u8; 3000])?;
        t.remove(b"key")?;
    }
    if let Some(name) = names.first() {
        w.delete_table(name)?;
    }
    w.open_table("new")?.insert(b"k", b"v")?;
    w.commit()?;
    db.check()?;
    Ok(())
}

/// What the damaged-file targets saw and counted instead of asserting: events
/// larch does not promise to prevent on a file opened without
/// [`Options::verify`] (whose caller vouches for the contents), and the ones
/// on verified files worth a look that break no promise. Kept per thread
/// (each fuzzer and each test runs its inputs on one thread).
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
fn count(event: &str, field: fn(&mut Findings) -> &mut u64) {
    FINDINGS.with(|f| {
        let mut v = f.get();
        *field(&mut v) += 1;
        f.set(v);
    });
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let verbose = *VERBOSE.get_or_init(|| std::env::var_os("LARCH_FUZZ_VERBOSE").is_some());
    if verbose && !matches!(event, "verified" | "unverified") {
        super::report(&format!("FUZZ-FINDING {event}"));
    }
}

/// Values a read transaction handed out (keys and values, slices of the map)
/// beside owned copies taken when they were read, and the keys read.
struct Held<'r> {
    slices: Vec<(&'r [u8], Vec<u8>)>,
    keys: Vec<(String, Vec<u8>)>,
}

/// Reads a few entries of the first tables through `r`: the first and last
/// ones and a few point reads (in the base image, keys `0017`, `0051` and
/// `0085` hold overflow values). Errors end a table's reads.
fn hold<'r>(r: &'r crate::ReadTxn<'_>, names: &[String]) -> Held<'r> {
    let mut held = Held {
        slices: Vec::new(),
        keys: Vec::new(),
    };
    for name in names.iter().take(3) {
        let Ok(t) = r.open_table(name) else { continue };
        let forward = t.iter().into_iter().flat_map(|it| it.take(6));
        let backward = t.iter().into_iter().flat_map(|it| it.rev().take(3));
        for e in forward.chain(backward) {
            let Ok((k, v)) = e else { break };
            held.slices.push((k, k.to_vec()));
            held.slices.push((v, v.to_vec()));
            held.keys.push((name.clone(), k.to_vec()));
        }
        for key in [&b"0017"[..], b"0051", b"0085"] {
            if let Ok(Some(v)) = t.get(key) {
                held.slices.push((v, v.to_vec()));
                held.keys.push((name.clone(), key.to_vec()));
            }
        }
    }
    held
}

/// Write transaction `step` of the trusting sequence. Steps 0 to 2 run while
/// the reader holds its values: step 0 writes small and overflow values into
/// two tables, replaces a value, removes every key the reader read and
/// creates table `new`; step 1 deletes the first table and fills `new`; step
/// 2 (the first that may reuse every page the reader's snapshot has free)
/// adds keys to the other tables, removes an overflow value and takes `fill`
/// one-page overflow runs. Step 3 runs after the reader is gone, when what
/// steps 0 to 2 freed becomes reusable: it deletes `new` and `fill` and
/// rewrites keys of a remaining table.
fn write_step(
    w: &mut crate::WriteTxn<'_>,
    step: usize,
    names: &[String],
    read: &[(String, Vec<u8>)],
    (fill, page_size): (usize, usize),
) -> crate::Result<()> {
    // Lengths from empty to an overflow run of two 512-byte pages.
    let value = |i: usize| vec![i as u8; [0, 5, 40, 200, 900][i % 5]];
    let key = |p: &str, i: usize| format!("{p}{i:03}").into_bytes();
    match step {
        0 => {
            for name in names.iter().take(2) {
                let mut t = w.open_table(name)?;
                t.insert(b"fuzz", b"value")?;
                t.insert(b"fuzz-large", &[7u8; 3000])?;
                t.insert(b"0034", b"replaced")?;
            }
            for (name, k) in read {
                w.open_table(name)?.remove(k)?;
            }
            let mut t = w.open_table("new")?;
            for i in 0..10 {
                t.insert(&key("n", i), &value(i))?;
            }
        }
        1 => {
            if let Some(name) = names.first() {
                w.delete_table(name)?;
            }
            let mut t = w.open_table("new")?;
            for i in 10..50 {
                t.insert(&key("n", i), &value(i))?;
            }
        }
        2 => {
            for name in names.iter().skip(1) {
                let mut t = w.open_table(name)?;
                for i in 0..30 {
                    t.insert(&key("z", i), &value(i + 1))?;
                }
                t.remove(b"fuzz-large")?;
            }
            // Values of half a page each take a one-page overflow run, lowest
            // free page first: as many as the snapshot has free pages, so
            // every page its free list names is reused.
            let half = vec![0xa5; page_size / 2];
            let mut t = w.open_table("fill")?;
            for i in 0..fill {
                t.insert(&key("f", i), &half)?;
            }
        }
        _ => {
            w.delete_table("new")?;
            w.delete_table("fill")?;
            if let Some(name) = names.get(1) {
                let mut t = w.open_table(name)?;
                for i in 0..20 {
                    t.remove(&key("z", i))?;
                    t.insert(&key("y", i), &value(i + 2))?;
                }
            }
        }
    }
    Ok(())
}

/// What the trusting sequence saw.
struct Acted {
    /// A held reader's slice differs from the copy taken when it was read, or
    /// reading the same entries again gives other bytes.
    reader_changed: bool,
    /// The transaction the database showed after its last successful commit
    /// (the opened one if none succeeded).
    acked: u64,
    /// A write or sync failed: the commit spoiled its slot and poisoned the
    /// handle (documented), so the reopen may rightly show an older commit.
    io_error: bool,
    /// Write transactions that returned an error.
    write_errors: u64,
    /// Commits that wrote a meta (a commit that changes nothing writes none).
    /// After two, both slots hold metas of this run.
    metas: u64,
}

/// Acts on `db` as an application that trusts the file: holds a read
/// transaction and some of its values, runs write transactions 0 to 2 and
/// commits them, compares the held values with their copies and reads the
/// same entries again, drops the reader, runs write transaction 3. Errors
/// are fine. With `strict`, every successful commit must pass `check`, held
/// values must not change and the second reading must equal the first
/// (panics otherwise).
fn act(db: &Database, strict: bool) -> Acted {
    let mut acked = db.last_txn_id();
    let mut io_error = false;
    let mut write_errors = 0;
    let mut metas = 0;
    // The free pages of the snapshot, bounded so a crafted count costs little.
    let fill = db.stat().map_or(64, |s| s.free_pages.min(1024) as usize);
    let fill = (fill, db.page_size() as usize);
    let mut run = |step: usize, names: &[String], read: &[(String, Vec<u8>)]| {
        let result = db.begin_write().and_then(|mut w| {
            write_step(&mut w, step, names, read, fill)?;
            w.commit()
        });
        match result {
            Ok(()) => {
                metas += u64::from(db.last_txn_id() != acked);
                acked = db.last_txn_id();
                if strict && let Err(e) = db.check() {
                    panic!("commit {acked}, made on a verified file, fails check: {e}");
                }
            }
            Err(e) => {
                io_error |= matches!(e, crate::Error::Io(_) | crate::Error::Poisoned);
                write_errors += 1;
            }
        }
    };
    let r = db.begin_read().expect("begin_read does not fail");
    let names = r.list_tables().unwrap_or_default();
    let held = hold(&r, &names);
    for step in 0..3 {
        run(step, &names, &held.keys);
    }
    // The slices handed out must still hold what they held, and reading the
    // same entries again through the snapshot must give the same bytes.
    let copies =
        |h: &Held<'_>| -> Vec<Vec<u8>> { h.slices.iter().map(|(_, c)| c.clone()).collect() };
    let changed = held.slices.iter().position(|(s, c)| *s != c.as_slice());
    let reread = copies(&hold(&r, &names)) != copies(&held);
    if strict {
        if let Some(i) = changed {
            panic!(
                "held value {i} of snapshot {} changed under its reader (verified file)",
                r.id()
            );
        }
        assert!(
            !reread,
            "snapshot {} reads otherwise after commits (verified file)",
            r.id()
        );
    }
    drop(held);
    drop(r);
    run(3, &names, &[]);
    Acted {
        reader_changed: changed.is_some() || reread,
        acked,
        io_error,
        write_errors,
        metas,
    }
}

/// The damaged-file sequence on `image` (module documentation, "Damaged
/// files").
fn trusting(tag: &str, image: &[u8], page_size: u32) {
    let scratch = Scratch::new(tag);
    write_image(&scratch.0, image);
    let mut same_commit = false;
    if let Ok(db) = open_with(&scratch.0, page_size, true) {
        count("verified", |f| &mut f.verified);
        same_commit = db
            .stat()
            .is_ok_and(|s| s.set_aside.is_none_or(|a| a.txn_id.is_none()));
        let acted = act(&db, true);
        for _ in 0..acted.write_errors {
            count("verified_write_error", |f| &mut f.verified_write_errors);
        }
        // Only with a slot this run did not write can the reopen show the
        // same transaction with other contents.
        let before = (acted.metas < 2).then(|| read_model(&db).ok());
        drop(db);
        match open_with(&scratch.0, page_size, true) {
            Ok(db) => {
                let shown = db.last_txn_id();
                assert!(
                    shown >= acted.acked || acted.io_error,
                    "acknowledged commit {} dropped: the reopen shows {shown} (verified file)",
                    acted.acked
                );
                let other = |b: &Option<Model>| shown == acted.acked && *b != read_model(&db).ok();
                if shown > acted.acked || before.as_ref().is_some_and(other) {
                    count("verified_superseded", |f| &mut f.verified_superseded);
                }
                let _ = exercise(&db);
            }
            Err(e) => assert!(
                acted.io_error,
                "acknowledged commit {} dropped: the reopen fails: {e} (verified file)",
                acted.acked
            ),
        }
    }
    if same_commit {
        return;
    }
    write_image(&scratch.0, image);
    let Ok(db) = open(&scratch.0, page_size) else {
        return;
    };
    count("unverified", |f| &mut f.unverified);
    let acted = act(&db, false);
    if acted.reader_changed {
        count("unverified_reader_changed", |f| {
            &mut f.unverified_reader_changed
        });
    }
    drop(db);
    match open(&scratch.0, page_size) {
        Ok(db) => {
            let shown = db.last_txn_id();
            if shown < acted.acked {
                count("unverified_dropped", |f| &mut f.unverified_dropped);
            } else if shown > acted.acked {
                count("unverified_superseded", |f| &mut f.unverified_superseded);
            }
            let _ = exercise(&db);
        }
        Err(_) => count("unverified_dropped", |f| &mut f.unverified_dropped),
    }
}

/// Target `open_bytes`: the input is a whole file (an empty or all-zero one
/// is a new database of 4 KiB pages). Runs the damaged-file sequence (module
/// documentation, "Damaged files"): what it asserts on a file `verify(true)`
/// opens, and what it only counts on one opened without verify.
pub fn open_bytes(data: &[u8]) {
    trusting("bytes", data, 4096);
}

/// A valid file with a few tables, overflow values and a free list; built once.
fn base_image() -> &'static [u8] {
    static BASE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let scratch = Scratch::new("base");
        let db = open(&scratch.0, 512).expect("create the base image");
        let mut rng = Rng(1);
        for round in 0..4 {
            let mut w = db.begin_write().expect("write");
            for name in ["a", "b", "c"] {
                let mut t = w.open_table(name).expect("table");
                for i in 0..150u32 {
                    let len = if i % 17 == 0 { 900 } else { (i % 40) as usize };
                    t.insert(format!("{i:04}").as_bytes(), &rng.bytes(len))
                        .expect("insert");
                    if round % 2 == 1 && i % 3 == 0 {
                        t.remove(format!("{i:04}").as_bytes()).expect("remove");
                    }
                }
            }
            w.commit().expect("commit");
        }
        drop(db);
        std::fs::read(&scratch.0).expect("read the base image")
    })
}

/// Bytes of a meta slot's fields before its checksum, and where it sits.
const META_FIELDS: usize = 80;

/// Target `meta_pages`: the input is XORed into the fields of the two meta
/// slots of a valid file (80 bytes each); a flag byte then re-signs either
/// slot with a valid checksum, so forged metas get past the checksum; another
/// may cut the file short. Runs the damaged-file sequence (module
/// documentation, "Damaged files"): a verified open must keep held values,
/// pass `check` after every commit and keep the last acknowledged commit
/// across a reopen; an unverified open of a commit verify rejects is only
/// counted.
pub fn meta_pages(data: &[u8]) {
    let mut image = base_image().to_vec();
    for slot in 0..2 {
        let at = slot * 512;
        let edits = data.get(slot * META_FIELDS..).unwrap_or(&[]);
        for (i, &b) in edits.iter().take(META_FIELDS).enumerate() {
            image[at + i] ^= b;
        }
        let resign = data
            .get(2 * META_FIELDS)
            .is_some_and(|f| f & (1 << slot) != 0);
        let seal_len = u32::from_le_bytes(image[at + 76..at + 80].try_into().expect("4 bytes"));
        let crc = crate::format::meta::meta_checksum(&image[at..at + 512], seal_len as usize);
        if let (true, Some(crc)) = (resign, crc) {
            image[at + META_FIELDS..at + META_FIELDS + 4].copy_from_slice(&crc.to_le_bytes());
        }
    }
    if let Some(&cut) = data.get(2 * META_FIELDS + 1)
        && cut > 200
    {
        let len = image.len() * usize::from(cut - 200) / 56;
        image.truncate(len);
    }
    trusting("meta", &image, 512);
}

/// Target `page_bytes`: the input is a list of (offset, byte) edits applied to
/// the non-meta pages of a valid file. Runs the damaged-file sequence (module
/// documentation, "Damaged files"): a verified open must keep held values,
/// pass `check` after every commit and keep the last acknowledged commit
/// across a reopen; an unverified open of a commit verify rejects (a damaged
/// page the free list names, say) is only counted.
pub fn page_bytes(data: &[u8]) {
    let mut image = base_image().to_vec();
    let body = image.len() - 1024;
    for edit in data.chunks_exact(4) {
        let at = 1024 + u32::from_le_bytes([edit[0], edit[1], edit[2], 0]) as usize % body;
        image[at] = edit[3];
    }
    trusting("pages", &image, 512);
}

/// The durable image and the pending operations at a crash point.
type Captured = (Vec<u8>, Vec<Op>);

/// Target `ops`: the input is a sequence of operations against a `BTreeMap`
/// model, with commits, aborts and crashes. A crash builds the file a power
/// loss at the next sync would leave (the input chooses which pending writes
/// land, which are lost and which are torn) and reopens it: it must hold the
/// acknowledged state or the one in flight, and pass `check`.
///
/// Panics when larch breaks a promise: that is the finding.
pub fn ops(data: &[u8]) {
    let scratch = Scratch::new("ops");
    let recorder = Recorder::new(|_| {});
    let hook = recorder.clone();
    let captured: std::sync::Arc<parking_lot::Mutex<Option<Captured>>> = Default::default();
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next();
    let Some(page_shift) = next() else { return };
    let page_size = 512u32 << (page_shift % 4);
    let opts = Options::new()
        .page_size(page_size)
        .map_size(1 << 30)
        .storage(move |f| hook.wrap(f));
    let db = opts.open_scratch(&scratch.0).expect("create");
    let mut acked = Model::new();
    let mut pending = acked.clone();
    let mut txn = None;
    while let Some(op) = next() {
        let key = format!("k{:03}", next().unwrap_or(0) % 200).into_bytes();
        match op % 16 {
            0..=6 => {
                let len = match next().unwrap_or(0) {
                    n if n > 240 => 600 + usize::from(n) * 20,
                    n => usize::from(n % 64),
                };
                let value = vec![op; len];
                let w = txn.get_or_insert_with(|| db.begin_write().expect("begin"));
                w.open_table("t")
                    .expect("table")
                    .insert(&key, &value)
                    .expect("insert");
                pending
                    .entry("t".to_owned())
                    .or_default()
                    .insert(key, value);
            }
            7..=9 => {
                let w = txn.get_or_insert_with(|| db.begin_write().expect("begin"));
                let removed = w
                    .open_table("t")
                    .expect("table")
                    .remove(&key)
                    .expect("remove");
                let had = pending
                    .entry("t".to_owned())
                    .or_default()
                    .remove(&key)
                    .is_some();
                assert_eq!(removed, had);
            }
            10 => {
                if let Some(w) = txn.as_mut() {
                    w.delete_table("t").expect("delete");
                    pending.remove("t");
                }
            }
            11 | 12 => {
                if let Some(w) = txn.take() {
                    w.commit().expect("commit");
                    acked = pending.clone();
                }
            }
            13 => {
                txn = None;
                pending = acked.clone();
            }
            _ => {
                // Crash at the next sync of the running transaction's commit.
                let Some(w) = txn.take() else { continue };
                let choices: Vec<u8> = (0..8).map(|_| next().unwrap_or(0)).collect();
                let cap = captured.clone();
                let stop_after = usize::from(choices[0] % 2);
                let mut seen = 0;
                recorder.set_on_sync(move |cp| {
                    if seen == stop_after && cap.lock().is_none() {
                        *cap.lock() = Some((cp.durable.to_vec(), cp.pending.to_vec()));
                    }
                    seen += 1;
                });
                w.commit().expect("commit");
                recorder.set_on_sync(|_| {});
                let in_flight = pending.clone();
                let Some((durable, ops)) = captured.lock().take() else {
                    acked = pending.clone();
                    continue;
                };
                let fates: Vec<Fate> = (0..ops.len())
                    .map(|i| match choices[1 + i % 7] % 3 {
                        0 => Fate::Applied,
                        1 => Fate::Dropped,
                        _ => Fate::Torn {
                            seed: u64::from(choices[1 + i % 7]) + i as u64,
                            garble: true,
                        },
                    })
                    .collect();
                let image = apply(&durable, &ops, &fates);
                let crash = Scratch::new("crash");
                std::fs::write(&crash.0, &image).expect("write the crash image");
                let recovered = open(&crash.0, page_size).expect("a crash image opens");
                recovered.check().expect("a crash image passes check");
                let model = read_model(&recovered).expect("a crash image reads");
                assert!(
                    model == acked || model == in_flight,
                    "a crash image holds neither the acknowledged nor the in-flight state"
                );
                acked = in_flight;
            }
        }
    }
    drop(txn);
    db.check().expect("the live file passes check");
    let model = read_model(&db).expect("read");
    assert!(model == acked, "the live file lost a commit");
}
