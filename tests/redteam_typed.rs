//! Hostile review of typed tables (format 6, commit 771bcd7): the
//! order-preserving encodings, decoding of crafted bytes, typed ranges,
//! type names in the catalog (crafted, long, deleted and recreated, in
//! aborted and failed transactions, through compaction, copies, heap
//! cleaning and power loss) and zero-copy reads.
//!
//! Tests named `redteam_*` found a defect and fail until it is fixed; tests
//! named `held_*` are attacks the change withstood, kept as guards.
//!
//! Found:
//! - `redteam_tuple_values_with_a_nul_in_a_borrowed_field_are_unreadable`:
//!   a tuple *value* type with a borrowed non-last field (`(&[u8], u64)`,
//!   `(&str, u8)`) accepts a zero byte at insert (`Value::encode` cannot
//!   fail; only `Value::encode_checked` checks), then `get` and `iter` are
//!   `Error::Decode` for it.
//! - `redteam_tuple_decode_trusts_a_user_field_width` (low): the tuple
//!   decode slices `&bytes[at..]` with the width a user `decode_field`
//!   returned, so a user type that over-reports panics inside larch.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use common::heap_image::{assert_clean, newest_slot};
use common::{Rng, TestDb};
use larch::testing::{edit_meta, restamp};
use larch::{Database, Error, Key, Options, TableDefinition, Value};

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

/// A key type whose name is exactly `N` bytes long (distinct per `N`),
/// stored as a `u64`: for type names at and past the catalog's limits.
struct Named<const N: usize>;

impl<const N: usize> Value for Named<N> {
    type SelfType<'a> = u64;
    fn type_name() -> String {
        let mut s = format!("N{N}:");
        while s.len() < N {
            s.push('x');
        }
        s.truncate(N);
        s
    }
    fn encode(v: &u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&v.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> larch::Result<u64> {
        u64::decode(bytes)
    }
}

impl<const N: usize> Key for Named<N> {
    fn encode_field(v: &u64, out: &mut Vec<u8>) {
        Self::encode(v, out);
    }
    fn decode_field(bytes: &[u8]) -> larch::Result<(u64, usize)> {
        u64::decode_field(bytes)
    }
}

fn enc_key<K>(k: &K) -> Vec<u8>
where
    K: 'static + for<'a> Key<SelfType<'a> = K>,
{
    let mut out = Vec::new();
    K::encode_checked(k, &mut out).unwrap();
    out
}

/// Every pair of `values` encodes in the order of the values, and each
/// reads back as itself.
fn assert_order<K>(what: &str, values: &[K])
where
    K: Ord + std::fmt::Debug + 'static + for<'a> Key<SelfType<'a> = K>,
{
    let enc: Vec<Vec<u8>> = values.iter().map(enc_key::<K>).collect();
    for (i, a) in values.iter().enumerate() {
        assert_eq!(
            K::decode(&enc[i]).unwrap(),
            *a,
            "{what}: {a:?} does not read back from {:02x?}",
            enc[i]
        );
        for (j, b) in values.iter().enumerate() {
            assert_eq!(
                enc[i].cmp(&enc[j]),
                a.cmp(b),
                "{what}: {a:?} vs {b:?} encoded {:02x?} vs {:02x?}",
                enc[i],
                enc[j]
            );
        }
    }
}

/// Byte strings that stress the escaping: zero bytes, 0xFF, prefixes.
fn hard_bytes() -> Vec<Vec<u8>> {
    vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![0, 0xFF],
        vec![0, 1],
        vec![1],
        vec![1, 0],
        vec![1, 0, 0],
        vec![0xFF],
        vec![0xFF, 0],
        vec![0xFF, 0xFF],
        vec![0xFF, 0xFF, 0],
    ]
}

