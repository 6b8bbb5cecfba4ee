//! A process reading while another grows the file through many new maps: its
//! snapshot from before the growth, and a value slice of it, stay as they
//! were, and each new snapshot it takes sees the grown file whole.

use std::path::Path;

use larch::Database;
use larch::testing::report;

use crate::common::TestDb;
use crate::{field, from_parent, say, spawn};

/// Rounds, each of which at least doubles the pages in use.
const ROUNDS: usize = 12;

/// Bytes of each value: four pages, an overflow run.
const LEN: usize = 4096;

fn value(i: u64) -> Vec<u8> {
    i.to_le_bytes().iter().copied().cycle().take(LEN).collect()
}

/// Commits keys `from..to` of table "g", 64 a commit.
fn load(db: &Database, from: u64, to: u64) {
    for start in (from..to).step_by(64) {
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("g").unwrap();
            for i in start..to.min(start + 64) {
                t.insert(&i.to_be_bytes(), &value(i)).unwrap();
            }
        }
        w.commit().unwrap();
    }
}

/// Whether table "g" of `r` holds exactly keys `0..n` with their values.
fn holds(r: &larch::ReadTxn, n: u64) -> bool {
    let t = r.open_table("g").unwrap();
    t.len() == n
        && (0..n).all(|i| {
            t.get(&i.to_be_bytes())
                .unwrap()
                .is_some_and(|v| v == value(i))
        })
}

/// The child: holds a snapshot and a value slice of it from the start, and
/// checks a new snapshot each time the parent says how many keys there are.
pub fn watcher(path: &Path) {
    let db = crate::open(path);
    let first = db.begin_read().unwrap();
    let table = first.open_table("g").unwrap();
    let n0 = table.len();
    let slice = table.get(&0u64.to_be_bytes()).unwrap().unwrap();
    let address = slice.as_ptr();
    say(&format!("ready n={n0}"));
    for line in from_parent().iter() {
        let n = field(&line, "n").unwrap();
        let now = db.begin_read().unwrap();
        let ok =
            holds(&now, n) && holds(&first, n0) && slice.as_ptr() == address && slice == value(0);
        say(&format!(
            "{} map={}",
            if ok { "ok" } else { "bad" },
            now.stat().unwrap().map_size
        ));
    }
}

#[test]
fn a_process_reads_on_while_another_grows_the_file_past_its_maps() {
    let t = TestDb::new(crate::PAGE);
    let db = t.db();
    load(db, 0, 8);
    let mut child = spawn("grow_watcher", &t.path(), "");
    assert_eq!(field(&child.expect("ready"), "n"), Some(8));
    let mut n = 8;
    let mut maps = Vec::new();
    for _ in 0..ROUNDS {
        // At least doubles the pages in use.
        let stat = db.stat().unwrap();
        let to = n + stat.pages * u64::from(stat.page_size) / LEN as u64 + 1;
        load(db, n, to);
        n = to;
        child.send(&format!("n={n}"));
        let said = child.expect("ok");
        maps.push(field(&said, "map").unwrap());
    }
    child.finish();
    // The child mapped anew as the file grew (its first map covered the
    // file's first megabyte, which the first rounds fill).
    let remaps = maps.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(remaps >= 8, "{maps:?}");
    // Every round's check passed (`expect("ok")`), or the test failed.
    report(&format!(
        "RELIABILITY suite=multiprocess part=growth rounds={ROUNDS} remaps={remaps} file_bytes={} \
         child_map_bytes={}",
        std::fs::metadata(t.path()).unwrap().len(),
        maps.last().unwrap()
    ));
    db.check().unwrap();
}
