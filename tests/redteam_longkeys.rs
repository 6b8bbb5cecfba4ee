//! Red team of long keys (format 5): keys longer than a quarter page kept
//! out of line beside their values, and the long separators between leaves
//! that a branch cell owns a copy of.
//!
//! Each test is marked "Held: ..." (tried, and larch withstood it: kept as
//! a regression test) or "Found a defect: ..." (fails until fixed).

mod common;

use std::collections::BTreeMap;

use common::heap_image::assert_clean;
use common::{Rng, TestDb, seeded_bytes, show_key, shuffle};
use larch::{Database, Error};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Asserts that table `name` of the last commit holds exactly `model`:
/// forwards, backwards and key by key.
fn assert_holds(db: &Database, name: &str, model: &Model) {
    let r = db.begin_read().unwrap();
    let tab = match r.open_table(name) {
        Ok(t) => t,
        Err(Error::TableNotFound { .. }) if model.is_empty() => return,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(tab.len(), model.len() as u64);
    let got: Vec<(Vec<u8>, Vec<u8>)> = common::collect(tab.iter().unwrap());
    let want: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if got != want {
        let first = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "forwards: {} entries, want {}; first difference at {first}: got {:?}, want {:?}",
            got.len(),
            want.len(),
            got.get(first).map(|(k, _)| show_key(k)),
            want.get(first).map(|(k, _)| show_key(k)),
        );
    }
    let back: Vec<Vec<u8>> = tab
        .iter()
        .unwrap()
        .rev()
        .map(|e| e.unwrap().0.to_vec())
        .collect();
    assert!(
        back.iter().eq(model.keys().rev()),
        "backwards iteration differs"
    );
    for (k, v) in model {
        assert!(
            tab.get(k).unwrap() == Some(&v[..]),
            "get of a key of {}",
            show_key(k)
        );
    }
}

/// The heap holds nothing: no segment, no packed byte, no overflow page.
fn assert_heap_empty(db: &Database, what: &str) {
    let report = assert_clean(db);
    assert_eq!(
        (report.segments, report.packed_bytes, report.overflow_pages),
        (0, 0, 0),
        "{what}: {report:?}"
    );
    let stat = db.stat().unwrap();
    assert_eq!(
        (stat.segments, stat.packed_bytes),
        (0, 0),
        "{what}: {stat:?}"
    );
}

/// Keys at 512-byte pages (inline limit 128) whose separators fall on both
/// sides of the inline limit: a run of `'a'` of `shared` bytes (126..=130),
/// then one distinguishing byte, then padding to `len` bytes. Between two
/// such keys of one `shared`, the shortest separator is `shared + 1` bytes:
/// 127..=131, straddling the 128 a node holds whole.
fn boundary_key(shared: usize, b: u8, len: usize, tail: u8) -> Vec<u8> {
    let mut k = vec![b'a'; shared];
    k.push(b);
    while k.len() < len {
        k.push(tail);
    }
    k
}

fn boundary_keys() -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    for shared in 126..=130 {
        for b in [b'0', b'3', b'6', b'9'] {
            for len in [shared + 1, 129, 200, 700, 3000] {
                for tail in [b'x', b'y'] {
                    let k = boundary_key(shared, b, len.max(shared + 1), tail);
                    keys.push(k);
                }
            }
        }
    }
    // Short keys between and around them.
    for i in 0..40u8 {
        keys.push(vec![b'a', i]);
        keys.push(vec![b'b', i]);
    }
    keys.sort();
    keys.dedup();
    keys
}

fn churn_value(rng: &mut Rng, seed: u64) -> Vec<u8> {
    let len = match rng.below(10) {
        0..=4 => rng.below(20) as usize,
        5..=6 => 100 + rng.below(400) as usize,
        7 => 600 + rng.below(2000) as usize,
        8 => 0,
        _ => 17_000 + rng.below(3000) as usize,
    };
    seeded_bytes(seed, len)
}

/// Held: random inserts, overwrites and removals of keys whose separators
/// straddle the inline limit at 512-byte pages (so separators are inline
/// prefixes, long copies, or keys kept whole, and change kind as leaves
/// split, merge and share cells), a few dozen to a commit: the table reads
/// back as the model after every commit and `check` is clean (it compares
/// the heap's counts with every cell and separator); once every key is
/// removed the heap is empty.
#[test]
fn churn_with_separators_straddling_the_inline_limit() {
    let keys = boundary_keys();
    for seed in [1u64, 2, 3] {
        let t = TestDb::new(512);
        let mut rng = Rng(0x5EED + seed);
        let mut model = Model::new();
        for round in 0..40 {
            let w = t.db().begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for _ in 0..60 {
                    let k = &keys[rng.below(keys.len() as u64) as usize];
                    if rng.below(3) == 0 {
                        let was = tab.remove(k).unwrap();
                        assert_eq!(was, model.remove(k).is_some(), "remove {}", show_key(k));
                    } else {
                        let v = churn_value(&mut rng, round * 1000 + seed);
                        tab.insert(k, &v).unwrap();
                        model.insert(k.clone(), v);
                    }
                }
            }
            w.commit().unwrap();
            assert_clean(t.db());
            if round % 5 == 4 {
                assert_holds(t.db(), "t", &model);
            }
        }
        assert_holds(t.db(), "t", &model);
        // Empty it in random order.
        let mut rest: Vec<Vec<u8>> = model.keys().cloned().collect();
        shuffle(&mut rest, &mut rng);
        for chunk in rest.chunks(37) {
            let w = t.db().begin_write().unwrap();
            {
                let mut tab = w.open_table("t").unwrap();
                for k in chunk {
                    assert!(tab.remove(k).unwrap());
                    model.remove(k);
                }
            }
            w.commit().unwrap();
            assert_clean(t.db());
        }
        assert_holds(t.db(), "t", &model);
        for _ in 0..3 {
            let w = t.db().begin_write().unwrap();
            w.commit().unwrap();
        }
        assert_heap_empty(t.db(), &format!("seed {seed}"));
    }
}

