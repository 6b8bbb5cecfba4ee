//! Shrunk failures of the model test, kept as permanent tests.

mod common;

use common::TestDb;

/// An overflowing value replaced by an inline one in the same transaction.
#[test]
fn overflow_value_replaced_inline_in_one_transaction() {
    let mut t = TestDb::new(512);
    let mut w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        tab.insert(b"00435", &[9u8; 535]).unwrap();
        tab.insert(b"00435", b"").unwrap();
        assert_eq!(tab.get(b"00435").unwrap(), Some(&b""[..]));
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    assert_eq!(
        r.open_table("t").unwrap().get(b"00435").unwrap(),
        Some(&b""[..])
    );
    drop(r);
    t.reopen();
    let r = t.db().begin_read().unwrap();
    assert_eq!(
        r.open_table("t").unwrap().get(b"00435").unwrap(),
        Some(&b""[..])
    );
    r.check().unwrap();
}
