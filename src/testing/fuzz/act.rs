//! What the damaged-file sequence does to a database that opened: hold a
//! reader and some of its values, run the write steps, compare.

use crate::Database;

/// Values a read transaction handed out (keys and values, slices of the map)
/// beside owned copies taken when they were read, and the keys read.
struct Held<'r> {
    slices: Vec<(&'r [u8], Vec<u8>)>,
    keys: Vec<(String, Vec<u8>)>,
}

/// Reads a few entries of the first tables through `r`: the first and last
/// ones and a few point reads (in the base image, keys `0017`, `0051` and
/// `0085` hold overflow values). Errors end a table's reads.
fn hold<'r>(r: &'r crate::ReadTxn, names: &[String]) -> Held<'r> {
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
    w: &mut crate::WriteTxn,
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
pub(super) struct Acted {
    /// A held reader's slice differs from the copy taken when it was read, or
    /// reading the same entries again gives other bytes.
    pub(super) reader_changed: bool,
    /// The transaction the database showed after its last successful commit
    /// (the opened one if none succeeded).
    pub(super) acked: u64,
    /// A write or sync failed: the commit spoiled its slot and poisoned the
    /// handle (documented), so the reopen may rightly show an older commit.
    pub(super) io_error: bool,
    /// Write transactions that returned an error.
    pub(super) write_errors: u64,
    /// Commits that wrote a meta (a commit that changes nothing writes none).
    /// After two, both slots hold metas of this run.
    pub(super) metas: u64,
}

/// Acts on `db` as an application that trusts the file: holds a read
/// transaction and some of its values, runs write transactions 0 to 2 and
/// commits them, compares the held values with their copies and reads the
/// same entries again, drops the reader, runs write transaction 3. Errors
/// are fine. With `strict`, every successful commit must pass `check`, held
/// values must not change and the second reading must equal the first
/// (panics otherwise).
pub(super) fn act(db: &Database, strict: bool) -> Acted {
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