fn hard_strs() -> Vec<String> {
    [
        "",
        "\0",
        "\0\0",
        "\0\u{1}",
        "\u{1}",
        "a",
        "a\0",
        "a\0\0",
        "ab",
        "\u{7f}",
        "ÿ",
        "\u{10FFFF}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn opts(ps: u32) -> Options {
    Options::new().page_size(ps).map_size(1 << 28)
}

fn open_at(path: &Path, ps: u32) -> larch::Result<Database> {
    // SAFETY: the test owns the file; only larch handles touch it.
    unsafe { opts(ps).open(path) }
}

// ---------------------------------------------------------------------------
// Encodings: order and round trip.
// ---------------------------------------------------------------------------

/// Held: exhaustive pairs of nested types over values that stress the
/// escaping (Option inside tuples, tuples inside tuples and options,
/// Option of bytes as a non-last field, empty strings, NUL and 0xFF,
/// integer extremes): the encodings sort as the values and read back.
#[test]
fn held_nested_encodings_sort_exhaustively() {
    let b = hard_bytes();
    let s = hard_strs();
    let ob: Vec<Option<Vec<u8>>> = std::iter::once(None)
        .chain(b.iter().cloned().map(Some))
        .collect();

    let t1: Vec<(Option<Vec<u8>>, Vec<u8>)> = ob
        .iter()
        .flat_map(|x| b.iter().map(move |y| (x.clone(), y.clone())))
        .collect();
    assert_order("(Option<bytes>, bytes)", &t1);

    type Nested = ((Vec<u8>, Vec<u8>), Option<Vec<u8>>);
    let t2: Vec<Nested> = b
        .iter()
        .flat_map(|x| b.iter().map(move |y| (x.clone(), y.clone())))
        .flat_map(|p| ob.iter().take(4).map(move |z| (p.clone(), z.clone())))
        .collect();
    assert_order("((bytes, bytes), Option<bytes>)", &t2);

    let os: Vec<Option<String>> = std::iter::once(None)
        .chain(s.iter().cloned().map(Some))
        .collect();
    let mut t3: Vec<Option<(Option<String>, Vec<u8>)>> = vec![None];
    for x in &os {
        for y in b.iter().take(6) {
            t3.push(Some((x.clone(), y.clone())));
        }
    }
    assert_order("Option<(Option<str>, bytes)>", &t3);

    let oob: Vec<Option<Option<Vec<u8>>>> = std::iter::once(None)
        .chain(ob.iter().cloned().map(Some))
        .collect();
    let mut t4 = Vec::new();
    for x in &oob {
        for flag in [false, true] {
            for y in b.iter().take(4) {
                t4.push((x.clone(), flag, y.clone()));
            }
        }
    }
    assert_order("(Option<Option<bytes>>, bool, bytes)", &t4);

    let ints = [
        i128::MIN,
        i128::MIN + 1,
        -256,
        -1,
        0,
        1,
        255,
        i128::MAX - 1,
        i128::MAX,
    ];
    let small = [None, Some(i8::MIN), Some(-1), Some(0), Some(i8::MAX)];
    let t5: Vec<(i128, Option<i8>)> = ints
        .iter()
        .flat_map(|&a| small.iter().map(move |&c| (a, c)))
        .collect();
    assert_order("(i128, Option<i8>)", &t5);

    let mut t6 = Vec::new();
    for x in b.iter().take(6) {
        for y in b.iter().take(6) {
            for z in b.iter().take(4) {
                for w in [[0u8], [0xFF]] {
                    t6.push((x.clone(), (y.clone(), z.clone()), w));
                }
            }
        }
    }
    assert_order("(bytes, (bytes, bytes), [u8; 1])", &t6);

    let t7: Vec<((String, String), String)> = s
        .iter()
        .flat_map(|x| s.iter().map(move |y| (x.clone(), y.clone())))
        .flat_map(|p| {
            ["", "\0", "a"]
                .into_iter()
                .map(move |z| (p.clone(), z.to_owned()))
        })
        .collect();
    assert_order("((str, str), str)", &t7);

    let all_u8: Vec<u8> = (0..=255).collect();
    assert_order("u8", &all_u8);
    let all_i8: Vec<i8> = (-128..=127).collect();
    assert_order("i8", &all_i8);
    assert_order("i16", &[i16::MIN, -1, 0, 1, i16::MAX]);
    assert_order("i32", &[i32::MIN, -1, 0, 1, i32::MAX]);
    assert_order("i64", &[i64::MIN, -1, 0, 1, i64::MAX]);
    assert_order("u128", &[0, 1, u128::MAX - 1, u128::MAX]);
    assert_order("Option<bool>", &[None, Some(false), Some(true)]);
    assert_order("((), u8)", &[((), 0), ((), 1)]);
    assert_order("Option<()>", &[None, Some(())]);
}

/// Held: random six-field keys with every kind of field, escapes
/// included: sorted by their encodings, they are sorted as values.
#[test]
fn held_random_six_field_keys_sort_as_values() {
    type K6 = (
        bool,
        Vec<u8>,
        Option<u16>,
        String,
        (i16, Option<Vec<u8>>),
        Vec<u8>,
    );
    let mut rng = Rng(0x7e57);
    let pick_bytes = |rng: &mut Rng| -> Vec<u8> {
        let len = rng.below(4) as usize;
        (0..len)
            .map(|_| [0u8, 1, 0xFF, b'a'][rng.below(4) as usize])
            .collect()
    };
    let mut keys: Vec<K6> = Vec::new();
    for _ in 0..3000 {
        let s: String = (0..rng.below(3))
            .map(|_| ['\0', 'a', '\u{1}', 'é'][rng.below(4) as usize])
            .collect();
        keys.push((
            rng.below(2) == 1,
            pick_bytes(&mut rng),
            if rng.below(3) == 0 {
                None
            } else {
                Some(rng.below(3) as u16)
            },
            s,
            (
                rng.below(3) as i16 - 1,
                if rng.below(2) == 0 {
                    None
                } else {
                    Some(pick_bytes(&mut rng))
                },
            ),
            pick_bytes(&mut rng),
        ));
    }
    let mut by_value = keys.clone();
    by_value.sort();
    by_value.dedup();
    let mut by_bytes: Vec<(Vec<u8>, K6)> =
        keys.iter().map(|k| (enc_key::<K6>(k), k.clone())).collect();
    by_bytes.sort();
    by_bytes.dedup();
    let got: Vec<K6> = by_bytes.iter().map(|(_, k)| k.clone()).collect();
    assert_eq!(got.len(), by_value.len(), "two values share an encoding");
    for (i, (a, b)) in got.iter().zip(&by_value).enumerate() {
        assert_eq!(a, b, "position {i}");
    }
    for (e, k) in &by_bytes {
        assert_eq!(<K6>::decode(e).unwrap(), *k);
    }
}

/// Held: borrowed keys encode as their owned twins (same type name, so
/// the same table), and a borrowed field with a zero byte is refused with
/// `Decode` wherever it sits: in a tuple, in an Option in a tuple, in a
/// tuple in a tuple, in a tuple in an Option.
#[test]
fn held_borrowed_fields_encode_as_owned_and_refuse_nul_everywhere() {
    let mut a = Vec::new();
    <(Option<&str>, &[u8], u8)>::encode_checked(&(Some("ab"), &b"\xff"[..], 3), &mut a).unwrap();
    let mut b = Vec::new();
    <(Option<String>, Vec<u8>, u8)>::encode_checked(&(Some("ab".into()), vec![0xFF], 3), &mut b)
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(
        <(Option<&str>, &[u8], u8)>::type_name(),
        <(Option<String>, Vec<u8>, u8)>::type_name()
    );
    let refused = |r: larch::Result<()>| matches!(r, Err(Error::Decode { .. }));
    let mut out = Vec::new();
    assert!(refused(<(Option<&str>, u8)>::encode_checked(
        &(Some("a\0"), 1),
        &mut out
    )));
    assert!(refused(<((&[u8], u8), u8)>::encode_checked(
        &((&b"\0"[..], 1), 1),
        &mut out
    )));
    assert!(refused(<Option<(&str, u8)>>::encode_checked(
        &Some(("\0", 1)),
        &mut out
    )));
    assert!(refused(<(u8, Option<(&[u8], bool)>)>::encode_checked(
        &(1, Some((&b"x\0"[..], true))),
        &mut out
    )));
    // The last field is written as it is: a NUL there is fine.
    let mut ok = Vec::new();
    <(u8, &str)>::encode_checked(&(1, "a\0"), &mut ok).unwrap();
    assert_eq!(<(u8, &str)>::decode(&ok).unwrap(), (1, "a\0"));
}

/// Held: decoding any bytes as any built-in type (tuples slicing at field
/// ends included) returns, never panics; and what decodes is canonical:
/// it encodes back to exactly the bytes it came from (so no two stored
/// keys read as the same value).
#[test]
fn held_decode_of_crafted_bytes_never_panics_and_is_canonical() {
    macro_rules! probe {
        ($bytes:expr, $($t:ty),+) => {$(
            let r = catch_unwind(|| {
                if let Ok(v) = <$t>::decode($bytes) {
                    let mut out = Vec::new();
                    <$t>::encode(&v, &mut out);
                    assert_eq!(out, $bytes, "{} decoded non-canonically", <$t>::type_name());
                }
                let _ = <$t as Key>::decode_field($bytes);
            });
            assert!(r.is_ok(), "{} panicked on {:02x?}", stringify!($t), $bytes);
        )+};
    }
    let mut inputs: Vec<Vec<u8>> = vec![vec![]];
    let alpha = [0u8, 1, 2, 0x7F, 0xFF];
    for len in 1..=4 {
        let mut next = Vec::new();
        for p in inputs.iter().filter(|p| p.len() == len - 1) {
            for &a in &alpha {
                let mut q = p.clone();
                q.push(a);
                next.push(q);
            }
        }
        inputs.extend(next);
    }
    let mut rng = Rng(99);
    for _ in 0..4000 {
        let len = rng.below(24) as usize;
        inputs.push((0..len).map(|_| alpha[rng.below(5) as usize]).collect());
    }
    for bytes in &inputs {
        let bytes = &bytes[..];
        probe!(
            bytes,
            (String, Vec<u8>),
            (&str, &[u8], Option<u64>),
            (Option<String>, u8),
            (Option<(Vec<u8>, [u8; 2])>, bool),
            ((Vec<u8>, Option<String>), (i8, Vec<u8>)),
            (bool, (), i64),
            (u8, u8, u8, Option<u8>, Vec<u8>, String),
            Option<Option<Vec<u8>>>,
            Option<(&str, &str)>,
            (i128, Option<&[u8]>),
            ((), ()),
            Option<()>,
            [u8; 3]
        );
    }
}

/// Defect (low: a contract violation by a user type, but it panics inside
/// larch). A user `Key` whose `decode_field` claims more bytes than it was
/// given makes the tuple decode slice `&bytes[at..]` out of range
/// (src/typed/types.rs, `tuple!`, `decode` and `decode_field`): reading a
/// table of such keys panics in larch instead of `Error::Decode`.
#[test]
fn redteam_tuple_decode_trusts_a_user_field_width() {
    struct Greedy;
    impl Value for Greedy {
        type SelfType<'a> = u8;
        fn type_name() -> String {
            "Greedy".into()
        }
        fn encode(v: &u8, out: &mut Vec<u8>) {
            out.push(*v);
        }
        fn decode(bytes: &[u8]) -> larch::Result<u8> {
            u8::decode(bytes)
        }
    }
    impl Key for Greedy {
        fn encode_field(v: &u8, out: &mut Vec<u8>) {
            out.push(*v);
        }
        // Says it took a byte more than there was.
        fn decode_field(bytes: &[u8]) -> larch::Result<(u8, usize)> {
            let (v, _) = u8::decode_field(bytes)?;
            Ok((v, bytes.len() + 1))
        }
    }
    let r = catch_unwind(|| <(Greedy, u8)>::decode(&[1, 2]).is_err());
    assert!(
        matches!(r, Ok(true)),
        "a user field claiming more bytes than the key has panics the tuple decode \
         (`&bytes[at..]` in src/typed/types.rs) instead of returning Error::Decode"
    );
}

// ---------------------------------------------------------------------------
// Values: what is written reads back.
// ---------------------------------------------------------------------------

/// Defect. A tuple used as a value type is written with `Value::encode`,
/// which cannot fail and does not check that a borrowed non-last field
/// reads back (only keys do, `Value::encode_checked`): `insert(k, ("a\0b", 7))`
/// into a table of `(&str, u8)` values succeeds and commits, and from then
/// on `get` of that key, and the iteration over it, are `Error::Decode`.
/// The typed API writes data it cannot read. The likeliest victim is a
/// blob with a timestamp, `(&[u8], u64)`: any blob holding a zero byte.
#[test]
fn redteam_tuple_values_with_a_nul_in_a_borrowed_field_are_unreadable() {
    const PAIRS: TableDefinition<u8, (&str, u8)> = TableDefinition::new("pairs");
    const OPT: TableDefinition<u8, Option<(&[u8], bool)>> = TableDefinition::new("opt");
    const BLOBS: TableDefinition<u64, (&[u8], u64)> = TableDefinition::new("blobs");
    let t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    let ins_pairs = w
        .open_typed(PAIRS)
        .unwrap()
        .insert(1, ("a\0b", 7))
        .map(|_| ());
    let ins_opt = w
        .open_typed(OPT)
        .unwrap()
        .insert(1, Some((&b"\0"[..], true)))
        .map(|_| ());
    let ins_blob = w
        .open_typed(BLOBS)
        .unwrap()
        .insert(1, (&[1u8, 0, 2][..], 99))
        .map(|_| ());
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let blobs = r.open_typed(BLOBS).unwrap();
    let got_blob = blobs.get(1).map(|v| v.map(|(b, ts)| (b.to_vec(), ts)));
    let iter_blob: Vec<_> = blobs.iter().unwrap().map(|e| e.map(|(k, _)| k)).collect();
    let blob_ok = ins_blob.is_err() || matches!(&got_blob, Ok(Some((b, 99))) if b == &[1u8, 0, 2]);
    assert!(
        blob_ok,
        "(&[u8], u64) value: insert {ins_blob:?}, then get {got_blob:?}, iter {iter_blob:?}"
    );
    let got_pairs = r
        .open_typed(PAIRS)
        .unwrap()
        .get(1)
        .map(|v| v.map(|(s, n)| (s.to_owned(), n)));
    let got_opt = r
        .open_typed(OPT)
        .unwrap()
        .get(1)
        .map(|v| v.map(|o| o.map(|(b, f)| (b.to_vec(), f))));
    let pairs_ok = ins_pairs.is_err() || matches!(&got_pairs, Ok(Some((s, 7))) if s == "a\0b");
    let opt_ok = ins_opt.is_err() || matches!(&got_opt, Ok(Some(Some((b, true)))) if b == &[0u8]);
    assert!(
        pairs_ok && opt_ok,
        "a value the typed insert accepted does not read back: \
         (&str, u8) insert {ins_pairs:?} then get {got_pairs:?}; \
         Option<(&[u8], bool)> insert {ins_opt:?} then get {got_opt:?}"
    );
}

/// Held: a `&str` read from a typed table borrows the map, for values
/// inline, packed into a segment and in an overflow run, and for a `&str`
/// field of a composite key; `TypedTable::get` gives the very bytes the
/// byte API does.
#[test]
fn held_str_reads_are_zero_copy() {
    const TEXT: TableDefinition<u64, &str> = TableDefinition::new("text");
    const BYKEY: TableDefinition<(&str, u8), &[u8]> = TableDefinition::new("bykey");
    let t = TestDb::new(4096);
    let long = "x".repeat(9000);
    let packed = "y".repeat(2000);
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_typed(TEXT).unwrap();
        tab.insert(1, "short").unwrap();
        tab.insert(2, packed.as_str()).unwrap();
        tab.insert(3, long.as_str()).unwrap();
    }
    w.open_typed(BYKEY)
        .unwrap()
        .insert(("alpha", 1), &b"v"[..])
        .unwrap();
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    let tab = r.open_typed(TEXT).unwrap();
    for k in 1..=3u64 {
        let s = tab.get(k).unwrap().unwrap();
        let raw = tab.bytes().get(&k.to_be_bytes()).unwrap().unwrap();
        assert_eq!(s.as_ptr(), raw.as_ptr(), "value {k} was copied");
        assert_eq!(s.len(), raw.len());
    }
    let (first, _) = tab.first().unwrap().unwrap();
    assert_eq!(first, 1);
    let by = r.open_typed(BYKEY).unwrap();
    let ((name, n), v) = by.first().unwrap().unwrap();
    let (raw_k, raw_v) = by.bytes().iter().unwrap().next().unwrap().unwrap();
    assert_eq!((name, n, v), ("alpha", 1, &b"v"[..]));
    assert_eq!(
        name.as_ptr(),
        raw_k.as_ptr(),
        "the key's str field was copied"
    );
    assert_eq!(v.as_ptr(), raw_v.as_ptr(), "the bytes value was copied");
}

