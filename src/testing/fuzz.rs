//! The bodies of the fuzz targets. Each takes arbitrary bytes and must never
//! panic, hang or touch memory it should not; the cargo-fuzz targets in
//! `fuzz/` and plain tests over a checked-in corpus both call them
//! (docs/reliability.md, suites 8 and 9).

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

fn open(path: &Path, page_size: u32) -> crate::Result<Database> {
    let opts = Options::new()
        .page_size(page_size)
        .map_size(1 << 30)
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

/// Target `open_bytes`: the input is a whole file. Open it, scan it, check
/// it, write to it.
pub fn open_bytes(data: &[u8]) {
    let scratch = Scratch::new("bytes");
    std::fs::write(&scratch.0, data).expect("write the input");
    if let Ok(db) = open(&scratch.0, 4096) {
        let _ = exercise(&db);
    }
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
/// may cut the file short. Open, scan, check, write.
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
    let scratch = Scratch::new("meta");
    std::fs::write(&scratch.0, &image).expect("write the image");
    if let Ok(db) = open(&scratch.0, 512) {
        let _ = exercise(&db);
    }
}

/// Target `page_bytes`: the input is a list of (offset, byte) edits applied to
/// the non-meta pages of a valid file. Open, scan, check, write.
pub fn page_bytes(data: &[u8]) {
    let mut image = base_image().to_vec();
    let body = image.len() - 1024;
    for edit in data.chunks_exact(4) {
        let at = 1024 + u32::from_le_bytes([edit[0], edit[1], edit[2], 0]) as usize % body;
        image[at] = edit[3];
    }
    let scratch = Scratch::new("pages");
    std::fs::write(&scratch.0, &image).expect("write the image");
    if let Ok(db) = open(&scratch.0, 512) {
        let _ = exercise(&db);
    }
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
