//! Red team of the CLI's multimaps: `larch dump` writes a multimap as a
//! dupsort section (`duplicates=1`), `larch load` makes such a section a
//! multimap, `larch stat` names it.
//!
//! Attacks: dump/load round trips (both formats) of multimaps whose keys
//! and values hold zero bytes, line breaks, carriage returns, backslashes,
//! every byte, long values and a key with many values, beside a byte
//! table, a typed table and an empty multimap; `dump --table` of a
//! multimap; a dupsort section loaded into an existing byte table, and a
//! plain one into a multimap (must fail with nothing loaded); the two
//! kinds of section under one name in one dump; `duplicates=` with odd
//! values; LMDB's own dupsort flag line (`dupsort=1`); a pair too long for
//! a multimap (which line the error names); and against the real
//! `mdb_load` / `mdb_dump`: a larch multimap through LMDB and back, an
//! LMDB dupsort database through larch and back.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use larch::{Database, TableKind};

mod common;

use common::*;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// `larch load db` of `dump`: its exit status and standard error.
fn load(db: &Path, extra: &[&str], dump: &str) -> (bool, String) {
    let mut args = vec!["load", s(db)];
    args.extend(extra);
    let out = larch_with_input(&args, Some(dump.as_bytes()));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (out.status.success(), err)
}

