//! Every subcommand of the `larch` binary, run as a user would.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

#[test]
fn put_get_del_scan() {
    let d = Dir::new();
    let db = d.path("db.larch");
    let db = s(&db);
    ok(&["put", db, "fruit", "apple", "red"]);
    ok(&["put", db, "fruit", "banana", "yellow"]);
    ok(&["put", db, "fruit", "cherry", "dark\\red\nand ripe"]);
    ok(&["put", "--hex", db, "bin", "00ff10", "deadbeef"]);
    assert_eq!(ok(&["get", db, "fruit", "apple"]), "red\n");
    assert_eq!(ok(&["get", "--hex", db, "fruit", "6170706c65"]), "726564\n");
    assert_eq!(ok(&["get", "--hex", db, "bin", "00ff10"]), "deadbeef\n");
    assert!(fails(&["get", db, "fruit", "durian"]).contains("key not found"));
    assert!(fails(&["get", db, "vegetables", "leek"]).contains("no table named"));

    assert_eq!(
        ok(&["scan", db, "fruit"]),
        "apple\tred\nbanana\tyellow\ncherry\tdark\\\\red\\0aand ripe\n"
    );
    assert_eq!(
        ok(&["scan", db, "fruit", "--from", "b", "--to", "c"]),
        "banana\tyellow\n"
    );
    assert_eq!(ok(&["scan", db, "fruit", "--limit", "1"]), "apple\tred\n");
    assert_eq!(ok(&["scan", "--hex", db, "bin"]), "00ff10\tdeadbeef\n");

    ok(&["del", db, "fruit", "banana"]);
    assert!(fails(&["del", db, "fruit", "banana"]).contains("key not found"));
    assert_eq!(ok(&["scan", db, "fruit", "--to", "c"]), "apple\tred\n");
    assert!(fails(&["put", "--hex", db, "bin", "0g", "00"]).contains("hex"));
}

#[test]
fn stat_and_check() {
    let d = Dir::new();
    let db = d.path("db.larch");
    let db = s(&db);
    for i in 0..300 {
        ok(&["put", db, "t", &format!("key{i:04}"), &"v".repeat(i)]);
    }
    let stat = ok(&["stat", db]);
    assert!(stat.contains("page size: 4096"), "{stat}");
    assert!(stat.contains("last transaction: 300"), "{stat}");
    assert!(stat.contains("tables: 1"), "{stat}");
    assert!(stat.contains("\"t\": 300 entries, depth 2"), "{stat}");
    let table = ok(&["stat", db, "--table", "t"]);
    assert!(table.starts_with("\"t\": 300 entries"), "{table}");
    let check = ok(&["check", db]);
    assert!(check.ends_with("ok\n"), "{check}");
    assert!(check.contains("300 entries"), "{check}");
    // A value too long for its leaf is packed into the value heap.
    ok(&["put", db, "u", "long", &"w".repeat(2000)]);
    let stat = ok(&["stat", db]);
    assert!(
        stat.contains("value heap: 1 segments, 1 pages, 2000 bytes"),
        "{stat}"
    );
    assert!(stat.contains("1 packed values (2000 bytes)"), "{stat}");
    let check = ok(&["check", db]);
    assert!(check.contains("value heap: 1 segments"), "{check}");
    assert!(check.ends_with("ok\n"), "{check}");
}

#[test]
fn check_fails_on_a_damaged_file() {
    let d = Dir::new();
    for class in larch::testing::corrupt::CLASSES {
        let path = d.path(&format!("{class:?}"));
        std::fs::write(&path, larch::testing::corrupt::damaged_image(class)).unwrap();
        let out = larch(&["check", s(&path)]);
        assert!(!out.status.success(), "{class:?} passed check");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("panicked"), "{class:?}: {text}");
        assert!(
            text.contains("problem") || text.contains("corrupted"),
            "{class:?}: {text}"
        );
    }
}