/// Long keys of `len` bytes sharing all but their last 4 bytes (a counter),
/// so that every separator between them is a whole long copy.
fn twin_key(len: usize, i: u32) -> Vec<u8> {
    let mut k = vec![b'k'; len - 4];
    k.extend_from_slice(&i.to_be_bytes());
    k
}

/// Held: sorted, reverse-sorted and interleaved loads (the insert hint,
/// the append split) of keys whose separators are all long copies, then
/// removals in sorted, reverse and strided order that empty whole leaves
/// at both ends and in the middle (dropping the first child of a branch,
/// and later ones), and collapse the root: `check` clean after every
/// commit, contents as the model, and the heap empty at the end.
#[test]
fn ordered_loads_and_removals_of_long_separators() {
    for (n, len) in [(600u32, 200usize), (150, 3000)] {
        for order in 0..4 {
            let t = TestDb::new(512);
            let mut ids: Vec<u32> = (0..n).collect();
            match order {
                1 => ids.reverse(),
                2 => ids.sort_by_key(|i| (i % 7, *i)),
                _ => {}
            }
            let mut model = Model::new();
            for chunk in ids.chunks(100) {
                let w = t.db().begin_write().unwrap();
                {
                    let mut tab = w.open_table("t").unwrap();
                    for &i in chunk {
                        let k = twin_key(len, i);
                        let v = seeded_bytes(u64::from(i), (i as usize * 13) % 300);
                        tab.insert(&k, &v).unwrap();
                        model.insert(k, v);
                    }
                }
                w.commit().unwrap();
                assert_clean(t.db());
            }
            assert_holds(t.db(), "t", &model);
            let mut gone: Vec<u32> = (0..n).collect();
            match order {
                0 => {}
                1 | 3 => gone.reverse(),
                _ => gone.sort_by_key(|i| (i / 40 % 3, *i)),
            }
            let per = if order == 3 { 7 } else { 45 };
            for chunk in gone.chunks(per) {
                let w = t.db().begin_write().unwrap();
                {
                    let mut tab = w.open_table("t").unwrap();
                    for &i in chunk {
                        let k = twin_key(len, i);
                        assert!(tab.remove(&k).unwrap(), "remove {i}");
                        model.remove(&k);
                    }
                }
                w.commit().unwrap();
                assert_clean(t.db());
                assert_holds(t.db(), "t", &model);
            }
            for _ in 0..3 {
                t.db().begin_write().unwrap().commit().unwrap();
            }
            assert_heap_empty(t.db(), &format!("n {n} len {len} order {order}"));
        }
    }
}

/// Held: readers pinned at several commits while a writer churns keys with
/// long separators (their copies freed by merges and redistributions, and
/// the places of the keys freed by removals and overwrites) over enough
/// commits for every page they do not hold to be reused: each reader still
/// reads its snapshot exactly, forwards, backwards, by key and by range.
#[test]
fn readers_keep_long_keys_and_separators_through_churn() {
    let keys = boundary_keys();
    let t = TestDb::new(512);
    let mut rng = Rng(0xBEEF);
    let mut model = Model::new();
    // A first load.
    {
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for (i, k) in keys.iter().enumerate() {
                let v = seeded_bytes(i as u64, i % 200);
                tab.insert(k, &v).unwrap();
                model.insert(k.clone(), v);
            }
        }
        w.commit().unwrap();
    }
    let mut readers = Vec::new();
    for round in 0..30u64 {
        if round % 6 == 0 {
            readers.push((t.db().begin_read().unwrap(), model.clone()));
        }
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for _ in 0..80 {
                let k = &keys[rng.below(keys.len() as u64) as usize];
                if rng.below(2) == 0 {
                    tab.remove(k).unwrap();
                    model.remove(k);
                } else {
                    let v = churn_value(&mut rng, round);
                    tab.insert(k, &v).unwrap();
                    model.insert(k.clone(), v);
                }
            }
        }
        w.commit().unwrap();
        for (r, m) in &readers {
            let tab = r.open_table("t").unwrap();
            let got: Vec<(Vec<u8>, Vec<u8>)> = common::collect(tab.iter().unwrap());
            assert!(
                got.iter().map(|(k, v)| (k, v)).eq(m.iter()),
                "round {round}: a reader's snapshot changed"
            );
            assert!(
                tab.iter()
                    .unwrap()
                    .rev()
                    .map(|e| e.unwrap().0.to_vec())
                    .eq(m.keys().rev().cloned())
            );
            for k in keys.iter().step_by(7) {
                assert_eq!(tab.get(k).unwrap(), m.get(k).map(|v| &v[..]));
                let lo: &[u8] = &k[..k.len().min(129)];
                let want = m.range(lo.to_vec()..).take(3).map(|(k, _)| k.clone());
                let got = tab
                    .range(lo..)
                    .unwrap()
                    .take(3)
                    .map(|e| e.unwrap().0.to_vec());
                assert!(got.eq(want), "range from a prefix of {}", show_key(k));
            }
        }
    }
    drop(readers);
    assert_clean(t.db());
    assert_holds(t.db(), "t", &model);
}