fn load_ok(db: &Path, dump: &str) {
    let (good, err) = load(db, &[], dump);
    assert!(good, "load failed: {err}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn open(path: &Path) -> Database {
    // SAFETY: the test owns the file; the CLI runs only once it is closed.
    unsafe { Database::open(path) }.unwrap()
}

fn close(db: Database) {
    let _no_spawn = spawn_lock();
    drop(db);
}

/// Every table of `path`: its kind and its pairs (a multimap's pairs, a
/// byte table's entries).
fn tables(path: &Path) -> BTreeMap<String, (TableKind, Pairs)> {
    let db = open(path);
    let mut out = BTreeMap::new();
    {
        let r = db.begin_read().unwrap();
        for name in r.list_tables().unwrap() {
            let kind = r.table_kind(&name).unwrap().expect("listed");
            let pairs: Pairs = if kind.is_multimap() {
                let m = r.open_untyped_multimap(&name).unwrap();
                m.iter()
                    .unwrap()
                    .map(|p| p.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                    .collect()
            } else {
                let t = r.open_table(&name).unwrap();
                t.iter()
                    .unwrap()
                    .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                    .collect()
            };
            out.insert(name, (kind, pairs));
        }
    }
    close(db);
    out
}

/// Pairs with every awkward byte: zero bytes, line feeds, carriage
/// returns, backslashes, every byte value, an empty key and values, long
/// values, a key with many values and keys that are prefixes of others.
fn awkward_pairs() -> Pairs {
    let all: Vec<u8> = (0..=255).collect();
    let mut pairs: Pairs = vec![
        (b"".to_vec(), b"".to_vec()),
        (b"".to_vec(), b"\0".to_vec()),
        (b"\0".to_vec(), b"".to_vec()),
        (b"\0\0".to_vec(), b"\0\0".to_vec()),
        (b"a".to_vec(), b"1".to_vec()),
        (b"a".to_vec(), b"1\0".to_vec()),
        (b"a".to_vec(), b"1\n".to_vec()),
        (b"a\0".to_vec(), b"x".to_vec()),
        (b"a\0b".to_vec(), b"y".to_vec()),
        (b"a\n".to_vec(), b"line\nbreak\r\n".to_vec()),
        (b"\\".to_vec(), b"\\\\x41\\".to_vec()),
        (b"\r".to_vec(), b"\r".to_vec()),
        (vec![0xff; 3], all.clone()),
        (all.clone(), all.iter().rev().copied().collect()),
        (b"long".to_vec(), vec![b'\n'; 20_000]),
        (
            b"long".to_vec(),
            (0..40_000u32).map(|i| (i % 251) as u8).collect(),
        ),
        (vec![b'K'; 3000], b"long key".to_vec()),
    ];
    for i in 0..600u32 {
        pairs.push((b"many".to_vec(), format!("{i:05}\0\n").into_bytes()));
    }
    pairs.sort();
    pairs.dedup();
    pairs
}

/// A database with multimap `m` of `pairs`, an empty multimap `empty`, a
/// byte table `plain` and a typed table `typed`.
fn make_db(path: &Path, pairs: &Pairs) {
    let db = open(path);
    {
        let w = db.begin_write().unwrap();
        {
            let mut m = w.open_multimap("m").unwrap();
            for (k, v) in pairs {
                m.insert(k, v).unwrap();
            }
        }
        w.open_multimap("empty").unwrap();
        {
            let mut t = w.open_table("plain").unwrap();
            t.insert(b"k\0", b"v\n").unwrap();
        }
        {
            const TYPED: larch::TableDefinition<u64, &str> = larch::TableDefinition::new("typed");
            let mut t = w.open_typed(TYPED).unwrap();
            t.insert(7u64, "seven").unwrap();
        }
        {
            const TAGS: larch::MultimapTableDefinition<u64, &str> =
                larch::MultimapTableDefinition::new("tags");
            let mut t = w.open_typed_multimap(TAGS).unwrap();
            for v in ["b", "a\n", "c\0"] {
                t.insert(7u64, v).unwrap();
            }
            t.insert(0u64, "zero").unwrap();
        }
        w.commit().unwrap();
    }
    close(db);
}

/// Held: a database with multimaps (awkward bytes, long values, a key
/// with 600 values, and an empty one) beside a byte table and a typed
/// table, dumped in either format and loaded into a new database, holds
/// the same pairs, and every multimap is a multimap again (the empty one
/// too); its dump is the first dump; `dump --table` of a multimap is its
/// section of the whole dump; `stat` names the multimaps with their
/// counts.
#[test]
fn held_multimap_round_trips_with_awkward_bytes() {
    let d = Dir::new();
    let pairs = awkward_pairs();
    let a = d.path("a.larch");
    make_db(&a, &pairs);
    let before = tables(&a);
    assert_eq!(before["m"].1, pairs);
    for (i, format) in [&[][..], &["-p"][..]].iter().enumerate() {
        let mut args = vec!["dump"];
        args.extend(*format);
        args.push(s(&a));
        let dump = ok(&args);
        assert!(
            dump.contains("database=m\ntype=btree\nduplicates=1\n"),
            "{format:?}"
        );
        assert!(
            dump.contains("database=empty\ntype=btree\nduplicates=1\n"),
            "{format:?}"
        );
        assert!(
            dump.contains("database=tags\ntype=btree\nduplicates=1\n"),
            "{format:?}: a typed multimap dumps as a multimap"
        );
        assert!(dump.is_ascii(), "{format:?}: a dump is text");
        let b = d.path(&format!("b{i}.larch"));
        load_ok(&b, &dump);
        let after = tables(&b);
        for (name, (kind, got)) in &before {
            let (kind2, got2) = &after[name];
            // A typed table is dumped as bytes, and loaded as bytes; a
            // typed multimap as a multimap of bytes.
            match kind {
                TableKind::Typed { .. } => {}
                TableKind::TypedMultimap { .. } => {
                    assert_eq!(*kind2, TableKind::Multimap, "{format:?}: {name}")
                }
                _ => assert_eq!(kind2, kind, "{format:?}: the kind of {name}"),
            }
            assert!(got2 == got, "{format:?}: the pairs of {name} changed");
        }
        assert_eq!(
            strip_mapsize(&ok(&[&args[..args.len() - 1], &[s(&b)]].concat())),
            strip_mapsize(&dump),
            "{format:?}: the reloaded database dumps otherwise"
        );
        // dump --table of the multimap: its section.
        let mut targs = vec!["dump", "--table", "m"];
        targs.extend(*format);
        targs.push(s(&a));
        let one = strip_mapsize(&ok(&targs));
        assert!(one.starts_with("VERSION=3\n") && one.ends_with("DATA=END\n"));
        assert!(
            strip_mapsize(&dump).contains(&one),
            "{format:?}: dump --table m"
        );
        let c = d.path(&format!("c{i}.larch"));
        load_ok(&c, &one);
        let only = tables(&c);
        assert_eq!(only.len(), 1);
        assert!(
            only["m"] == before["m"],
            "{format:?}: dump --table m reloaded"
        );
    }
    let stat = ok(&["stat", s(&a)]);
    let n = pairs.len();
    assert!(
        stat.contains(&format!("\"m\" (multimap, {n} pairs)")),
        "{stat}"
    );
    assert!(stat.contains("\"empty\" (multimap, 0 pairs)"), "{stat}");
    assert!(
        stat.contains("\"tags\" (multimap u64 -> str, 4 pairs)"),
        "{stat}"
    );
    let one = ok(&["stat", s(&a), "--table", "m"]);
    assert!(
        one.starts_with(&format!("\"m\" (multimap, {n} pairs)")),
        "{one}"
    );
}

/// A dump of one section, hex.
fn section(name: &str, extra_header: &str, pairs: &[(&[u8], &[u8])]) -> String {
    let mut out = format!(
        "VERSION=3\nformat=bytevalue\ndatabase={name}\ntype=btree\n{extra_header}HEADER=END\n"
    );
    for (k, v) in pairs {
        out += &format!(" {}\n {}\n", hex(k), hex(v));
    }
    out + "DATA=END\n"
}

/// Held: a dupsort section for an existing byte table, a plain section
/// for an existing multimap, and both kinds of section under one new name
/// in one dump (either order), each fail in one line that names the
/// table, and nothing is loaded: neither the sections before nor the
/// pairs; a database the load would have created is not left behind.
#[test]
fn held_a_section_of_the_other_kind_fails_with_nothing_loaded() {
    let d = Dir::new();
    let db = d.path("db.larch");
    make_db(&db, &vec![(b"k".to_vec(), b"v".to_vec())]);
    let before = tables(&db);
    let first = section("new", "", &[(b"a", b"b")]);
    let cases = [
        (
            "dupsort into a byte table",
            first.clone() + &section("plain", "duplicates=1\n", &[(b"x", b"1"), (b"x", b"2")]),
        ),
        (
            "dupsort into a typed table",
            first.clone() + &section("typed", "duplicates=1\n", &[(b"x", b"1")]),
        ),
        (
            "plain into a multimap",
            first.clone() + &section("m", "", &[(b"x", b"1")]),
        ),
        (
            "plain into a multimap, duplicates=0",
            first.clone() + &section("m", "duplicates=0\n", &[(b"x", b"1")]),
        ),
        (
            "dupsort then plain, one name",
            section("two", "duplicates=1\n", &[(b"x", b"1")])
                + &section("two", "", &[(b"x", b"2")]),
        ),
        (
            "plain then dupsort, one name",
            section("two", "", &[(b"x", b"1")])
                + &section("two", "duplicates=1\n", &[(b"x", b"2")]),
        ),
    ];
    for (what, dump) in &cases {
        let (good, err) = load(&db, &[], dump);
        assert!(!good, "{what}: loaded");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        assert!(err.contains("nothing was loaded"), "{what}: {err}");
        assert!(tables(&db) == before, "{what}: the database changed");
        if what.contains("typed") {
            continue; // A dump makes no typed table.
        }
        // Into a database the load creates: none is left.
        let fresh = d.path("fresh.larch");
        let (good, err) = load(
            &fresh,
            &[],
            &(section("plain", "", &[]) + &section("m", "duplicates=1\n", &[]) + dump),
        );
        assert!(!good, "{what}: loaded into a new database");
        assert!(
            !fresh.exists(),
            "{what}: a failed load left {}: {err}",
            fresh.display()
        );
    }
    // --table with a dupsort section, into the byte table.
    let (good, err) = load(
        &db,
        &["--table", "plain"],
        &section("x", "duplicates=1\n", &[(b"k", b"v")]),
    );
    assert!(
        !good && err.contains("--table") && err.contains("nothing was loaded"),
        "{err}"
    );
    assert!(tables(&db) == before);
}

/// Held: `duplicates=` with anything but `0` or `1` is refused on its
/// line, with nothing loaded.
#[test]
fn held_odd_duplicates_values_are_refused() {
    let d = Dir::new();
    let db = d.path("db.larch");
    make_db(&db, &vec![(b"k".to_vec(), b"v".to_vec())]);
    let before = tables(&db);
    for value in [
        "", "2", "01", "1 ", " 1", "yes", "true", "-1", "0x1", "\u{FF11}", "1=1",
    ] {
        let dump = section("z", &format!("duplicates={value}\n"), &[(b"a", b"b")]);
        let (good, err) = load(&db, &[], &dump);
        assert!(!good, "duplicates={value:?} loaded");
        assert!(
            err.contains("line 5") && err.contains("duplicates"),
            "{value:?}: {err}"
        );
        assert!(tables(&db) == before, "{value:?}");
    }
}

/// Defect if it fails: LMDB's own flag line for sorted duplicates is
/// `dupsort=1` (it is what `mdb_load` reads; `mdb_dump` writes it beside
/// `duplicates=1`). A section with `dupsort=1` alone is loaded by
/// `larch load` as a plain table: a key's values overwrite each other and
/// all but the last are silently lost (the load succeeds). It should load
/// a multimap, or be refused.
#[test]
fn a_dupsort_flag_line_is_not_silently_flattened() {
    let d = Dir::new();
    let db = d.path("db.larch");
    let dump = section(
        "tags",
        "dupsort=1\n",
        &[(b"k", b"a"), (b"k", b"b"), (b"l", b"c")],
    );
    let (good, err) = load(&db, &[], &dump);
    if !good {
        // Refused: no data lost.
        assert!(err.contains("nothing was loaded"), "{err}");
        return;
    }
    let got = tables(&db);
    let (kind, pairs) = &got["tags"];
    assert!(
        *kind == TableKind::Multimap && pairs.len() == 3,
        "a section with dupsort=1 (LMDB's sorted duplicates) loaded as {kind:?} with {} of its 3 pairs: {pairs:?}",
        pairs.len()
    );
}

/// Defect if it fails: a pair too long for a multimap (a one-byte key, a
/// 65,535-byte value) is refused, but the error names the key's line and
/// calls the pair a "key of 65539 bytes": the line that is too long is
/// the value's, and the key is one byte.
#[test]
fn a_multimap_pair_too_long_names_the_value() {
    let d = Dir::new();
    let db = d.path("db.larch");
    let value = vec![b'A'; 65_535];
    let dump = section("m", "duplicates=1\n", &[(b"ok", b"1"), (b"k", &value)]);
    // Lines: 1-5 header, 6 HEADER=END... count: VERSION, format, database,
    // type, duplicates, HEADER=END = 6; pair one on 7-8; the key on 9,
    // the value on 10.
    let (good, err) = load(&db, &[], &dump);
    assert!(!good, "loaded a pair longer than a multimap holds");
    assert!(err.contains("nothing was loaded"), "{err}");
    assert!(!db.exists());
    assert!(
        err.contains("line 10") && !err.contains("key of"),
        "the error blames the 1-byte key on line 9 for the 65,535-byte value on line 10: {err}"
    );
}

// ---------------------------------------------------------------------------
// Against LMDB's tools.
// ---------------------------------------------------------------------------

fn lmdb_tools() -> bool {
    let present = Command::new("mdb_load")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        eprintln!(
            "mdb_load/mdb_dump not installed (Debian's lmdb-utils): LMDB interop attacks skipped"
        );
    }
    present
}

fn run(program: &str, args: &[&str]) -> String {
    let out = run_with_input(program, args, None);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("dumps are ASCII")
}

/// The pairs of every section of a hex dump, by table name.
fn parse_hex_dump(dump: &str) -> BTreeMap<String, Pairs> {
    let mut out = BTreeMap::new();
    let mut lines = dump.lines();
    while let Some(line) = lines.next() {
        assert_eq!(line, "VERSION=3", "{dump}");
        let mut name = String::new();
        for l in lines.by_ref() {
            if l == "HEADER=END" {
                break;
            }
            if let Some(n) = l.strip_prefix("database=") {
                name = n.to_owned();
            }
        }
        let mut pairs = Pairs::new();
        loop {
            let k = lines.next().expect("data");
            if k == "DATA=END" {
                break;
            }
            let v = lines.next().expect("value");
            pairs.push((unhex(&k[1..]), unhex(&v[1..])));
        }
        out.insert(name, pairs);
    }
    out
}

/// Pairs LMDB takes in a dupsort database: keys of 1 to 511 bytes, values
/// of 1 to 511 (zero bytes, line breaks, prefixes of one another, many
/// values to a key).
fn lmdb_pairs() -> Pairs {
    let mut pairs: Pairs = vec![
        (b"\0".to_vec(), b"\0".to_vec()),
        (b"\0".to_vec(), b"\0\0".to_vec()),
        (b"\0".to_vec(), b"\x01".to_vec()),
        (b"\0\0".to_vec(), b"z".to_vec()),
        (b"a".to_vec(), b"1".to_vec()),
        (b"a".to_vec(), b"1\0".to_vec()),
        (b"a".to_vec(), b"1\n".to_vec()),
        (b"a".to_vec(), b"2".to_vec()),
        (b"a\0".to_vec(), b"x".to_vec()),
        (b"a\0\0".to_vec(), b"x".to_vec()),
        (b"a\x01".to_vec(), b"y".to_vec()),
        (b"b\n".to_vec(), vec![0xff; 511]),
        (vec![b'K'; 511], vec![b'\n'; 511]),
        (vec![0xff; 511], (0..=254).collect()),
    ];
    for i in 0..300u32 {
        pairs.push((b"many".to_vec(), format!("{i:04}\0").into_bytes()));
    }
    pairs.sort();
    pairs
}

/// Defect if it fails: a larch multimap dumped by `larch dump` and loaded
/// by LMDB's `mdb_load` must come back from `mdb_dump` with all its
/// pairs. `mdb_load` does not know `duplicates=1` ("unrecognized keyword
/// ignored: duplicates"); its flag is `dupsort=1`, which larch does not
/// write. So LMDB makes a plain database, each key's values overwrite one
/// another, and only the last value of every key is left, with
/// `mdb_load` succeeding.
#[test]
fn a_larch_multimap_survives_mdb_load() {
    if !lmdb_tools() {
        return;
    }
    let d = Dir::new();
    let db = d.path("db.larch");
    let pairs = lmdb_pairs();
    {
        let database = open(&db);
        let w = database.begin_write().unwrap();
        {
            let mut m = w.open_multimap("tags").unwrap();
            for (k, v) in &pairs {
                m.insert(k, v).unwrap();
            }
        }
        w.commit().unwrap();
        close(database);
    }
    let dump = ok(&["dump", s(&db)]);
    let file = d.path("larch.dump");
    std::fs::write(&file, &dump).unwrap();
    let env = d.path("env");
    std::fs::create_dir(&env).unwrap();
    let out = run_with_input("mdb_load", &["-f", s(&file), s(&env)], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warning = String::from_utf8_lossy(&out.stderr).into_owned();
    let back = parse_hex_dump(&run("mdb_dump", &["-a", s(&env)]));
    let got = back.get("tags").cloned().unwrap_or_default();
    assert!(
        got == pairs,
        "a larch multimap of {} pairs came back from LMDB with {} (mdb_load said: {:?}); \
         larch dump writes `duplicates=1` but not `dupsort=1`",
        pairs.len(),
        got.len(),
        warning.trim()
    );
}

/// Held, then defect if it fails: an LMDB dupsort database dumped by
/// `mdb_dump` loads into larch as a multimap with every pair, in LMDB's
/// order (keys and values with zero bytes, prefixes of one another); the
/// larch dump of it lists the same pairs in the same order as
/// `mdb_dump`'s (held). Loaded back into LMDB, the pairs must all be
/// there (see `a_larch_multimap_survives_mdb_load`).
#[test]
fn an_lmdb_dupsort_database_goes_through_larch_and_back() {
    if !lmdb_tools() {
        return;
    }
    let d = Dir::new();
    let pairs = lmdb_pairs();
    let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    let source = d.path("source.dump");
    std::fs::write(
        &source,
        section("tags", "dupsort=1\nmapsize=16777216\n", &refs),
    )
    .unwrap();
    let env1 = d.path("env1");
    std::fs::create_dir(&env1).unwrap();
    run("mdb_load", &["-f", s(&source), s(&env1)]);
    let dump1 = run("mdb_dump", &["-a", s(&env1)]);
    assert!(
        dump1.contains("duplicates=1\n") && dump1.contains("dupsort=1\n"),
        "{dump1}"
    );
    assert_eq!(parse_hex_dump(&dump1)["tags"], pairs, "LMDB's own order");

    let db = d.path("db.larch");
    load_ok(&db, &dump1);
    let (kind, got) = tables(&db)["tags"].clone();
    assert_eq!(kind, TableKind::Multimap);
    assert!(
        got == pairs,
        "larch holds {} of {} pairs",
        got.len(),
        pairs.len()
    );
    let dump2 = ok(&["dump", s(&db)]);
    assert!(
        parse_hex_dump(&dump2)["tags"] == pairs,
        "larch dumps the pairs otherwise than mdb_dump"
    );

    let again = d.path("again.dump");
    std::fs::write(&again, &dump2).unwrap();
    let env2 = d.path("env2");
    std::fs::create_dir(&env2).unwrap();
    run("mdb_load", &["-f", s(&again), s(&env2)]);
    let dump3 = run("mdb_dump", &["-a", s(&env2)]);
    let back = parse_hex_dump(&dump3).remove("tags").unwrap_or_default();
    assert!(
        back == pairs,
        "an LMDB dupsort database through larch and back into LMDB keeps {} of its {} pairs \
         (larch's dump lacks `dupsort=1`: the reload is not dupsort: {})",
        back.len(),
        pairs.len(),
        dump3.lines().take(9).collect::<Vec<_>>().join("|")
    );
}