#[test]
fn foreign_files_give_one_line_errors() {
    let d = Dir::new();
    let text = d.path("notes.txt");
    std::fs::write(&text, "not a database\n".repeat(1000)).unwrap();
    let empty = d.path("empty");
    std::fs::write(&empty, b"").unwrap();
    let missing = d.path("missing.larch");
    for path in [&text, &empty, &missing] {
        for cmd in [&["stat"][..], &["check"], &["dump"], &["scan"]] {
            let mut args = cmd.to_vec();
            args.push(s(path));
            if cmd == ["scan"] {
                args.push("t");
            }
            let err = fails(&args);
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("larch: "), "{err}");
        }
    }
    assert!(fails(&["stat", s(&text)]).contains("not a larch database"));
    // Nothing was created or changed.
    assert!(!missing.exists());
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    assert_eq!(
        std::fs::read(&text).unwrap(),
        "not a database\n".repeat(1000).as_bytes()
    );
}

/// A database another process (this test's) holds open is read and written
/// beside it: each side sees the other's commits without reopening, and a
/// write transaction held there turns `--no-wait` away in one line.
#[test]
fn a_database_open_elsewhere_is_shared_with_it() {
    let d = Dir::new();
    let path = d.path("db.larch");
    ok(&["put", s(&path), "t", "k", "v"]);
    // SAFETY: the test owns the file; only larch handles touch it.
    let db = unsafe { larch::Database::open(&path) }.unwrap();
    let value = |key: &[u8]| {
        let r = db.begin_read().unwrap();
        let t = r.open_table("t").unwrap();
        t.get(key).unwrap().map(<[u8]>::to_vec)
    };
    assert_eq!(ok(&["get", s(&path), "t", "k"]), "v\n");
    ok(&["put", s(&path), "t", "k", "w"]);
    assert_eq!(value(b"k").as_deref(), Some(&b"w"[..]));
    let w = db.begin_write().unwrap();
    w.open_table("t").unwrap().insert(b"mine", b"1").unwrap();
    let err = fails(&["put", "--no-wait", s(&path), "t", "k", "x"]);
    assert!(
        err.contains("another process is writing this database"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    w.commit().unwrap();
    assert_eq!(ok(&["get", s(&path), "t", "mine"]), "1\n");
    assert_eq!(value(b"k").as_deref(), Some(&b"w"[..]));
    ok(&["del", "--no-wait", s(&path), "t", "k"]);
    assert_eq!(value(b"k"), None);
    assert!(ok(&["check", s(&path)]).ends_with("ok\n"));
    {
        let _closing = spawn_lock();
        drop(db);
    }
    assert_eq!(ok(&["scan", s(&path), "t"]), "mine\t1\n");
}

/// Binary keys with every byte value, empty values, a 1 MiB value (loaded
/// from a dump: a command-line argument cannot be that long).
fn fill(db: &str) {
    let all: String = (0..=255u8).map(|b| format!("{b:02x}")).collect();
    ok(&["put", "--hex", db, "bin", &all, ""]);
    ok(&["put", "--hex", db, "bin", "", "00"]);
    let dump = format!(
        "VERSION=3\nformat=bytevalue\ndatabase=bin\ntype=btree\nHEADER=END\n 0a0d5c\n {}\nDATA=END\n",
        "ab".repeat(1 << 20)
    );
    let out = larch_with_input(&["load", db], Some(dump.as_bytes()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..50 {
        ok(&["put", db, "text", &format!("k{i}"), &format!("value {i}")]);
    }
    ok(&["put", db, "text", "empty", ""]);
}

#[test]
fn dump_and_load_round_trip_between_larch_databases() {
    let d = Dir::new();
    let (a, b, c) = (d.path("a"), d.path("b"), d.path("c"));
    fill(s(&a));
    for print in [false, true] {
        let flag: &[&str] = if print { &["-p"] } else { &[] };
        let mut args = vec!["dump", s(&a)];
        args.extend(flag);
        let dump = ok(&args);
        assert!(dump.contains("database=bin\n") && dump.contains("database=text\n"));
        let target = if print { &c } else { &b };
        let out = larch_with_input(&["load", s(target)], Some(dump.as_bytes()));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut args = vec!["dump", s(target)];
        args.extend(flag);
        let again = ok(&args);
        assert!(
            strip_mapsize(&again) == strip_mapsize(&dump),
            "print={print}: dumps differ"
        );
    }
    // One table, to a file, loaded from the file under another name.
    let file = d.path("text.dump");
    ok(&["dump", s(&a), "--table", "text", "-f", s(&file)]);
    let e = d.path("e");
    ok(&["load", s(&e), "--table", "renamed", s(&file)]);
    assert_eq!(ok(&["get", s(&e), "renamed", "k7"]), "value 7\n");
    assert_eq!(
        ok(&["scan", s(&e), "renamed"]),
        ok(&["scan", s(&a), "text"])
    );
}

#[test]
fn a_table_name_the_dump_format_cannot_hold_is_refused() {
    let d = Dir::new();
    let db = d.path("db");
    ok(&["put", s(&db), "two\nlines", "k", "v"]);
    let err = fails(&["dump", s(&db)]);
    assert!(err.contains("line break"), "{err}");
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn malformed_loads_name_the_line_and_write_nothing() {
    let d = Dir::new();
    let db = d.path("db");
    ok(&["put", s(&db), "t", "before", "1"]);
    let good = "VERSION=3\nformat=bytevalue\ndatabase=t\ntype=btree\nHEADER=END\n 6b31\n 7631\n";
    let cases = [
        ("VERSION=9\nHEADER=END\nDATA=END\n".to_owned(), "line 1"),
        (
            format!("{good} 6b32\n 763\nDATA=END\n"),
            "line 9: odd number of hex digits",
        ),
        (
            format!("{good} 6b32\nDATA=END\n"),
            "line 9: a key without a value",
        ),
        (
            format!("{good} 6b32\n 7632\n"),
            "line 9: unexpected end of input",
        ),
        (
            format!("{good}DATA=END\nVERSION=3\nHEADER=END\n 00\n 00\nDATA=END\n"),
            "line 9: the section names no table",
        ),
        (
            "VERSION=3\nformat=print\ndatabase=t\nHEADER=END\n a\\q\n b\nDATA=END\n".to_owned(),
            "line 5",
        ),
    ];
    for (input, want) in cases {
        let out = larch_with_input(&["load", s(&db)], Some(input.as_bytes()));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{input:?} loaded");
        assert!(err.contains(want), "{input:?}: {err}");
        assert!(err.contains("nothing was loaded"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(ok(&["scan", s(&db), "t"]), "before\t1\n", "{input:?}");
    }
    let truncated = d.path("truncated.dump");
    std::fs::write(&truncated, &good.as_bytes()[..good.len() - 3]).unwrap();
    assert!(fails(&["load", s(&db), s(&truncated)]).contains("line 7"));
    assert_eq!(ok(&["scan", s(&db), "t"]), "before\t1\n");
}

#[test]
fn copies_plain_and_compact() {
    let d = Dir::new();
    let db = d.path("db");
    fill(s(&db));
    // Churn so the file has free pages a compact copy leaves out.
    for i in 0..50 {
        ok(&["del", s(&db), "text", &format!("k{i}")]);
    }
    ok(&["del", "--hex", s(&db), "bin", "0a0d5c"]);
    let (plain, compact) = (d.path("plain"), d.path("compact"));
    ok(&["copy", s(&db), s(&plain)]);
    ok(&["copy", s(&db), s(&compact), "--compact"]);
    let want = ok(&["dump", s(&db)]);
    for copy in [&plain, &compact] {
        assert!(ok(&["check", s(copy)]).ends_with("ok\n"));
        let got = ok(&["dump", s(copy)]);
        assert!(
            strip_mapsize(&got) == strip_mapsize(&want),
            "{copy:?}: dumps differ"
        );
    }
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&compact) * 4 < size(&plain),
        "{} vs {}",
        size(&compact),
        size(&plain)
    );
    assert!(fails(&["copy", s(&db), s(&plain)]).contains("exists"));
}

#[test]
fn compact_gives_the_free_tail_back() {
    let d = Dir::new();
    let db = d.path("db");
    fill(s(&db));
    // The megabyte value lies in the middle: the text keys came after it.
    ok(&["del", "--hex", s(&db), "bin", "0a0d5c"]);
    let want = ok(&["dump", s(&db)]);
    let before = std::fs::metadata(&db).unwrap().len();
    let said = ok(&["compact", s(&db)]);
    let after = std::fs::metadata(&db).unwrap().len();
    let returned: u64 = said.split_whitespace().next().unwrap().parse().unwrap();
    assert!(returned >= 1 << 20, "{said}");
    assert_eq!(returned, before - after, "{said}");
    assert!(ok(&["check", s(&db)]).ends_with("ok\n"));
    assert!(strip_mapsize(&ok(&["dump", s(&db)])) == strip_mapsize(&want));
    // Nothing more to give back.
    assert!(ok(&["compact", s(&db)]).starts_with("0 bytes returned"));
}

#[test]
fn bench_runs_and_reports_each_phase() {
    let d = Dir::new();
    let db = d.path("bench.larch");
    let out = ok(&["bench", s(&db), "--n", "20000"]);
    for phase in [
        "load, sorted",
        "random reads",
        "range scans",
        "batch writes",
        "single writes",
        "remove half",
        "check:",
    ] {
        assert!(out.contains(phase), "{phase}: {out}");
    }
    assert!(out.contains("ops/s"));
    // The database stays where it was asked for, and holds what was left.
    let stat = ok(&["stat", s(&db)]);
    assert!(stat.contains("\"bench\": 13000 entries"), "{stat}");
    assert!(fails(&["bench", s(&db), "--n", "20000"]).contains("exists"));
}

/// The bytes and modification time of a file, to show it was not touched.
fn snapshot(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let meta = std::fs::metadata(path).unwrap();
    (std::fs::read(path).unwrap(), meta.modified().unwrap())
}

#[test]
fn read_commands_never_initialise_or_create_a_file() {
    let d = Dir::new();
    let missing = d.path("missing.larch");
    let mut blanks = Vec::new();
    for len in [100usize, 8192, 128 << 10] {
        let path = d.path(&format!("zeros{len}"));
        std::fs::write(&path, vec![0u8; len]).unwrap();
        blanks.push(path);
    }
    let copy = d.path("copy");
    for path in blanks.iter().chain([&missing]) {
        let before = path.exists().then(|| snapshot(path));
        let p = s(path);
        let commands: [&[&str]; 6] = [
            &["stat", p],
            &["check", p],
            &["dump", p],
            &["get", p, "t", "k"],
            &["scan", p, "t"],
            &["copy", p, s(&copy)],
        ];
        for args in commands {
            let err = fails(args);
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            if before.is_some() {
                assert!(err.contains("not a larch database"), "{args:?}: {err}");
            }
            match &before {
                Some(b) => assert!(snapshot(path) == *b, "{args:?} changed the file"),
                None => assert!(!path.exists(), "{args:?} created the file"),
            }
            assert!(!copy.exists(), "{args:?}");
        }
    }
}

/// The names in a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn dump_refuses_to_write_over_the_database() {
    let d = Dir::new();
    let db = d.path("db");
    fill(s(&db));
    let before = std::fs::read(&db).unwrap();
    let link = d.path("link");
    std::os::unix::fs::symlink(&db, &link).unwrap();
    let hard = d.path("hard");
    std::fs::hard_link(&db, &hard).unwrap();
    let dotted = d
        .path("..")
        .join(d.0.path().file_name().unwrap())
        .join("db");
    for out in [s(&db), s(&link), s(&hard), s(&dotted)] {
        let err = fails(&["dump", s(&db), "-f", out]);
        assert!(err.contains("is the database"), "{out}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            std::fs::read(&db).unwrap() == before,
            "{out}: the database changed"
        );
    }
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(ok(&["check", s(&db)]).ends_with("ok\n"));
    // The lock file open keeps beside the database, and nothing else.
    assert_eq!(listing(d.0.path()), ["db", "db-lock", "hard", "link"]);
}

#[test]
fn a_failed_dump_leaves_the_output_as_it_was() {
    let d = Dir::new();
    let db = d.path("db");
    ok(&["put", s(&db), "a", "k", "v"]);
    let out = d.path("out.txt");
    std::fs::write(&out, "precious\n").unwrap();
    let err = fails(&["dump", s(&db), "--table", "nosuch", "-f", s(&out)]);
    assert!(err.contains("no table named"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious\n");
    assert_eq!(listing(d.0.path()), ["db", "db-lock", "out.txt"]);
    // A table the dump format cannot hold, after one it can: the output is
    // not half written either.
    ok(&["put", s(&db), "b\nc", "k", "v"]);
    let err = fails(&["dump", s(&db), "-f", s(&out)]);
    assert!(err.contains("line break"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious\n");
    assert_eq!(listing(d.0.path()), ["db", "db-lock", "out.txt"]);
    // A dump that succeeds replaces the file, keeping its permissions.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o640)).unwrap();
    ok(&["dump", s(&db), "--table", "a", "-f", s(&out)]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("database=a\n") && text.ends_with("DATA=END\n"),
        "{text}"
    );
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(listing(d.0.path()), ["db", "db-lock", "out.txt"]);
    // Through a symlink, the file it names is replaced, not the link.
    let link = d.path("link.txt");
    std::os::unix::fs::symlink(&out, &link).unwrap();
    std::fs::write(&out, "old\n").unwrap();
    ok(&["dump", s(&db), "--table", "a", "-f", s(&link)]);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
}

/// Runs `larch args`, reads one line of its output and closes the pipe.
fn first_line_then_close(args: &[&str]) -> (String, Output) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_larch"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run larch");
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    drop(reader);
    (line, child.wait_with_output().unwrap())
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let d = Dir::new();
    let db = d.path("db");
    fill(s(&db));
    // Far more than a pipe holds, for scan too.
    let mut dump = String::from("VERSION=3\nformat=print\ndatabase=many\nHEADER=END\n");
    for i in 0..3000 {
        dump += &format!(" {i:05}\n {}\n", "x".repeat(100));
    }
    dump += "DATA=END\n";
    let out = larch_with_input(&["load", s(&db)], Some(dump.as_bytes()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for args in [
        &["dump", s(&db)][..],
        &["dump", "-p", s(&db)],
        &["scan", s(&db), "many"],
    ] {
        let (line, out) = first_line_then_close(args);
        assert!(!line.is_empty(), "{args:?}");
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
    }
}

#[test]
fn a_failed_put_or_load_removes_the_file_it_created() {
    let d = Dir::new();
    let new = d.path("new.larch");
    let long_key = "k".repeat(65_537);
    assert!(fails(&["put", s(&new), "t", &long_key, "v"]).contains("longer than"));
    assert!(!new.exists());
    assert!(fails(&["put", "--hex", s(&new), "t", "0", "00"]).contains("hex"));
    assert!(!new.exists());
    let out = larch_with_input(&["load", s(&new)], Some(b"VERSION=3\nHEADER=END\n 6\n"));
    assert!(!out.status.success());
    assert!(!new.exists());
    // An empty dump is refused, and creates nothing either.
    for input in [&b""[..], b"\n"] {
        let out = larch_with_input(&["load", s(&new), "--table", "t"], Some(input));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{input:?}: {err}");
        assert!(
            err.contains("empty") || err.contains("line 1"),
            "{input:?}: {err}"
        );
        assert!(!new.exists());
    }
    // Neither the database nor its lock file is left behind.
    assert_eq!(listing(d.0.path()), Vec::<String>::new());
    // A lock file that was there before is not the command's to remove.
    let stale = d.path("new.larch-lock");
    std::fs::write(&stale, b"").unwrap();
    assert!(fails(&["put", s(&new), "t", &long_key, "v"]).contains("longer than"));
    assert_eq!(listing(d.0.path()), ["new.larch-lock"]);
    std::fs::remove_file(&stale).unwrap();
    // A file that existed stays, unchanged.
    let old = d.path("old.larch");
    ok(&["put", s(&old), "t", "k", "v"]);
    let before = std::fs::read(&old).unwrap();
    assert!(fails(&["put", s(&old), "t", &long_key, "v"]).contains("longer than"));
    let out = larch_with_input(&["load", s(&old)], Some(b""));
    assert!(!out.status.success());
    assert!(std::fs::read(&old).unwrap() == before);
    assert_eq!(ok(&["get", s(&old), "t", "k"]), "v\n");
}

#[test]
fn del_commits_nothing_when_there_is_nothing_to_remove() {
    let d = Dir::new();
    let db = d.path("db");
    ok(&["put", s(&db), "t", "k", "v"]);
    let before = snapshot(&db);
    let err = fails(&["del", s(&db), "nosuch", "k"]);
    assert!(err.contains("no table named \"nosuch\""), "{err}");
    assert!(fails(&["del", s(&db), "t", "absent"]).contains("key not found"));
    assert!(snapshot(&db) == before, "del committed a transaction");
    let stat = ok(&["stat", s(&db)]);
    assert!(stat.contains("last transaction: 1\n"), "{stat}");
    assert!(stat.contains("tables: 1\n"), "{stat}");
}

/// Runs `load` on `input` into a fresh database; returns its error line.
fn load_fails(d: &Dir, input: &[u8]) -> String {
    let db = d.path("target");
    ok(&["put", s(&db), "t", "before", "1"]);
    let file = d.path("input.dump");
    std::fs::write(&file, input).unwrap();
    let err = fails(&["load", s(&db), s(&file)]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nothing was loaded"), "{err}");
    assert_eq!(ok(&["scan", s(&db), "t"]), "before\t1\n");
    assert_eq!(ok(&["stat", s(&db)]).matches("entries").count(), 1);
    err
}

#[test]
fn load_refuses_table_names_dump_could_not_write_back() {
    let d = Dir::new();
    let cr = load_fails(
        &d,
        b"VERSION=3\nformat=bytevalue\ndatabase=a\rb\ntype=btree\nHEADER=END\n 00\n 00\nDATA=END\n",
    );
    assert!(
        cr.contains("line 3") && cr.contains("carriage return"),
        "{cr}"
    );
    let long = format!(
        "VERSION=3\nformat=bytevalue\ndatabase={}\ntype=btree\nHEADER=END\n 00\n 00\nDATA=END\n",
        "n".repeat(70_000)
    );
    let err = load_fails(&d, long.as_bytes());
    assert!(
        err.contains("line 3") && err.contains("table name"),
        "{err}"
    );
    assert!(!err.contains("key"), "{err}");
}

#[test]
fn load_names_carriage_returns_of_crlf_dumps() {
    let d = Dir::new();
    let good =
        "VERSION=3\nformat=bytevalue\ndatabase=t\ntype=btree\nHEADER=END\n 6b\n 76\nDATA=END\n";
    let crlf = good.replace('\n', "\r\n");
    let err = load_fails(&d, crlf.as_bytes());
    assert!(
        err.contains("line 1") && err.contains("carriage return"),
        "{err}"
    );
    // Only the data lines in CRLF.
    let mixed = good.replace(" 6b\n", " 6b\r\n");
    let err = load_fails(&d, mixed.as_bytes());
    assert!(
        err.contains("line 6") && err.contains("carriage return"),
        "{err}"
    );
    let print = "VERSION=3\nformat=print\ndatabase=t\nHEADER=END\n k\r\n v\nDATA=END\n";
    let err = load_fails(&d, print.as_bytes());
    assert!(
        err.contains("line 5") && err.contains("carriage return"),
        "{err}"
    );
}

#[test]
fn load_bounds_the_length_of_a_line() {
    let d = Dir::new();
    // A header line with no end.
    let header = format!("VERSION=3\ndatabase={}", "x".repeat(200_000));
    let err = load_fails(&d, header.as_bytes());
    assert!(
        err.contains("line 2") && err.contains("longer than"),
        "{err}"
    );
    // Text that is no dump at all, without a newline.
    let err = load_fails(&d, &vec![b'z'; 300_000]);
    assert!(
        err.contains("line 1") && err.contains("longer than"),
        "{err}"
    );
    // A key longer than any page size allows, in both formats.
    let key = format!(
        "VERSION=3\nformat=bytevalue\ndatabase=t\nHEADER=END\n {}\n 00\nDATA=END\n",
        "61".repeat(100_000)
    );
    let err = load_fails(&d, key.as_bytes());
    assert!(
        err.contains("line 5") && err.contains("key longer than"),
        "{err}"
    );
    let key = format!(
        "VERSION=3\nformat=print\ndatabase=t\nHEADER=END\n 00\n 00\n {}",
        "\\00".repeat(100_000)
    );
    let err = load_fails(&d, key.as_bytes());
    assert!(
        err.contains("line 7") && err.contains("key longer than"),
        "{err}"
    );
    // The longest key a database stores loads (the parser's bound is the
    // database's: no key between them can be refused by the database).
    let db = d.path("longest");
    let file = d.path("longest.dump");
    let key = format!(
        "VERSION=3\nformat=bytevalue\ndatabase=t\nHEADER=END\n {}\n 76\nDATA=END\n",
        "61".repeat(larch::MAX_KEY_LEN)
    );
    std::fs::write(&file, key).unwrap();
    ok(&["load", s(&db), s(&file)]);
    assert!(ok(&["stat", s(&db)]).contains("\"t\": 1 entries"));
}

#[test]
fn bench_refuses_an_n_it_cannot_hold() {
    let d = Dir::new();
    let db = d.path("bench.larch");
    for n in ["18446744073709551615", "4000000000"] {
        let err = fails(&["bench", s(&db), "--n", n]);
        assert!(err.contains("--n") && err.contains("memory"), "{n}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!db.exists(), "{n}: the database was left behind");
    }
    // Without a path, in a temporary directory that is removed.
    let temp = d.path("tmp");
    std::fs::create_dir(&temp).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_larch"))
        .args(["bench", "--n", "4000000000"])
        .env("TMPDIR", &temp)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(listing(&temp), Vec::<String>::new());
}

#[test]
fn copy_refuses_a_symlink_destination_even_a_dangling_one() {
    let d = Dir::new();
    let db = d.path("db");
    ok(&["put", s(&db), "t", "k", "v"]);
    let link = d.path("link");
    std::os::unix::fs::symlink(d.path("nowhere"), &link).unwrap();
    let err = fails(&["copy", s(&db), s(&link)]);
    assert!(err.contains("exists"), "{err}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(!d.path("nowhere").exists());
    assert_eq!(listing(d.0.path()), ["db", "db-lock", "link"]);
}

/// When open sets the newest commit aside (torn, or damaged after the fact),
/// `stat` and `check` say which transaction and why.
#[test]
fn stat_and_check_name_a_commit_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.larch");
    let db_arg = db.to_str().unwrap();
    assert!(larch(&["put", db_arg, "t", "k", "one"]).status.success());
    assert!(larch(&["put", db_arg, "t", "k", "two"]).status.success());
    // Transaction 2 sits in slot 0: damage its checksummed fields.
    let mut image = std::fs::read(&db).unwrap();
    image[20] ^= 0x5a;
    std::fs::write(&db, &image).unwrap();
    for cmd in ["stat", "check"] {
        let out = larch(&[cmd, db_arg]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("set aside: meta slot 0 holds no valid meta (meta checksum mismatch)"),
            "{cmd}: {text}"
        );
    }
    // A torn commit: the newest meta is whole but one page it sealed is not.
    assert!(larch(&["put", db_arg, "t", "k", "three"]).status.success());
    let before = std::fs::read(&db).unwrap();
    let pos = before
        .windows(5)
        .rposition(|w| w == b"three")
        .expect("the value is in the file");
    let mut image = before.clone();
    image[pos] ^= 1;
    std::fs::write(&db, &image).unwrap();
    let out = larch(&["check", db_arg]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("set aside: transaction 2 in meta slot 0 (page does not match its commit's seal (torn commit))"),
        "{text}"
    );
}

/// A failed `load` or `put` leaves what it found: an empty file stays empty,
/// and a symlink to nowhere is refused rather than followed to create its
/// target.
#[test]
fn a_failed_write_leaves_an_empty_file_empty_and_creates_no_link_target() {
    let d = Dir::new();
    let empty = d.path("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let out = larch_with_input(&["load", s(&empty)], Some(b"garbage\n"));
    assert!(!out.status.success());
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    let long_key = "k".repeat(65_537);
    fails(&["put", s(&empty), "t", &long_key, "v"]);
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    // The lock files those commands created went with their failures.
    assert_eq!(listing(d.0.path()), ["empty.db"]);
    // A good write still initialises it.
    ok(&["put", s(&empty), "t", "k", "v"]);
    assert_eq!(ok(&["get", s(&empty), "t", "k"]), "v\n");

    let link = d.path("link.db");
    let target = d.path("target.db");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = fails(&["put", s(&link), "t", "k", "v"]);
    assert!(err.contains("symlink"), "{err}");
    let out = larch_with_input(&["load", s(&link)], Some(b"garbage\n"));
    assert!(!out.status.success());
    assert!(!target.exists());
}

/// Standard output redirected onto the database (`1<>db`) would overwrite
/// the mapped file: refused before anything is written.
#[test]
fn output_onto_the_database_itself_is_refused() {
    let d = Dir::new();
    let path = d.path("db.larch");
    ok(&["put", s(&path), "t", "k", "v"]);
    let before = std::fs::read(&path).unwrap();
    let onto = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let out = {
        let _spawning = spawn_lock();
        Command::new(env!("CARGO_BIN_EXE_larch"))
            .args(["dump", s(&path)])
            .stdout(onto)
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard output is a larch database"));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// `larch check db 2<>db`: standard error is the database. Nothing may be
/// written to it, not even the refusal (or a usage error): the file stays as
/// it was and its last commit readable.
#[test]
fn a_standard_stream_onto_the_database_gets_nothing_written() {
    let d = Dir::new();
    let path = d.path("db.larch");
    ok(&["put", s(&path), "t", "a", "1"]);
    ok(&["put", s(&path), "t", "b", "2"]);
    let before = std::fs::read(&path).unwrap();
    for args in [&["check", s(&path)][..], &["no-such-command"][..]] {
        let onto = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let status = {
            let _spawning = spawn_lock();
            Command::new(env!("CARGO_BIN_EXE_larch"))
                .args(args)
                .stdout(Stdio::null())
                .stderr(onto)
                .status()
                .unwrap()
        };
        assert!(!status.success(), "{args:?}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "{args:?}");
    }
    assert_eq!(ok(&["get", s(&path), "t", "b"]), "2\n");
}

/// A FIFO or a device is no database: refused at once (opening a FIFO would
/// block, and a device would be initialised over what it holds).
#[test]
fn a_path_that_is_not_a_regular_file_is_refused_at_once() {
    let d = Dir::new();
    let fifo = d.path("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for args in [
        &["put", s(&fifo), "t", "k", "v"][..],
        &["get", s(&fifo), "t", "k"][..],
        &["load", s(&fifo)][..],
    ] {
        let mut child = {
            let _spawning = spawn_lock();
            Command::new(env!("CARGO_BIN_EXE_larch"))
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(status.is_some_and(|s| !s.success()), "{args:?}: {status:?}");
    }
}

/// A dupsort section (`duplicates=1`, LMDB's sorted duplicates) loads as a
/// multimap table, which `stat` names and `dump` writes back the same, the
/// keys repeated, beside a table of the byte API.
#[test]
fn dupsort_sections_load_and_dump_as_multimaps() {
    let d = Dir::new();
    let (a, b) = (d.path("a"), d.path("b"));
    let dump = "VERSION=3\nformat=bytevalue\ndatabase=tags\ntype=btree\nduplicates=1\nHEADER=END\n \
                00\n 01\n 6b\n 62\n 6b\n 61\n 6b00\n 7a\nDATA=END\n\
                VERSION=3\nformat=bytevalue\ndatabase=plain\ntype=btree\nHEADER=END\n 6b\n 76\nDATA=END\n";
    let out = larch_with_input(&["load", s(&a)], Some(dump.as_bytes()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stat = ok(&["stat", s(&a)]);
    assert!(stat.contains("\"tags\" (multimap, 4 pairs)"), "{stat}");
    assert!(stat.contains("\"plain\": 1 entries"), "{stat}");
    let again = ok(&["dump", s(&a)]);
    // The pairs come back in key then value order: `k` with `a` and `b`.
    let want = "VERSION=3\nformat=bytevalue\ndatabase=plain\ntype=btree\nHEADER=END\n 6b\n 76\nDATA=END\n\
                VERSION=3\nformat=bytevalue\ndatabase=tags\ntype=btree\nduplicates=1\ndupsort=1\nHEADER=END\n \
                00\n 01\n 6b\n 61\n 6b\n 62\n 6b00\n 7a\nDATA=END\n";
    assert_eq!(strip_mapsize(&again), strip_mapsize(want));
    let out = larch_with_input(&["load", s(&b)], Some(again.as_bytes()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(strip_mapsize(&ok(&["dump", s(&b)])), strip_mapsize(&again));
}