/// Held: keys of exactly 64 KiB at 512-byte pages that differ only in
/// their last byte, so each separator is a 64 KiB copy in a run of its own
/// (130 pages), with short keys between them; most removed, then
/// `Database::compact`: every remaining key reads back, `check` is clean
/// before and after a reopen, the file shrinks, and removing the rest
/// empties the heap.
#[test]
fn compact_moves_separator_runs_of_64_kib_keys() {
    let mut t = TestDb::new(512);
    let mut model = Model::new();
    let key = |i: u8| {
        let mut k = vec![b'z'; 65_536];
        k[65_535] = i;
        k
    };
    {
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..60u8 {
                let k = key(i * 2);
                let v = seeded_bytes(u64::from(i), usize::from(i) * 11);
                tab.insert(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
        w.commit().unwrap();
    }
    assert_clean(t.db());
    {
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for i in 0..60u8 {
                if i % 5 != 0 && i < 50 {
                    let k = key(i * 2);
                    assert!(tab.remove(&k).unwrap());
                    model.remove(&k);
                }
            }
        }
        w.commit().unwrap();
    }
    assert_clean(t.db());
    let before = t.file_size();
    for _ in 0..3 {
        t.db().begin_write().unwrap().commit().unwrap();
    }
    t.db().compact().unwrap();
    assert_clean(t.db());
    assert_holds(t.db(), "t", &model);
    t.reopen();
    assert_clean(t.db());
    assert_holds(t.db(), "t", &model);
    assert!(t.file_size() < before, "{} !< {before}", t.file_size());
    {
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for k in model.keys() {
                assert!(tab.remove(k).unwrap());
            }
        }
        w.commit().unwrap();
    }
    model.clear();
    for _ in 0..3 {
        t.db().begin_write().unwrap().commit().unwrap();
    }
    assert_heap_empty(t.db(), "after compact");
}

/// Held: the heap's cleaning with long keys and long separators packed in
/// segments: keys of 300 bytes sharing 296 (separators are long copies,
/// packed), their values overwritten again and again with sizes that pack,
/// so segments go sparse and are cleaned: contents as the model after every
/// commit, `check` clean, and the file stays bounded.
#[test]
fn heap_cleaning_moves_long_keys_and_separator_copies() {
    let mut t = TestDb::new(512);
    let mut rng = Rng(77);
    let mut model = Model::new();
    let keys: Vec<Vec<u8>> = (0..2000).map(|i| twin_key(300, i)).collect();
    {
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for (i, k) in keys.iter().enumerate() {
                let v = seeded_bytes(i as u64, 200);
                tab.insert(k, &v).unwrap();
                model.insert(k.clone(), v);
            }
        }
        w.commit().unwrap();
    }
    let mut sizes = Vec::new();
    for round in 0..120u64 {
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("t").unwrap();
            for _ in 0..150 {
                let k = &keys[rng.below(keys.len() as u64) as usize];
                let v = seeded_bytes(round, 100 + rng.below(900) as usize);
                tab.insert(k, &v).unwrap();
                model.insert(k.clone(), v);
            }
            // Now and then a split and a merge, making and freeing copies.
            let extra = twin_key(300, 10_000 + round as u32);
            tab.insert(&extra, b"x").unwrap();
            if round % 2 == 1 {
                let prev = twin_key(300, 10_000 + round as u32 - 1);
                tab.remove(&prev).unwrap();
                tab.remove(&extra).unwrap();
            }
        }
        w.commit().unwrap();
        model.insert(twin_key(300, 10_000 + round as u32), b"x".to_vec());
        if round % 2 == 1 {
            model.remove(&twin_key(300, 10_000 + round as u32 - 1));
            model.remove(&twin_key(300, 10_000 + round as u32));
        }
        if round % 10 == 9 {
            assert_clean(t.db());
            assert_holds(t.db(), "t", &model);
            sizes.push(t.file_size());
        }
    }
    t.reopen();
    assert_clean(t.db());
    assert_holds(t.db(), "t", &model);
    let (first, last) = (sizes[2], *sizes.last().unwrap());
    assert!(last <= 2 * first, "file grew from {first} to {last}");
}

/// Held: table names longer than a quarter page at 512-byte pages, many of
/// them sharing long prefixes (the catalog's keys and separators are long):
/// created, listed in order, read, some deleted with `delete_table`,
/// through reopens; `check` clean; deleting all empties the heap.
#[test]
fn long_table_names_in_the_catalog() {
    let mut t = TestDb::new(512);
    let name = |i: u32| format!("{}{i:05}", "n".repeat(300));
    let mut names: Vec<String> = (0..120).map(name).collect();
    names.push("short".to_owned());
    names.push("x".repeat(65_536));
    for chunk in names.chunks(25) {
        let w = t.db().begin_write().unwrap();
        for n in chunk {
            let mut tab = w.open_table(n).unwrap();
            tab.insert(n.as_bytes(), &n.as_bytes()[n.len() - 5..])
                .unwrap();
        }
        w.commit().unwrap();
    }
    assert_clean(t.db());
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(t.db().begin_read().unwrap().list_tables().unwrap(), sorted);
    t.reopen();
    {
        let r = t.db().begin_read().unwrap();
        for n in &names {
            let tab = r.open_table(n).unwrap();
            assert_eq!(
                tab.get(n.as_bytes()).unwrap(),
                Some(&n.as_bytes()[n.len() - 5..])
            );
        }
    }
    let mut w = t.db().begin_write().unwrap();
    for n in names.iter().step_by(2) {
        assert!(w.delete_table(n).unwrap());
    }
    w.commit().unwrap();
    assert_clean(t.db());
    let left: Vec<String> = sorted
        .iter()
        .filter(|n| !names.iter().step_by(2).any(|m| m == *n))
        .cloned()
        .collect();
    assert_eq!(t.db().begin_read().unwrap().list_tables().unwrap(), left);
    let mut w = t.db().begin_write().unwrap();
    for n in &left {
        assert!(w.delete_table(n).unwrap());
    }
    w.commit().unwrap();
    for _ in 0..3 {
        t.db().begin_write().unwrap().commit().unwrap();
    }
    assert_heap_empty(t.db(), "all tables deleted");
    assert_eq!(t.db().stat().unwrap().tables, 0);
}

