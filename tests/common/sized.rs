//! A table "t" of `u32` keys whose values come in three sizes (inline, a
//! two-page overflow run and a longer one at 4 KiB pages), loaded, touched
//! and checked the same way by the tests of shrinking and closing.

use larch::Database;

pub fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

/// Values of three sizes: inline, a two-page overflow run and a longer one.
pub fn value(i: u32) -> Vec<u8> {
    let len = match i % 3 {
        0 => 100,
        1 => 5000,
        _ => 9000,
    };
    i.to_le_bytes().iter().copied().cycle().take(len).collect()
}

/// Inserts `keys` into table "t", `per_commit` to a transaction.
pub fn load(db: &Database, keys: impl Iterator<Item = u32>, per_commit: usize) {
    let keys: Vec<u32> = keys.collect();
    for chunk in keys.chunks(per_commit) {
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table("t").unwrap();
            for &i in chunk {
                t.insert(&key(i), &value(i)).unwrap();
            }
        }
        w.commit().unwrap();
    }
}

/// A small commit to another table.
pub fn touch(db: &Database, i: u32) {
    let w = db.begin_write().unwrap();
    w.open_table("u").unwrap().insert(&key(i), b"x").unwrap();
    w.commit().unwrap();
}

/// Checks that `db`'s last commit holds exactly `keys` in table "t", and
/// passes `check` with no leaked page.
pub fn holds(db: &Database, keys: &[u32]) {
    let r = db.begin_read().unwrap();
    let t = r.open_table("t").unwrap();
    assert_eq!(t.len(), keys.len() as u64);
    for &i in keys {
        assert_eq!(t.get(&key(i)).unwrap(), Some(&value(i)[..]), "key {i}");
    }
    let report = r.check().unwrap();
    assert_eq!(report.leaked_pages, 0);
}
