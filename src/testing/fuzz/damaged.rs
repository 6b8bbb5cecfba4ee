//! The damaged-file targets `open_bytes`, `meta_pages` and `page_bytes`: the
//! file images they build from their input, and the sequence they run on
//! each (the `testing::fuzz` documentation, "Damaged files").

use super::act::act;
use super::findings::count;
use super::read_write::exercise;
use super::scratch::{Scratch, open, open_with, write_image};
use crate::testing::{Model, Rng, read_model};

/// The damaged-file sequence on `image` (the `testing::fuzz` documentation,
/// "Damaged files").
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
            let w = db.begin_write().expect("write");
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