/// The whole contents of table "t" of the last commit (empty if none).
fn contents(db: &Database) -> Model {
    let r = db.begin_read().unwrap();
    let Ok(tab) = r.open_table("t") else {
        return Model::new();
    };
    common::collect(tab.iter().unwrap()).into_iter().collect()
}

/// A transaction of the crash tests: inserts that split leaves between
/// keys with long separators (copies made), removals that merge and
/// redistribute them (copies freed), and overwrites; `step` picks which.
fn separator_txn(w: &mut larch::WriteTxn, step: u32) -> larch::Result<()> {
    let mut tab = w.open_table("t")?;
    match step % 3 {
        0 => {
            for i in 0..60 {
                let id = step * 1000 + i;
                tab.insert(&twin_key(300, id), &seeded_bytes(u64::from(id), 40))?;
            }
        }
        1 => {
            for i in 0..45 {
                let id = (step - 1) * 1000 + i;
                tab.remove(&twin_key(300, id))?;
            }
        }
        _ => {
            for i in 45..60 {
                let id = (step - 2) * 1000 + i;
                tab.insert(&twin_key(300, id), &seeded_bytes(u64::from(id) + 7, 700))?;
            }
        }
    }
    Ok(())
}

/// A database at 512-byte pages with a few hundred keys of 300 bytes that
/// share all but their last four (every separator a long copy).
fn separator_base(path: &std::path::Path) {
    // SAFETY: the test owns the file.
    let db = unsafe { larch::Options::new().page_size(512).open(path) }.unwrap();
    let w = db.begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for i in 0..300u32 {
            tab.insert(
                &twin_key(300, 500_000 + i * 3),
                &seeded_bytes(u64::from(i), 30),
            )
            .unwrap();
        }
    }
    w.commit().unwrap();
}

/// Held: every write, sync and resize of a commit that makes, frees and
/// moves long separator copies fails in turn (EIO, a short write, ENOSPC):
/// the failure comes back as an error, and the file reopens to the state
/// before or after the transaction with `check` clean and nothing leaked.
#[test]
fn failed_writes_of_commits_with_long_separators() {
    use larch::testing::faults::{Fault, Kind, Trap};
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    separator_base(&base);
    for step in 0..3u32 {
        // The state before and after the transaction.
        let before_path = dir.path().join(format!("before{step}"));
        std::fs::copy(&base, &before_path).unwrap();
        let before = {
            let db = common::open(&before_path, 512);
            for s in 0..step {
                let mut w = db.begin_write().unwrap();
                separator_txn(&mut w, s).unwrap();
                w.commit().unwrap();
            }
            contents(&db)
        };
        let after = {
            let db = common::open(&before_path, 512);
            let mut w = db.begin_write().unwrap();
            separator_txn(&mut w, step).unwrap();
            w.commit().unwrap();
            let c = contents(&db);
            drop(db);
            c
        };
        // `before_path` is now one commit further: rebuild it.
        std::fs::copy(&base, &before_path).unwrap();
        {
            let db = common::open(&before_path, 512);
            for s in 0..step {
                let mut w = db.begin_write().unwrap();
                separator_txn(&mut w, s).unwrap();
                w.commit().unwrap();
            }
        }
        for (kind, fault) in [
            (Kind::Write, Fault::Eio),
            (Kind::Write, Fault::Short),
            (Kind::Sync, Fault::Eio),
            (Kind::Resize, Fault::NoSpace),
        ] {
            for n in 1.. {
                let path = dir.path().join("work");
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(dir.path().join("work-lock"));
                std::fs::copy(&before_path, &path).unwrap();
                let trap = Trap::new();
                let hook = trap.clone();
                let opts = larch::Options::new()
                    .page_size(512)
                    .storage(move |f| Ok(hook.storage(f)));
                // SAFETY: the test owns the file.
                let db = unsafe { opts.open(&path) }.unwrap();
                trap.arm(kind, fault, n);
                let r = db
                    .begin_write()
                    .and_then(|mut w| separator_txn(&mut w, step).and_then(|()| w.commit()));
                let fired = trap.fired() > 0;
                trap.disarm();
                if !fired {
                    r.unwrap();
                    eprintln!("step {step} {kind:?} {fault:?}: {n} sites");
                    break;
                }
                assert!(r.is_err() || kind == Kind::Resize, "{kind:?} {n}: {r:?}");
                drop(db);
                let db = common::open(&path, 512);
                let got = contents(&db);
                assert!(
                    got == before || got == after,
                    "step {step} {kind:?} {fault:?} {n}: neither before nor after"
                );
                assert_clean(&db);
                assert!(n < 10_000);
            }
        }
    }
}