// ---------------------------------------------------------------------------
// Ranges.
// ---------------------------------------------------------------------------

fn in_bounds<T: Ord>(k: &T, lo: &Bound<T>, hi: &Bound<T>) -> bool {
    let above = match lo {
        Bound::Included(l) => k >= l,
        Bound::Excluded(l) => k > l,
        Bound::Unbounded => true,
    };
    let below = match hi {
        Bound::Included(h) => k <= h,
        Bound::Excluded(h) => k < h,
        Bound::Unbounded => true,
    };
    above && below
}

fn bounds_of<T: Clone>(probes: &[T]) -> Vec<Bound<T>> {
    let mut out = vec![Bound::Unbounded];
    for p in probes {
        out.push(Bound::Included(p.clone()));
        out.push(Bound::Excluded(p.clone()));
    }
    out
}

/// Held: typed ranges over signed keys with the extremes, every pair of
/// bounds (included, excluded, unbounded, inverted, equal and excluded),
/// forwards and backwards, match a model; so does `remove_range`, which
/// removes nothing for an inverted range.
#[test]
fn held_typed_ranges_and_remove_range_match_a_model() {
    const NUMS: TableDefinition<i64, u32> = TableDefinition::new("nums");
    let t = TestDb::new(4096);
    let mut model = BTreeMap::new();
    let mut keys = vec![
        i64::MIN,
        i64::MIN + 1,
        -256,
        -1,
        0,
        1,
        255,
        i64::MAX - 1,
        i64::MAX,
    ];
    let mut rng = Rng(3);
    for _ in 0..300 {
        keys.push(rng.next_u64() as i64 >> rng.below(60));
    }
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_typed(NUMS).unwrap();
        for (i, &k) in keys.iter().enumerate() {
            tab.insert(k, i as u32).unwrap();
            model.insert(k, i as u32);
        }
    }
    w.commit().unwrap();
    let probes = [i64::MIN, -1, 0, 1, 300, i64::MAX, i64::MAX - 1];
    let bounds = bounds_of(&probes);
    let r = t.db().begin_read().unwrap();
    let tab = r.open_typed(NUMS).unwrap();
    for lo in &bounds {
        for hi in &bounds {
            let want: Vec<(i64, u32)> = model
                .iter()
                .filter(|(k, _)| in_bounds(*k, lo, hi))
                .map(|(k, v)| (*k, *v))
                .collect();
            let got: Vec<(i64, u32)> = tab.range((*lo, *hi)).unwrap().map(|e| e.unwrap()).collect();
            assert_eq!(got, want, "{lo:?}..{hi:?}");
            let mut back: Vec<(i64, u32)> = tab
                .range((*lo, *hi))
                .unwrap()
                .rev()
                .map(|e| e.unwrap())
                .collect();
            back.reverse();
            assert_eq!(back, want, "rev {lo:?}..{hi:?}");
        }
    }
    drop(r);
    for (i, lo) in bounds.iter().enumerate() {
        for hi in bounds.iter().skip(i % 3).step_by(3) {
            let want = model.keys().filter(|k| in_bounds(*k, lo, hi)).count() as u64;
            let w = t.db().begin_write().unwrap();
            {
                let mut tab = w.open_typed(NUMS).unwrap();
                let n = tab.remove_range((*lo, *hi)).unwrap();
                assert_eq!(n, want, "remove_range {lo:?}..{hi:?}");
                let left: Vec<i64> = tab.iter().unwrap().map(|e| e.unwrap().0).collect();
                let model_left: Vec<i64> = model
                    .keys()
                    .filter(|k| !in_bounds(*k, lo, hi))
                    .copied()
                    .collect();
                assert_eq!(left, model_left, "after remove_range {lo:?}..{hi:?}");
            }
            w.abort();
        }
    }
}

