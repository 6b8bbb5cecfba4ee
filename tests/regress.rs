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

/// Removing the only key of a leaf that a sorted append split off, under a
/// branch that the same append left with one child, left an empty leaf in the
/// tree (the rebalance had no sibling to merge with at that level).
#[test]
fn removing_the_key_of_an_appended_leaf_leaves_no_empty_leaf() {
    let mut t = TestDb::new(512);
    let inserts: [(u16, usize); 22] = [
        (430, 31),
        (238, 0),
        (438, 18),
        (126, 0),
        (530, 55),
        (264, 46),
        (277, 54),
        (613, 181),
        (55, 48),
        (251, 1),
        (43, 51),
        (140, 0),
        (170, 61),
        (286, 24),
        (476, 2),
        (380, 45),
        (608, 101),
        (252, 1),
        (588, 0),
        (178, 51),
        (112, 1),
        (595, 8),
    ];
    let key = |k: u16| {
        let mut b = format!("{:05}", k % 600).into_bytes();
        if k.is_multiple_of(7) {
            b.resize(100, b'~');
        }
        b
    };
    let mut w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for (k, len) in inserts {
            tab.insert(&key(k), &vec![7u8; len]).unwrap();
        }
        assert!(tab.remove(&key(595)).unwrap());
    }
    w.commit().unwrap();
    t.db().check().unwrap();
    // Every way down to an empty tree stays sound.
    let mut w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("t").unwrap();
        for (k, _) in inserts.iter().rev() {
            tab.remove(&key(*k)).unwrap();
        }
        assert!(tab.is_empty());
    }
    w.commit().unwrap();
    t.reopen();
    t.db().check().unwrap();
}