/// Held: a power loss at every sync of commits that make and free long
/// separator copies, with the pending writes all lost, all made, or torn
/// sector by sector (some garbled): each image opens to the last
/// acknowledged commit or the one in flight, with `check` clean.
#[test]
fn power_loss_during_commits_with_long_separators() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    separator_base(&path);
    use common::crash_images::{CrashImages, crash_images};
    let CrashImages {
        recorder,
        images,
        acked,
    } = crash_images(3);
    let rec = recorder.clone();
    let opts = larch::Options::new()
        .page_size(512)
        .storage(move |f| rec.wrap(f));
    // SAFETY: the test owns the file.
    let db = unsafe { opts.open(&path) }.unwrap();
    let mut states = vec![contents(&db)];
    for step in 0..6u32 {
        let mut w = db.begin_write().unwrap();
        separator_txn(&mut w, step).unwrap();
        w.commit().unwrap();
        states.push(contents(&db));
        *acked.lock().unwrap() += 1;
    }
    drop(db);
    let images = std::mem::take(&mut *images.lock().unwrap());
    assert!(images.len() > 20, "{}", images.len());
    eprintln!("{} images", images.len());
    for (n, (image, k)) in images.iter().enumerate() {
        let p = dir.path().join(format!("crash{n}"));
        std::fs::write(&p, image).unwrap();
        let db = common::open(&p, 512);
        let got = contents(&db);
        assert!(
            got == states[*k] || got == states[(k + 1).min(states.len() - 1)],
            "image {n}: not commit {k} or the next"
        );
        assert_clean(&db);
    }
}

// ---------------------------------------------------------------------------
// Crafted files.
// ---------------------------------------------------------------------------

/// A long key's reference in an image: where its 16 bytes lie, the page
/// holding the cell, and whether the cell is a branch's.
#[derive(Clone, Copy, Debug)]
struct LongRef {
    /// Offset in the image of the cell's start.
    cell: usize,
    /// Offset in the image of the 16-byte reference.
    at: usize,
    page: u64,
    branch: bool,
    /// The key's length, and whether its place is a run (offset 0).
    len: u32,
    run: bool,
}

/// Every long key's reference (leaf cells with flag bit 2, branch cells with
/// `key_len` bit 15) in the pages the newest commit of `image` reaches.
fn long_refs(image: &[u8], ps: usize) -> Vec<LongRef> {
    let state = larch::testing::image_state(image, ps)
        .into_iter()
        .max_by_key(|s| s.txn_id)
        .unwrap();
    let reachable = state.reachable.expect("a sound image");
    let mut out = Vec::new();
    for p in reachable {
        let base = p as usize * ps;
        let page = &image[base..base + ps];
        let kind = page[0];
        if kind != 1 && kind != 2 {
            continue;
        }
        let count = u16::from_le_bytes([page[2], page[3]]) as usize;
        for i in 0..count {
            let off = u16::from_le_bytes([page[24 + 2 * i], page[25 + 2 * i]]) as usize;
            let r = if kind == 2 {
                if page[off] & 4 == 0 {
                    continue;
                }
                let klen = u16::from_le_bytes([page[off + 2], page[off + 3]]) as usize;
                off + 8 + klen
            } else {
                let kl = u16::from_le_bytes([page[off + 8], page[off + 9]]);
                if kl & 0x8000 == 0 {
                    continue;
                }
                off + 10 + usize::from(kl & 0x7fff) - 16
            };
            let len = u32::from_le_bytes(page[r..r + 4].try_into().unwrap());
            let o = u32::from_le_bytes(page[r + 12..r + 16].try_into().unwrap());
            out.push(LongRef {
                cell: base + off,
                at: base + r,
                page: p,
                branch: kind == 1,
                len,
                run: o == 0,
            });
        }
    }
    out
}

/// Keys of the crafted-file tests' table "t": 120 keys of 300 bytes that
/// share all but their last four (packed, with long separators), four keys
/// of 64 KiB that differ in their last byte (runs, with separators that are
/// runs), and short keys.
fn crafted_model() -> Model {
    let mut m = Model::new();
    for i in 0..120u32 {
        m.insert(twin_key(300, i * 2), seeded_bytes(u64::from(i), 20));
    }
    for i in 0..12u8 {
        let mut k = vec![b'z'; 65_536];
        k[65_535] = i * 2;
        m.insert(k, seeded_bytes(u64::from(i) + 500, 10));
    }
    for i in 0..40u32 {
        m.insert(format!("a{i:03}").into_bytes(), b"short".to_vec());
    }
    m
}

/// Runs `f`, turning a panic into a message.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{what}: panicked: {msg}")
    })
}

/// Whether `r` is fine for a crafted file: success, or `Corrupted` (or a
/// transaction failed by an earlier `Corrupted`).
fn ok_or_corrupted<T>(r: &larch::Result<T>) -> bool {
    matches!(
        r,
        Ok(_) | Err(Error::Corrupted { .. }) | Err(Error::TxnFailed)
    )
}