/// Held: ranges with composite bounds (strings with NUL and prefixes as a
/// non-last field) match a model; a bound that cannot be written as a key
/// is `Decode`, and leaves the write transaction usable.
#[test]
fn held_composite_ranges_match_a_model() {
    const SCORES: TableDefinition<(String, i16), u8> = TableDefinition::new("scores");
    const BORROWED: TableDefinition<(&str, i16), u8> = TableDefinition::new("scores");
    let t = TestDb::new(4096);
    let strs = hard_strs();
    let mut model = BTreeMap::new();
    let w = t.db().begin_write().unwrap();
    {
        let mut tab = w.open_typed(SCORES).unwrap();
        for (i, s) in strs.iter().enumerate() {
            for n in [i16::MIN, -1, 0, 1, i16::MAX] {
                tab.insert((s.clone(), n), i as u8).unwrap();
                model.insert((s.clone(), n), i as u8);
            }
        }
    }
    // A bound with a NUL in a borrowed field bounds the range as the same
    // key of owned fields would (a lookup never refuses a key); entries
    // with a NUL in the borrowed field read as `Decode` items.
    {
        let tab = w.open_typed(BORROWED).unwrap();
        let got = tab.range(("a\0", 0)..).unwrap().count();
        let want = model.range((String::from("a\0"), 0)..).count();
        assert_eq!(got, want);
    }
    w.commit().unwrap();
    let probes: Vec<(String, i16)> = ["", "\0", "a", "a\0", "ab", "zzz"]
        .iter()
        .flat_map(|s| {
            [
                (s.to_string(), i16::MIN),
                (s.to_string(), 0),
                (s.to_string(), i16::MAX),
            ]
        })
        .collect();
    let bounds = bounds_of(&probes);
    let r = t.db().begin_read().unwrap();
    let tab = r.open_typed(SCORES).unwrap();
    for lo in &bounds {
        for hi in &bounds {
            let want: Vec<((String, i16), u8)> = model
                .iter()
                .filter(|(k, _)| in_bounds(*k, lo, hi))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            let got: Vec<((String, i16), u8)> = tab
                .range((lo.clone(), hi.clone()))
                .unwrap()
                .map(|e| e.unwrap())
                .collect();
            assert_eq!(got, want, "{lo:?}..{hi:?}");
        }
    }
}

/// Held: the unit as a key (an empty key) and tuples of units.
#[test]
fn held_unit_keys() {
    const SET: TableDefinition<(), u8> = TableDefinition::new("unit");
    const UNITS: TableDefinition<((), ()), ()> = TableDefinition::new("units");
    let t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    assert!(!w.open_typed(SET).unwrap().insert((), 5).unwrap());
    assert!(w.open_typed(SET).unwrap().insert((), 6).unwrap());
    w.open_typed(UNITS).unwrap().insert(((), ()), ()).unwrap();
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    assert_eq!(r.open_typed(SET).unwrap().get(()).unwrap(), Some(6));
    assert_eq!(r.open_typed(UNITS).unwrap().len(), 1);
}

// ---------------------------------------------------------------------------
// Type names: transactions.
// ---------------------------------------------------------------------------

