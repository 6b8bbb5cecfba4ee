//! [`exercise`]: reads, checks and writes on a database that opened.

use crate::Database;

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