/// Every operation on a crafted file: reads of every key, iteration both
/// ways, ranges from long bounds, a cursor's seeks, inserts next to and
/// over the crafted key, removals that merge leaves (freeing separators),
/// the table's deletion, compaction and `check`. Returns the problems:
/// panics, and errors other than `Corrupted`.
fn exercise(path: &std::path::Path, model: &Model, victim: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut note = |what: &str, r: Result<Option<String>, String>| match r {
        Ok(None) => {}
        Ok(Some(e)) => problems.push(format!("{what}: {e}")),
        Err(p) => problems.push(p),
    };
    let check = |r: larch::Result<()>| -> Option<String> {
        (!ok_or_corrupted(&r)).then(|| format!("{r:?}"))
    };
    let open = || {
        // SAFETY: the test owns the file.
        unsafe { larch::Options::new().page_size(512).open(path) }
    };
    let db = match no_panic("open", open) {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => {
            if !matches!(e, Error::Corrupted { .. }) {
                problems.push(format!("open: {e:?}"));
            }
            return problems;
        }
        Err(p) => return vec![p],
    };
    note(
        "reads",
        no_panic("reads", || {
            let r = db.begin_read().unwrap();
            let tab = r.open_table("t").unwrap();
            for k in model.keys() {
                if let Some(e) = check(tab.get(k).map(drop)) {
                    return Some(e);
                }
            }
            check(
                tab.iter()
                    .and_then(|mut it| it.try_for_each(|e| e.map(drop))),
            )
            .or_else(|| {
                check(
                    tab.iter()
                        .and_then(|it| it.rev().try_for_each(|e| e.map(drop))),
                )
            })
            .or_else(|| {
                let lo: &[u8] = victim;
                check(
                    tab.range(lo..)
                        .and_then(|mut it| it.try_for_each(|e| e.map(drop))),
                )
            })
            .or_else(|| {
                let mut c = tab.cursor();
                check(c.seek(victim).map(drop))
                    .or_else(|| check(c.prev().map(drop)))
                    .or_else(|| check(c.last().map(drop)))
                    .or_else(|| check(c.prev().map(drop)))
            })
        }),
    );
    note("check", no_panic("check", || check(db.check().map(drop))));
    // Writes, each in a transaction of its own.
    let keys: Vec<&Vec<u8>> = model.keys().collect();
    type Op<'a> = Box<dyn Fn(&mut larch::TableMut<'_>) -> larch::Result<()> + 'a>;
    let ops: Vec<(&str, Op)> = vec![
        (
            "overwrite the victim",
            Box::new(|t| t.insert(victim, b"new value").map(drop)),
        ),
        (
            "remove the victim",
            Box::new(|t| t.remove(victim).map(drop)),
        ),
        (
            "insert next to the victim",
            Box::new(|t| {
                let mut k = victim.to_vec();
                if k.len() < 65_536 {
                    k.push(0);
                    t.insert(&k, &[7u8; 300])?;
                    k.pop();
                }
                *k.last_mut().unwrap() ^= 1;
                t.insert(&k, b"v").map(drop)
            }),
        ),
        (
            "remove half",
            Box::new(|t| {
                for k in keys.iter().step_by(2) {
                    t.remove(k)?;
                }
                Ok(())
            }),
        ),
        (
            "remove all",
            Box::new(|t| {
                for k in &keys {
                    t.remove(k)?;
                }
                Ok(())
            }),
        ),
    ];
    for (what, op) in &ops {
        note(
            what,
            no_panic(what, || {
                let r = db.begin_write().and_then(|w| {
                    let mut t = w.open_table("t")?;
                    op(&mut t)?;
                    drop(t);
                    w.commit()
                });
                check(r).or_else(|| check(db.check().map(drop)))
            }),
        );
    }
    note(
        "delete table",
        no_panic("delete table", || {
            let r = db.begin_write().and_then(|mut w| {
                w.delete_table("t")?;
                w.commit()
            });
            check(r)
        }),
    );
    note(
        "compact",
        no_panic("compact", || {
            check(db.compact().map(drop)).or_else(|| check(db.check().map(drop)))
        }),
    );
    problems
}

