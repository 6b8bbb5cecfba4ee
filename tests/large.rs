//! Real sizes: a million keys, a 256 MiB value.

mod common;

use common::{Rng, TestDb};

#[test]
fn a_million_keys_in_random_order() {
    let mut t = TestDb::new(4096);
    let n = 1_000_000u64;
    let mut rng = Rng(42);
    // A random permutation of 0..n decides the insertion order.
    let mut order: Vec<u64> = (0..n).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let key = |i: u64| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xABCD).to_be_bytes();
    let value = |i: u64| format!("value-{i}").into_bytes();
    for chunk in order.chunks(100_000) {
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("big").unwrap();
            for &i in chunk {
                tab.insert(&key(i), &value(i)).unwrap();
            }
        }
        w.commit().unwrap();
    }
    t.reopen();
    eprintln!("1M keys: file {} bytes", t.file_size());

    let r = t.db().begin_read().unwrap();
    let tab = r.open_table("big").unwrap();
    assert_eq!(tab.len(), n);
    for i in 0..n {
        assert_eq!(
            tab.get(&key(i)).unwrap(),
            Some(value(i).as_slice()),
            "key {i}"
        );
    }
    let mut sorted: Vec<(u64, [u8; 8])> = (0..n).map(|i| (i, key(i))).collect();
    sorted.sort_by_key(|e| e.1);

    let mut count = 0usize;
    for (e, (i, k)) in tab.iter().unwrap().zip(&sorted) {
        let (got_k, got_v) = e.unwrap();
        assert_eq!(got_k, k);
        assert_eq!(got_v, value(*i).as_slice());
        count += 1;
    }
    assert_eq!(count, n as usize);

    let mut count = 0usize;
    for (e, (i, k)) in tab.iter().unwrap().rev().zip(sorted.iter().rev()) {
        let (got_k, got_v) = e.unwrap();
        assert_eq!(got_k, k);
        assert_eq!(got_v, value(*i).as_slice());
        count += 1;
    }
    assert_eq!(count, n as usize);
    let report = r.check().unwrap();
    assert_eq!(report.entries, n);
    eprintln!("1M keys: {report:?}");
}

#[test]
fn a_256_mib_value_round_trips() {
    let mut t = TestDb::new(4096);
    let len = 256 << 20;
    let big: Vec<u8> = (0..len)
        .map(|i: usize| (i.wrapping_mul(31) >> 7) as u8)
        .collect();
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_table("blobs").unwrap();
        tab.insert(b"small", b"x").unwrap();
        tab.insert(b"big", &big).unwrap();
        assert_eq!(tab.get(b"big").unwrap().map(<[u8]>::len), Some(len));
    }
    w.commit().unwrap();
    t.reopen();
    eprintln!("256 MiB value: file {} bytes", t.file_size());
    {
        let r = t.db().begin_read().unwrap();
        let tab = r.open_table("blobs").unwrap();
        let got = tab.get(b"big").unwrap().unwrap();
        assert!(got == big.as_slice());
        assert_eq!(tab.get(b"small").unwrap(), Some(&b"x"[..]));
    }
    // Replacing the value again and again reuses the freed runs: the file
    // stops growing once the reuse rule lets the older runs go.
    let mut sizes = Vec::new();
    for round in 0..6u8 {
        let w = t.db().begin_write().unwrap();
        {
            let mut tab = w.open_table("blobs").unwrap();
            let mut v = big.clone();
            v[12345] = round;
            tab.insert(b"big", &v).unwrap();
        }
        w.commit().unwrap();
        sizes.push(t.file_size());
    }
    eprintln!("256 MiB value replaced 6 times: file sizes {sizes:?}");
    // At most three versions are alive (the new one and the two the metas
    // reach), so the file levels off below four copies.
    assert_eq!(sizes[5], sizes[3], "file keeps growing: {sizes:?}");
    assert!(sizes[5] < 4 * len as u64, "file too large: {sizes:?}");
    let r = t.db().begin_read().unwrap();
    let got = r.open_table("blobs").unwrap().get(b"big").unwrap().unwrap();
    assert_eq!(got.len(), len);
    assert_eq!(got[12345], 5);
    assert!(got[..12345] == big[..12345] && got[12346..] == big[12346..]);
    let report = r.check().unwrap();
    assert_eq!(report.overflow_pages, 65537);
}
