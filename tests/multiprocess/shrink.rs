//! A process reads on while another deletes most of the data and compacts:
//! its old snapshot (and a value slice of it) stays intact and keeps the
//! file at least as long as the snapshot's pages, and once it ends the next
//! `compact` gives the tail back.

use std::path::Path;

use larch::Database;
use larch::testing::report;

use crate::common::TestDb;
use crate::{digest, field, from_parent, say, spawn};

/// Bytes of each value: a two-page overflow run at 1 KiB pages.
const LEN: usize = 1500;

fn value(i: u64) -> Vec<u8> {
    i.to_le_bytes().iter().copied().cycle().take(LEN).collect()
}

fn write(db: &Database, keys: &[u64], insert: bool) {
    for chunk in keys.chunks(500) {
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("s").unwrap();
            for &i in chunk {
                if insert {
                    t.insert(&i.to_be_bytes(), &value(i)).unwrap();
                } else {
                    t.remove(&i.to_be_bytes()).unwrap();
                }
            }
        }
        w.commit().unwrap();
    }
}

/// The child: holds a snapshot from the start and, at each line of the
/// parent, checks it and reports the digest of a new one; `drop` ends the
/// old snapshot.
pub fn watcher(path: &Path) {
    let db = crate::open(path);
    let mut first = Some(db.begin_read().unwrap());
    let (n0, d0) = digest(&first.as_ref().unwrap().open_table("s").unwrap()).unwrap();
    let slice = {
        let held = first.as_ref().unwrap().open_table("s").unwrap();
        held.get(&7u64.to_be_bytes()).unwrap().unwrap().to_vec()
    };
    say(&format!("ready n={n0} digest={d0}"));
    for line in from_parent().iter() {
        if line == "drop" {
            first = None;
        }
        let old_ok = first.as_ref().is_none_or(|r| {
            let t = r.open_table("s").unwrap();
            digest(&t).unwrap() == (n0, d0)
                && t.get(&7u64.to_be_bytes()).unwrap() == Some(&slice[..])
        });
        let now = db.begin_read().unwrap();
        let (n, d) = digest(&now.open_table("s").unwrap()).unwrap();
        say(&format!(
            "{} n={n} digest={d}",
            if old_ok { "ok" } else { "bad" }
        ));
    }
}

#[test]
fn a_process_reads_on_while_another_compacts() {
    let t = TestDb::new(crate::PAGE);
    let db = t.db();
    let all: Vec<u64> = (0..6000).collect();
    write(db, &all, true);
    let held_pages = db.stat().unwrap().pages;
    let mut child = spawn("shrink_watcher", &t.path(), "");
    let said = child.expect("ready");
    assert_eq!(field(&said, "n"), Some(6000));
    let (gone, kept): (Vec<u64>, Vec<u64>) = all.iter().partition(|&&i| i % 10 != 3);
    write(db, &gone, false);
    let pinned = db.compact().unwrap();
    let len = std::fs::metadata(t.path()).unwrap().len();
    assert!(len >= held_pages * u64::from(crate::PAGE));
    let want = digest(&db.begin_read().unwrap().open_table("s").unwrap()).unwrap();
    child.send("check");
    let said = child.expect("ok");
    assert_eq!(
        (field(&said, "n"), field(&said, "digest")),
        (Some(want.0), Some(want.1))
    );
    child.send("drop");
    child.expect("ok");
    let returned = db.compact().unwrap();
    let after = std::fs::metadata(t.path()).unwrap().len();
    let s = db.stat().unwrap();
    let live = s.pages - s.free_pages;
    assert!(returned > 0);
    assert!(
        after <= live * u64::from(crate::PAGE) * 12 / 10,
        "{after} bytes, {live} pages in use"
    );
    child.send("check");
    let said = child.expect("ok");
    assert_eq!(field(&said, "n"), Some(kept.len() as u64));
    assert_eq!(field(&said, "digest"), Some(want.1));
    child.finish();
    db.check().unwrap();
    report(&format!(
        "RELIABILITY suite=multiprocess part=shrink held_bytes={len} returned_while_held={pinned} \
         returned_after={returned} file_bytes={after} live_pages={live}"
    ));
}