/// Held: a long key's reference crafted in a committed leaf or branch cell
/// (its length 0, the first bytes' length, below or at the inline limit,
/// off by one, `u32::MAX`; its page 0, a meta, past the file, `u64::MAX`,
/// the node itself; its offset 0, in the segment's header, `u32::MAX`, off
/// by one; another key's place; its first bytes changed; the value's length
/// `u32::MAX`; the cell's flags and `key_len` bits changed): every read,
/// write, removal, the table's deletion, compaction and `check` give
/// `Corrupted` or succeed; none panics.
#[test]
fn crafted_long_key_references_never_panic() {
    let ps = 512usize;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("base");
    let model = crafted_model();
    {
        let db = common::open(&path, 512);
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("t").unwrap();
            for (k, v) in &model {
                t.insert(k, v).unwrap();
            }
        }
        w.commit().unwrap();
        // A second commit, so both metas are sound.
        let w = db.begin_write().unwrap();
        w.open_table("t")
            .unwrap()
            .insert(b"a000", b"again")
            .unwrap();
        w.commit().unwrap();
        assert_clean(&db);
    }
    let mut model = model;
    model.insert(b"a000".to_vec(), b"again".to_vec());
    let base = std::fs::read(&path).unwrap();
    let refs = long_refs(&base, ps);
    let pick = |branch: bool, run: bool| {
        *refs
            .iter()
            .find(|r| r.branch == branch && r.run == run)
            .unwrap_or_else(|| panic!("no long ref branch={branch} run={run}: {refs:?}"))
    };
    let victims = [
        pick(false, false),
        pick(false, true),
        pick(true, false),
        pick(true, true),
    ];
    let hw = common::heap_image::metas_high_water(&path, 512);
    let mut problems = Vec::new();
    let mut unnoticed = Vec::new();
    let mut crafted = 0;
    for v in victims {
        let other = *refs
            .iter()
            .find(|r| r.at != v.at && r.run == v.run)
            .unwrap();
        // The whole key the cell names, for the operations aimed at it.
        let victim_key: Vec<u8> = model
            .keys()
            .find(|k| {
                let prefix_at = if v.branch { v.cell + 10 } else { v.cell + 8 };
                k.len() == v.len as usize && k[..32] == base[prefix_at..prefix_at + 32]
            })
            .cloned()
            .unwrap_or_else(|| twin_key(300, 1));
        type Craft = Box<dyn Fn(&mut [u8])>;
        let at = v.at;
        let set_len =
            move |im: &mut [u8], len: u32| im[at..at + 4].copy_from_slice(&len.to_le_bytes());
        let set_page =
            move |im: &mut [u8], p: u64| im[at + 4..at + 12].copy_from_slice(&p.to_le_bytes());
        let set_off =
            move |im: &mut [u8], o: u32| im[at + 12..at + 16].copy_from_slice(&o.to_le_bytes());
        let orig_off = u32::from_le_bytes(base[at + 12..at + 16].try_into().unwrap());
        let mut crafts: Vec<(String, Craft)> = Vec::new();
        for len in [
            0,
            1,
            31,
            32,
            33,
            127,
            128,
            129,
            v.len - 1,
            v.len + 1,
            u32::MAX,
        ] {
            crafts.push((format!("len {len}"), Box::new(move |im| set_len(im, len))));
        }
        for p in [0, 1, hw, hw + 1000, u64::MAX, v.page, v.page + 1] {
            crafts.push((format!("page {p}"), Box::new(move |im| set_page(im, p))));
        }
        for o in [
            0,
            1,
            23,
            24,
            orig_off.wrapping_add(1),
            orig_off.wrapping_sub(1),
            u32::MAX,
        ] {
            crafts.push((format!("offset {o}"), Box::new(move |im| set_off(im, o))));
        }
        let o_at = other.at;
        crafts.push((
            "another key's place".into(),
            Box::new(move |im| {
                let src: [u8; 12] = im[o_at + 4..o_at + 16].try_into().unwrap();
                im[at + 4..at + 16].copy_from_slice(&src);
            }),
        ));
        let cell = v.cell;
        if v.branch {
            crafts.push((
                "first byte changed".into(),
                Box::new(move |im| im[cell + 10] ^= 0x55),
            ));
            let kl = u16::from_le_bytes([base[cell + 8], base[cell + 9]]);
            for new in [
                kl & 0x7fff,
                0x8000 | 15,
                0x8000 | 16,
                0x8000 | 17,
                kl + 1,
                0xffff,
            ] {
                crafts.push((
                    format!("branch key_len {new:#x}"),
                    Box::new(move |im| im[cell + 8..cell + 10].copy_from_slice(&new.to_le_bytes())),
                ));
            }
        } else {
            crafts.push((
                "first byte changed".into(),
                Box::new(move |im| im[cell + 8] ^= 0x55),
            ));
            for vlen in [1u32, 1000, 70_000, u32::MAX - 65_536, u32::MAX] {
                crafts.push((
                    format!("val_len {vlen}"),
                    Box::new(move |im| im[cell + 4..cell + 8].copy_from_slice(&vlen.to_le_bytes())),
                ));
            }
            for flags in [0u8, 1, 2, 5, 6, 7, 0xff] {
                crafts.push((
                    format!("flags {flags}"),
                    Box::new(move |im| im[cell] = flags),
                ));
            }
            for klen in [0u16, 16, 31, 33, 200, 0xffff] {
                crafts.push((
                    format!("leaf key_len {klen}"),
                    Box::new(move |im| im[cell + 2..cell + 4].copy_from_slice(&klen.to_le_bytes())),
                ));
            }
        }
        for (what, craft) in crafts {
            let mut image = base.clone();
            craft(&mut image);
            larch::testing::restamp(&mut image, ps, v.page);
            let slot = common::heap_image::newest_slot(&image, ps);
            assert!(larch::testing::edit_meta(&mut image, ps, slot, |m| m
                .seal
                .clear()));
            let p = dir.path().join(format!("crafted{crafted}"));
            crafted += 1;
            std::fs::write(&p, &image).unwrap();
            let kind = if v.branch { "branch" } else { "leaf" };
            let run = if v.run { "run" } else { "packed" };
            let clean = no_panic("check_report", || {
                let db = common::open(&p, 512);
                db.check_report().map(|r| r.errors.is_empty())
            });
            if matches!(clean, Ok(Ok(true))) {
                unnoticed.push(format!("{kind} {run} {what}"));
            }
            for problem in exercise(&p, &model, &victim_key) {
                problems.push(format!("{kind} {run} {what}: {problem}"));
            }
            let _ = std::fs::remove_file(&p);
        }
    }
    assert!(crafted > 80, "{crafted}");
    eprintln!("check found nothing in: {unnoticed:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Found a defect (fixed): `check` passed a long key longer than any key
/// larch accepts, and such a key could not be removed. The long-key reference's
/// length field (a `u32`) is checked by `check` only from below
/// (src/check.rs:283-292, `whole_key`: longer than `max_inline_key`, the
/// full `long_prefix`, starting with it) and by the readers only against
/// its place (src/view.rs, `long_key_of`). Crafted to 65,537 on a 64 KiB
/// key whose place is a run (its bytes and a 10-byte value: the run keeps
/// its page count, so `run_len` agrees), the key reads back 65,537 bytes
/// long, in order, and `check` reports nothing; yet `TableMut::remove`
/// answers `false` for it without looking (src/table.rs:228, `key.len() >
/// MAX_KEY`), so the entry can only go with its table, and a dump of the
/// table cannot be loaded (cli/src/dump.rs refuses keys past `MAX_KEY`).
/// Fixed: a node's long key longer than `MAX_KEY` is `Corrupted` when read
/// (`Node::long_node_key`), so readers and `check` refuse it.
#[test]
fn check_refuses_a_long_key_longer_than_64_kib() {
    let ps = 512usize;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let key = |i: u8| {
        let mut k = vec![b'z'; 65_536];
        k[65_535] = i;
        k
    };
    {
        let db = common::open(&path, 512);
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("t").unwrap();
            for i in 0..3u8 {
                t.insert(&key(i), &[i; 10]).unwrap();
            }
        }
        w.commit().unwrap();
        assert_clean(&db);
    }
    let mut image = std::fs::read(&path).unwrap();
    let refs = long_refs(&image, ps);
    let last = *refs
        .iter()
        .filter(|r| !r.branch && r.run)
        .max_by_key(|r| r.cell)
        .unwrap();
    assert_eq!(last.len, 65_536);
    image[last.at..last.at + 4].copy_from_slice(&65_537u32.to_le_bytes());
    larch::testing::restamp(&mut image, ps, last.page);
    let slot = common::heap_image::newest_slot(&image, ps);
    assert!(larch::testing::edit_meta(&mut image, ps, slot, |m| m
        .seal
        .clear()));
    std::fs::write(&path, &image).unwrap();
    let db = common::open(&path, 512);
    // A key one byte past the limit is not handed out: the read that
    // reaches it is refused, and so is the file by `check`.
    {
        let r = db.begin_read().unwrap();
        let t = r.open_table("t").unwrap();
        let read: Vec<_> = t.iter().unwrap().collect();
        assert!(
            read.iter()
                .any(|e| matches!(e, Err(larch::Error::Corrupted { .. }))),
            "the crafted key was read"
        );
        assert!(
            read.iter()
                .all(|e| e.as_ref().is_err() || e.as_ref().unwrap().0.len() <= 65_536)
        );
    }
    let report = db.check_report().unwrap();
    assert!(
        !report.errors.is_empty(),
        "check passes a key of 65,537 bytes"
    );
}