/// Held: two definitions of one name with other types in one write
/// transaction (the second is refused, the transaction goes on and
/// commits the first); a definition refused after the byte API created
/// the table; delete then recreate with other types in one transaction;
/// an aborted and a dropped creation leave nothing behind.
#[test]
fn held_type_names_across_one_transaction_abort_and_recreate() {
    const A: TableDefinition<u64, &str> = TableDefinition::new("t");
    const B: TableDefinition<i64, &str> = TableDefinition::new("t");
    const C: TableDefinition<u64, u64> = TableDefinition::new("t");
    let t = TestDb::new(4096);
    let mismatch = |e: Option<Error>| matches!(e, Some(Error::TableTypeMismatch { .. }));

    // Aborted and dropped creations.
    let w = t.db().begin_write().unwrap();
    w.open_typed(B).unwrap().insert(-1, "b").unwrap();
    w.abort();
    {
        let w = t.db().begin_write().unwrap();
        w.open_typed(C).unwrap().insert(1, 1).unwrap();
    }
    assert!(!t.db().begin_read().unwrap().table_exists("t").unwrap());

    let w = t.db().begin_write().unwrap();
    w.open_typed(A).unwrap().insert(1, "a").unwrap();
    assert!(mismatch(w.open_typed(B).err()));
    assert!(mismatch(w.open_typed(C).err()));
    // Still usable, and the first types are kept.
    w.open_typed(A).unwrap().insert(2, "b").unwrap();
    w.open_table("t")
        .unwrap()
        .insert(b"rawkey!!", b"raw")
        .unwrap();
    assert!(mismatch(w.open_typed(B).err()));
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    assert_eq!(r.open_typed(A).unwrap().len(), 3);
    assert!(mismatch(r.open_typed(B).err()));
    drop(r);

    // Delete and recreate with other types, in one transaction.
    let mut w = t.db().begin_write().unwrap();
    assert_eq!(w.open_typed(A).unwrap().get(1).unwrap(), Some("a"));
    assert!(w.delete_table("t").unwrap());
    w.open_typed(C).unwrap().insert(9, 9).unwrap();
    assert!(mismatch(w.open_typed(A).err()));
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    assert!(mismatch(r.open_typed(A).err()));
    assert_eq!(r.open_typed(C).unwrap().get(9).unwrap(), Some(9));
    drop(r);

    // Deleted and recreated through the byte API: untyped.
    let mut w = t.db().begin_write().unwrap();
    assert!(w.delete_table("t").unwrap());
    w.open_table("t").unwrap().insert(b"k", b"v").unwrap();
    match w.open_typed(C).err() {
        Some(Error::TableTypeMismatch { found, .. }) => assert_eq!(found, "bytes (untyped)"),
        other => panic!("{other:?}"),
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    assert!(mismatch(r.open_typed(C).err()));
    // A reader of an older snapshot is not concerned: a new one is.
    drop(r);
    let mut w = t.db().begin_write().unwrap();
    assert!(w.delete_table("t").unwrap());
    w.open_typed(A).unwrap();
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    assert!(r.open_typed(A).unwrap().is_empty());
}

/// Held: a write transaction failed by `MapFull` answers `open_typed`
/// (with the right types or other ones) with `TxnFailed`, and the typed
/// table it created never exists; an over-long key or an unwritable key
/// rejected by a typed insert leaves the transaction usable.
#[test]
fn held_failed_transactions_and_rejected_arguments() {
    const T: TableDefinition<u64, Vec<u8>> = TableDefinition::new("t");
    const OTHER: TableDefinition<u32, Vec<u8>> = TableDefinition::new("t");
    const BIGKEY: TableDefinition<Vec<u8>, u8> = TableDefinition::new("big");
    const PAIRS: TableDefinition<(&str, u8), u8> = TableDefinition::new("pairs");
    let t = TestDb::with_options(
        Options::new()
            .page_size(4096)
            .map_size(1 << 20)
            .max_size(1 << 20),
    );
    let w = t.db().begin_write().unwrap();
    let e = w
        .open_typed(T)
        .unwrap()
        .insert(1, vec![7u8; 4 << 20])
        .unwrap_err();
    assert!(matches!(e, Error::MapFull { .. }), "{e:?}");
    assert!(matches!(w.open_typed(T).err(), Some(Error::TxnFailed)));
    assert!(matches!(w.open_typed(OTHER).err(), Some(Error::TxnFailed)));
    assert!(matches!(w.commit(), Err(Error::TxnFailed)));
    let r = t.db().begin_read().unwrap();
    assert!(matches!(
        r.open_typed(T).err(),
        Some(Error::TableNotFound(_))
    ));
    drop(r);

    let w = t.db().begin_write().unwrap();
    {
        let mut big = w.open_typed(BIGKEY).unwrap();
        let e = big.insert(vec![1u8; 70_000], 1).unwrap_err();
        assert!(matches!(e, Error::KeyTooLarge { .. }), "{e:?}");
        big.insert(vec![1u8; 10], 1).unwrap();
        // A key too long to exist is simply absent.
        assert!(!big.remove(vec![1u8; 70_000]).unwrap());
    }
    {
        let mut p = w.open_typed(PAIRS).unwrap();
        assert!(matches!(p.insert(("x\0", 1), 1), Err(Error::Decode { .. })));
        assert!(!p.remove(("x\0", 1)).unwrap());
        // A bound need not read back: it removes what lies past it.
        assert_eq!(p.remove_range(("x\0", 1)..).unwrap(), 0);
        p.insert(("x", 1), 1).unwrap();
    }
    w.open_typed(T).unwrap().insert(1, vec![1]).unwrap();
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    assert_eq!(r.open_typed(BIGKEY).unwrap().len(), 1);
    assert_eq!(r.open_typed(PAIRS).unwrap().len(), 1);
    assert_eq!(r.open_typed(T).unwrap().get(1).unwrap(), Some(vec![1]));
}

// ---------------------------------------------------------------------------
// Type names: lengths.
// ---------------------------------------------------------------------------

fn long_name_tables(db: &Database) {
    let w = db.begin_write().unwrap();
    macro_rules! mk {
        ($($n:literal),+) => {$(
            let def: TableDefinition<Named<$n>, Named<{ $n / 2 }>> =
                TableDefinition::new(concat!("n", $n));
            let mut t = w.open_typed(def).unwrap();
            for i in 0..20u64 {
                t.insert(i, i * 3).unwrap();
            }
            drop(t);
        )+};
    }
    mk!(0, 1, 100, 1000, 3000, 20000, 65535);
    // One past the limit: refused as an argument, the transaction goes on.
    let too_long: TableDefinition<Named<65536>, u8> = TableDefinition::new("too_long");
    assert!(matches!(
        w.open_typed(too_long).err(),
        Some(Error::InvalidOption(_))
    ));
    let tuple_too_long: TableDefinition<(Named<40000>, Named<40000>), u8> =
        TableDefinition::new("tuple_too_long");
    assert!(matches!(
        w.open_typed(tuple_too_long).err(),
        Some(Error::InvalidOption(_))
    ));
    w.commit().unwrap();
    let r = db.begin_read().unwrap();
    assert!(!r.table_exists("too_long").unwrap());
    assert!(!r.table_exists("tuple_too_long").unwrap());
}

fn assert_long_names(db: &Database, what: &str) {
    let r = db.begin_read().unwrap();
    macro_rules! ck {
        ($($n:literal),+) => {$(
            let def: TableDefinition<Named<$n>, Named<{ $n / 2 }>> =
                TableDefinition::new(concat!("n", $n));
            let t = r.open_typed(def).unwrap_or_else(|e| panic!("{what}: n{}: {e}", $n));
            assert_eq!(t.len(), 20, "{what}: n{}", $n);
            assert_eq!(t.get(7).unwrap(), Some(21), "{what}: n{}", $n);
            // The same name with the value type's name one byte longer.
            let other: TableDefinition<Named<$n>, Named<{ $n / 2 + 1 }>> =
                TableDefinition::new(concat!("n", $n));
            assert!(
                matches!(r.open_typed(other), Err(Error::TableTypeMismatch { .. })),
                "{what}: n{}", $n
            );
        )+};
    }
    ck!(0, 1, 100, 1000, 3000, 20000, 65535);
    drop(r);
    assert_clean(db);
}

/// Held: type names of 0 bytes up to the 65,535-byte limit (catalog
/// values inline, packed into segments and in overflow runs of their own,
/// at 512- and 4096-byte pages) survive a reopen, `compact`, page and
/// compacted copies, and deletion; one byte more is refused with
/// `InvalidOption` and fails nothing.
#[test]
fn held_type_names_up_to_the_limit() {
    for ps in [512u32, 4096] {
        let mut t = TestDb::with_options(opts(ps));
        long_name_tables(t.db());
        // Table values are eight bytes: the runs and segments are the
        // catalog's.
        let report = assert_clean(t.db());
        assert!(report.segments > 0, "{report:?}");
        if ps == 512 {
            assert!(report.overflow_pages > 0, "{report:?}");
        }
        assert_long_names(t.db(), "committed");
        t.reopen();
        assert_long_names(t.db(), "reopened");
        t.db().compact().unwrap();
        assert_long_names(t.db(), "compacted");
        for compact in [false, true] {
            let copy = t.dir.path().join(format!("copy{compact}"));
            t.db()
                .begin_read()
                .unwrap()
                .copy_to(&copy, compact)
                .unwrap();
            let c = open_at(&copy, ps).unwrap();
            assert_long_names(
                &c,
                if compact {
                    "compacted copy"
                } else {
                    "page copy"
                },
            );
        }
        let mut w = t.db().begin_write().unwrap();
        for n in ["n3000", "n20000", "n65535"] {
            assert!(w.delete_table(n).unwrap());
        }
        w.commit().unwrap();
        assert_clean(t.db());
        t.db().compact().unwrap();
        assert_clean(t.db());
    }
}

/// Held: a table name of the longest key (65,536 bytes, a long catalog
/// key whose bytes lie out of the leaf with the value's) with type names
/// at the limit, at 512- and 4096-byte pages: commits, reopens, compacts,
/// copies and deletes cleanly; one byte longer a name is `KeyTooLarge` and
/// the transaction goes on; an empty typed table survives compacted
/// copies and `compact`.
#[test]
fn held_longest_table_name_with_longest_type_names() {
    for ps in [512u32, 4096] {
        let mut t = TestDb::with_options(opts(ps));
        let name = "L".repeat(64 << 10);
        let too_long = "L".repeat((64 << 10) + 1);
        let def: TableDefinition<Named<65535>, Named<65535>> = TableDefinition::new(&name);
        let empty: TableDefinition<(u8, &str), Option<u64>> = TableDefinition::new("empty");
        let w = t.db().begin_write().unwrap();
        w.open_typed(def).unwrap().insert(1, 2).unwrap();
        let e = w
            .open_typed(TableDefinition::<u8, u8>::new(&too_long))
            .err();
        assert!(matches!(e, Some(Error::KeyTooLarge { .. })), "{e:?}");
        w.open_typed(empty).unwrap();
        w.commit().unwrap();
        let verify = |db: &Database, what: &str| {
            let r = db.begin_read().unwrap();
            let tab = r.open_typed(def).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(tab.get(1).unwrap(), Some(2), "{what}");
            assert!(
                r.open_typed(empty)
                    .unwrap_or_else(|e| panic!("{what}: {e}"))
                    .is_empty()
            );
            let wrong: TableDefinition<Named<65535>, Named<65534>> = TableDefinition::new(&name);
            assert!(
                matches!(r.open_typed(wrong), Err(Error::TableTypeMismatch { .. })),
                "{what}"
            );
            drop(r);
            assert_clean(db);
        };
        verify(t.db(), "committed");
        t.reopen();
        verify(t.db(), "reopened");
        t.db().compact().unwrap();
        verify(t.db(), "compacted");
        let copy = t.dir.path().join("copy");
        t.db().begin_read().unwrap().copy_to(&copy, true).unwrap();
        verify(&open_at(&copy, ps).unwrap(), "compacted copy");
        let mut w = t.db().begin_write().unwrap();
        assert!(w.delete_table(&name).unwrap());
        w.commit().unwrap();
        assert_clean(t.db());
    }
}

/// Held: bytes that do not decode, read in a write transaction, are a
/// `Decode` error that leaves the transaction usable (reads change
/// nothing); the iteration yields the error in the entry's place.
#[test]
fn held_decode_errors_in_a_write_transaction_fail_nothing() {
    const NAMES: TableDefinition<u64, &str> = TableDefinition::new("names");
    let t = TestDb::new(4096);
    let w = t.db().begin_write().unwrap();
    w.open_typed(NAMES).unwrap().insert(1, "ok").unwrap();
    w.open_table("names")
        .unwrap()
        .insert(&2u64.to_be_bytes(), &[0xC3])
        .unwrap();
    w.open_table("names").unwrap().insert(b"bad", b"x").unwrap();
    {
        let mut tab = w.open_typed(NAMES).unwrap();
        assert!(matches!(tab.get(2), Err(Error::Decode { .. })));
        let items: Vec<_> = tab.iter().unwrap().collect();
        assert_eq!(items.len(), 3);
        assert!(matches!(items[0], Ok((1, "ok"))));
        tab.insert(3, "three").unwrap();
    }
    w.commit().unwrap();
    let r = t.db().begin_read().unwrap();
    assert_eq!(r.open_typed(NAMES).unwrap().get(3).unwrap(), Some("three"));
}

// ---------------------------------------------------------------------------
// Type names: heap cleaning and compaction move a typed table untouched.
// ---------------------------------------------------------------------------

/// Held: a typed table with a long type name (its catalog value packed
/// into a segment) whose values share segments with another table's: the
/// other table is deleted in a commit that never opens the typed one, so
/// the heap's cleaning moves the typed table's values (and rewrites its
/// catalog value) on its own. The types stay, the values read back and
/// `check` is clean; and again after `compact`.
#[test]
fn held_types_survive_heap_cleaning_of_an_unopened_table() {
    let def: TableDefinition<Named<3000>, Vec<u8>> = TableDefinition::new("typed");
    let other: TableDefinition<Named<3000>, &[u8]> = TableDefinition::new("typed");
    let wrong: TableDefinition<u64, Vec<u8>> = TableDefinition::new("typed");
    let t = TestDb::with_options(opts(4096));
    let db = t.db();
    for round in 0..3u64 {
        let w = db.begin_write().unwrap();
        for i in 0..200u64 {
            let k = round * 200 + i;
            w.open_typed(def)
                .unwrap()
                .insert(k, common::seeded_bytes(k, 1500))
                .unwrap();
            let mut junk = w.open_table("junk").unwrap();
            for j in 0..2u64 {
                junk.insert(&(k * 2 + j).to_be_bytes(), &[0xAB; 1500])
                    .unwrap();
            }
        }
        w.commit().unwrap();
    }
    let before = assert_clean(db);
    let mut w = db.begin_write().unwrap();
    assert!(w.delete_table("junk").unwrap());
    w.commit().unwrap();
    let after = assert_clean(db);
    assert!(
        after.segment_pages * 2 < before.segment_pages,
        "no cleaning happened: segment pages {} then {}",
        before.segment_pages,
        after.segment_pages
    );
    let check = |db: &Database, what: &str| {
        let r = db.begin_read().unwrap();
        let tab = r.open_typed(def).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(tab.len(), 600, "{what}");
        for k in (0..600u64).step_by(37) {
            assert_eq!(
                tab.get(k).unwrap(),
                Some(common::seeded_bytes(k, 1500)),
                "{what} {k}"
            );
        }
        // `&[u8]` and `Vec<u8>` share a name; `u64` does not.
        r.open_typed(other).unwrap();
        assert!(
            matches!(r.open_typed(wrong), Err(Error::TableTypeMismatch { .. })),
            "{what}"
        );
    };
    check(db, "cleaned");
    db.compact().unwrap();
    assert_clean(db);
    check(db, "compacted");
}

// ---------------------------------------------------------------------------
// Crafted catalog records.
// ---------------------------------------------------------------------------

/// Key type with a recognisable name.
struct KeyMark;
impl Value for KeyMark {
    type SelfType<'a> = u32;
    fn type_name() -> String {
        "KEYMARK".into()
    }
    fn encode(v: &u32, out: &mut Vec<u8>) {
        u32::encode(v, out)
    }
    fn decode(bytes: &[u8]) -> larch::Result<u32> {
        u32::decode(bytes)
    }
}
impl Key for KeyMark {
    fn encode_field(v: &u32, out: &mut Vec<u8>) {
        u32::encode(v, out)
    }
    fn decode_field(bytes: &[u8]) -> larch::Result<(u32, usize)> {
        u32::decode_field(bytes)
    }
}

const MARKED: TableDefinition<KeyMark, &str> = TableDefinition::new("t");

/// A file (4 KiB pages) of two commits: typed table "t" (KEYMARK -> str),
/// then table "u" through the byte API. Returns the image, closed.
fn marked_image(path: &Path) -> Vec<u8> {
    let db = open_at(path, 4096).unwrap();
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_typed(MARKED).unwrap();
        for i in 0..10 {
            t.insert(i, "v").unwrap();
        }
    }
    w.commit().unwrap();
    let w = db.begin_write().unwrap();
    w.open_table("u").unwrap().insert(b"k", b"v").unwrap();
    w.commit().unwrap();
    drop(db);
    std::fs::read(path).unwrap()
}