/// Held: `ReadTxn::copy_to`, plain and compacting, of a database of long
/// keys with long separators (packed and runs) and long table names at
/// 512-byte pages: each copy opens, `check` is clean and every table reads
/// back; the compacting copy's sorted reload makes its separators anew.
#[test]
fn copies_of_long_keys_and_long_names() {
    let t = TestDb::new(512);
    let model = crafted_model();
    let names = ["t".to_owned(), "n".repeat(5000), "m".repeat(65_536)];
    let w = t.db().begin_write().unwrap();
    for name in &names {
        let mut tab = w.open_table(name).unwrap();
        for (k, v) in &model {
            tab.insert(k, v).unwrap();
        }
    }
    w.commit().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for compact in [false, true] {
        let dest = dir.path().join(format!("copy-{compact}"));
        t.db()
            .begin_read()
            .unwrap()
            .copy_to(&dest, compact)
            .unwrap();
        let db = common::open(&dest, 512);
        assert_clean(&db);
        let mut want = names.to_vec();
        want.sort();
        assert_eq!(db.begin_read().unwrap().list_tables().unwrap(), want);
        for name in &names {
            assert_holds(&db, name, &model);
        }
    }
}

/// Held: a 64 KiB key with values of several megabytes at 512-byte pages
/// (one run of about 10,000 pages holds both), overwritten with a short
/// value and removed: reads back whole, `check` clean, the run given back.
#[test]
fn a_64_kib_key_with_a_value_of_megabytes() {
    let t = TestDb::new(512);
    let key = vec![0xA5u8; 65_536];
    let big = seeded_bytes(9, 5 << 20);
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        tab.insert(&key, &big).unwrap();
        let mut k2 = key.clone();
        k2[65_535] = 0;
        tab.insert(&k2, b"neighbour").unwrap();
        assert_eq!(tab.get(&key).unwrap(), Some(&big[..]));
    }
    w.commit().unwrap();
    assert_clean(t.db());
    {
        let r = t.db().begin_read().unwrap();
        let tab = r.open_table("t").unwrap();
        assert_eq!(tab.get(&key).unwrap(), Some(&big[..]));
        let (k, v) = tab.iter().unwrap().next_back().unwrap().unwrap();
        assert_eq!((k, v), (&key[..], &big[..]));
    }
    let w = t.db().begin_write().unwrap();
    w.open_table("t").unwrap().insert(&key, b"small").unwrap();
    w.commit().unwrap();
    assert_clean(t.db());
    let mut w = t.db().begin_write().unwrap();
    assert!(w.delete_table("t").unwrap());
    w.commit().unwrap();
    for _ in 0..3 {
        t.db().begin_write().unwrap().commit().unwrap();
    }
    assert_heap_empty(t.db(), "after the table went");
}