/// The catalog leaf of the newest commit, with its seal list dropped (so
/// that edited pages do not set the commit aside): the leaf's page, the
/// offset in the image of "t"'s cell and of its value.
fn catalog_cell(image: &mut [u8], ps: usize) -> (u64, usize, usize) {
    let slot = newest_slot(image, ps);
    let mut root = (0, 0);
    assert!(edit_meta(image, ps, slot, |m| {
        root = (m.catalog_root, m.catalog_depth);
        m.seal.clear();
    }));
    assert_eq!(root.1, 1, "a catalog of one leaf");
    let base = root.0 as usize * ps;
    let page = &image[base..base + ps];
    let u16_at = |at: usize| u16::from_le_bytes([page[at], page[at + 1]]) as usize;
    for i in 0..u16_at(2) {
        let cell = u16_at(24 + 2 * i);
        let klen = u16_at(cell + 2);
        if &page[cell + 8..cell + 8 + klen] == b"t" {
            assert_eq!(page[cell], 0, "an inline catalog value");
            return (root.0, base + cell, base + cell + 8 + klen);
        }
    }
    panic!("no catalog cell for t");
}

/// Held: catalog values of a typed table crafted in the file (unknown
/// flags, the typed flag cleared over a record, names running long or
/// short, a name not UTF-8, the record cut off; and each of those with
/// both flags, a typed multimap's, set): opening the table through either
/// API is `Corrupted` (never a panic, never other types), `check` reports
/// the entry, and writers, `compact` and compacted copies fail without
/// panicking; the other table still reads. (Both flags over a whole record
/// are a typed multimap since format 7: see
/// `held_both_flags_over_a_typed_table_make_a_typed_multimap`.)
#[test]
fn held_crafted_catalog_records_are_corrupted_not_panics() {
    type Craft = fn(&mut [u8], usize, usize);
    let crafts: [(&str, Craft); 13] = [
        ("flags 2", |im, _, v| im[v + 20] = 2),
        ("flags 0 over a record", |im, _, v| im[v + 20] = 0),
        ("flags 7", |im, _, v| im[v + 20] = 7),
        ("flags 3 and bit 31", |im, _, v| {
            im[v + 20] = 3;
            im[v + 23] |= 0x80;
        }),
        ("flags 3, key name runs long", |im, _, v| {
            im[v + 20] = 3;
            im[v + 24] += 1;
        }),
        ("flags 3, key name runs short", |im, _, v| {
            im[v + 20] = 3;
            im[v + 24] -= 1;
        }),
        ("flags 3, key name not UTF-8", |im, _, v| {
            im[v + 20] = 3;
            im[v + 26] = 0xFF;
        }),
        ("flags 3, value name length 0xFFFF", |im, _, v| {
            im[v + 20] = 3;
            let at = v + 24 + 2 + 7;
            im[at] = 0xFF;
            im[at + 1] = 0xFF;
        }),
        ("flag bit 31", |im, _, v| im[v + 23] |= 0x80),
        ("key name runs long", |im, _, v| im[v + 24] += 1),
        ("key name runs short", |im, _, v| im[v + 24] -= 1),
        ("key name not UTF-8", |im, _, v| im[v + 26] = 0xFF),
        ("value name length 0xFFFF", |im, _, v| {
            let at = v + 24 + 2 + 7;
            im[at] = 0xFF;
            im[at + 1] = 0xFF;
        }),
    ];
    let dir = tempfile::tempdir().unwrap();
    let base_path = dir.path().join("base");
    let base = marked_image(&base_path);
    let mut all: Vec<(String, Craft)> = crafts.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    // The record cut off: the cell's value length says 24 (the bytes stay).
    all.push(("record cut off (val_len 24)".into(), |im, cell, _| {
        im[cell + 4..cell + 8].copy_from_slice(&24u32.to_le_bytes());
    }));
    all.push(("record cut by one byte".into(), |im, cell, _| {
        let len = u32::from_le_bytes(im[cell + 4..cell + 8].try_into().unwrap());
        im[cell + 4..cell + 8].copy_from_slice(&(len - 1).to_le_bytes());
    }));
    // A typed multimap's flags with no record, or one cut short.
    all.push(("flags 3, no record (val_len 24)".into(), |im, cell, v| {
        im[v + 20] = 3;
        im[cell + 4..cell + 8].copy_from_slice(&24u32.to_le_bytes());
    }));
    all.push(("flags 3, record cut by one byte".into(), |im, cell, v| {
        im[v + 20] = 3;
        let len = u32::from_le_bytes(im[cell + 4..cell + 8].try_into().unwrap());
        im[cell + 4..cell + 8].copy_from_slice(&(len - 1).to_le_bytes());
    }));
    let mut failures = Vec::new();
    for (i, (name, craft)) in all.iter().enumerate() {
        let mut image = base.clone();
        let (leaf, cell, value) = catalog_cell(&mut image, 4096);
        assert_eq!(&image[value + 26..value + 33], b"KEYMARK");
        craft(&mut image, cell, value);
        restamp(&mut image, 4096, leaf);
        let path = dir.path().join(format!("crafted{i}"));
        std::fs::write(&path, &image).unwrap();
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
            let db = open_at(&path, 4096).map_err(|e| format!("open: {e}"))?;
            let r = db.begin_read().unwrap();
            // The crafted commit is the one opened, not the one before.
            if !r.table_exists("u").unwrap_or(false) {
                return Err("open fell back to the older commit".into());
            }
            let corrupted = |e: Option<Error>| matches!(e, Some(Error::Corrupted { .. }));
            let e = r.open_typed(MARKED).err();
            if !corrupted(e) {
                return Err(format!(
                    "read open_typed: {:?}",
                    r.open_typed(MARKED).map(|t| t.len())
                ));
            }
            if !corrupted(r.open_table("t").err()) {
                return Err("read open_table is not Corrupted".into());
            }
            r.open_table("u").map_err(|e| format!("open u: {e}"))?;
            let report = r.check_report();
            if !report
                .errors
                .iter()
                .any(|e| e.reason == "invalid catalog entry")
            {
                return Err(format!("check: {:?}", report.errors));
            }
            if db.check().is_ok() {
                return Err("check() is Ok".into());
            }
            let copy = dir.path().join(format!("copy{i}"));
            if r.copy_to(&copy, true).is_ok() {
                return Err("compacted copy succeeded".into());
            }
            drop(r);
            let w = db.begin_write().unwrap();
            if !corrupted(w.open_typed(MARKED).err()) {
                return Err("write open_typed is not Corrupted".into());
            }
            drop(w);
            let mut w = db.begin_write().unwrap();
            if w.delete_table("t").is_ok() {
                return Err("delete_table of a crafted entry succeeded".into());
            }
            drop(w);
            // Whatever compaction does, it does not panic.
            let _ = db.compact();
            Ok(())
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{name}: {e}")),
            Err(_) => failures.push(format!("{name}: panicked")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Held: both flags set in the file over a whole typed table's record
/// make it a typed multimap (format 7), whose tree is not a multimap's:
/// it opens as a typed multimap of its names and as no other kind
/// (`TableTypeMismatch`), its reads are `Ok` or `Corrupted` (never a panic),
/// and `check` reports its layout.
#[test]
fn held_both_flags_over_a_typed_table_make_a_typed_multimap() {
    const AS_MULTI: larch::MultimapTableDefinition<KeyMark, &str> =
        larch::MultimapTableDefinition::new("t");
    let dir = tempfile::tempdir().unwrap();
    let mut image = marked_image(&dir.path().join("base"));
    let (leaf, _, value) = catalog_cell(&mut image, 4096);
    assert_eq!(image[value + 20], 1, "a typed table's flags");
    image[value + 20] = 3;
    restamp(&mut image, 4096, leaf);
    let path = dir.path().join("crafted");
    std::fs::write(&path, &image).unwrap();
    let db = open_at(&path, 4096).unwrap();
    let r = db.begin_read().unwrap();
    assert_eq!(
        r.table_kind("t").unwrap(),
        Some(larch::TableKind::TypedMultimap {
            key: "KEYMARK".into(),
            value: "str".into()
        })
    );
    let mismatch = |e: Option<Error>| matches!(e, Some(Error::TableTypeMismatch { .. }));
    assert!(mismatch(r.open_typed(MARKED).err()));
    assert!(mismatch(r.open_table("t").err()));
    assert!(mismatch(r.open_multimap("t").err()));
    let m = r.open_typed_multimap(AS_MULTI).unwrap();
    let ok_or_corrupted = |e: &Error| matches!(e, Error::Corrupted { .. });
    for e in [
        m.len().err(),
        m.count(3).err(),
        m.get(3).unwrap().find_map(|v| v.err()),
        m.iter().unwrap().find_map(|p| p.err()),
        m.keys::<u32>(..).unwrap().find_map(|p| p.err()),
        m.keys::<u32>(..).unwrap().rev().find_map(|p| p.err()),
    ]
    .into_iter()
    .flatten()
    {
        assert!(ok_or_corrupted(&e), "{e:?}");
    }
    let report = r.check_report();
    assert!(
        report.errors.iter().any(|e| e.reason.contains("multimap")),
        "{:?}",
        report.errors
    );
    drop(r);
    let w = db.begin_write().unwrap();
    assert!(mismatch(w.open_typed(MARKED).err()));
    assert!(w.open_typed_multimap(AS_MULTI).is_ok());
}

// ---------------------------------------------------------------------------
// Power loss.
// ---------------------------------------------------------------------------

/// What the typed API sees of the tables: per table, which definition
/// opens it and its entries' bytes.
fn typed_state(db: &Database) -> Vec<String> {
    const T1A: TableDefinition<u64, &str> = TableDefinition::new("t1");
    const T1B: TableDefinition<i32, u8> = TableDefinition::new("t1");
    let t2: TableDefinition<Named<3000>, Named<40>> = TableDefinition::new("t2");
    let t3: TableDefinition<Named<20000>, u64> = TableDefinition::new("t3");
    let r = db.begin_read().unwrap();
    let mut out = Vec::new();
    for name in r.list_tables().unwrap() {
        let how = match name.as_str() {
            "t1" => match (r.open_typed(T1A).is_ok(), r.open_typed(T1B).is_ok()) {
                (true, false) => "A",
                (false, true) => "B",
                other => panic!("t1 opens as {other:?}"),
            },
            "t2" => {
                r.open_typed(t2).unwrap();
                "t2"
            }
            "t3" => {
                r.open_typed(t3).unwrap();
                "t3"
            }
            _ => "?",
        };
        let entries = common::collect(r.open_table(&name).unwrap().iter().unwrap());
        out.push(format!("{name} as {how}: {entries:?}"));
    }
    out
}

fn typed_step(db: &Database, step: u32) {
    const T1A: TableDefinition<u64, &str> = TableDefinition::new("t1");
    const T1B: TableDefinition<i32, u8> = TableDefinition::new("t1");
    let t2: TableDefinition<Named<3000>, Named<40>> = TableDefinition::new("t2");
    let t3: TableDefinition<Named<20000>, u64> = TableDefinition::new("t3");
    let mut w = db.begin_write().unwrap();
    match step {
        0 => {
            let mut t = w.open_typed(T1A).unwrap();
            for i in 0..20 {
                t.insert(i, "one").unwrap();
            }
        }
        1 => {
            w.open_typed(t2).unwrap().insert(1, 2).unwrap();
        }
        2 => {
            w.open_typed(t3).unwrap().insert(3, 4).unwrap();
        }
        3 => {
            assert!(w.delete_table("t1").unwrap());
            w.open_typed(T1B).unwrap().insert(-5, 5).unwrap();
        }
        4 => {
            w.open_table("t2")
                .unwrap()
                .insert(&7u64.to_be_bytes(), &8u64.to_be_bytes())
                .unwrap();
            w.open_typed(t3).unwrap().insert(9, 10).unwrap();
        }
        _ => {
            assert!(w.delete_table("t2").unwrap());
            assert!(w.delete_table("t3").unwrap());
        }
    }
    w.commit().unwrap();
}

/// Held: a power loss at every sync of commits that create typed tables
/// (catalog values inline, packed and in an overflow run), recreate one
/// with other types, write one through the byte API and delete them, with
/// the pending writes lost, made or torn: every image opens to the last
/// acknowledged commit or the one in flight, types included, and `check`
/// is clean.
#[test]
fn held_power_loss_during_typed_table_creation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // The file exists before the recorder sees it: crashes while it is
    // made are not under test.
    drop(open_at(&path, 512).unwrap());
    use common::crash_images::{CrashImages, crash_images};
    let CrashImages {
        recorder,
        images,
        acked,
    } = crash_images(3);
    let rec = recorder.clone();
    let o = Options::new().page_size(512).storage(move |f| rec.wrap(f));
    // SAFETY: the test owns the file.
    let db = unsafe { o.open(&path) }.unwrap();
    let mut states = vec![typed_state(&db)];
    for step in 0..6u32 {
        typed_step(&db, step);
        states.push(typed_state(&db));
        *acked.lock().unwrap() += 1;
    }
    drop(db);
    let images = std::mem::take(&mut *images.lock().unwrap());
    assert!(images.len() > 20, "{}", images.len());
    eprintln!("{} crash images", images.len());
    for (n, (image, k)) in images.iter().enumerate() {
        let p = dir.path().join(format!("crash{n}"));
        std::fs::write(&p, image).unwrap();
        let db = common::open(&p, 512);
        let got = typed_state(&db);
        assert!(
            got == states[*k] || got == states[(k + 1).min(states.len() - 1)],
            "image {n}: not commit {k} or the next: {got:?}"
        );
        assert_clean(&db);
        drop(db);
        let _ = std::fs::remove_file(&p);
    }
}
