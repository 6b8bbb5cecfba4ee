//! The tool on live databases: another process holds the database open and
//! writes, reads or holds the write transaction while `larch` runs. That
//! process is this test binary run again as a child, in the role its
//! environment names (see `helper`).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The child's role, and the database it opens.
const ROLE: &str = "LARCH_CLI_HELPER";
const DB: &str = "LARCH_CLI_HELPER_DB";

/// What the writer commits in transaction `i`: `counter` = i, `k<i % 100>` =
/// i, and an overflow value in `churn`, removing another, so that pages are
/// freed and reused all the time.
fn commit_round(db: &larch::Database, i: u64) {
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        t.insert(b"counter", i.to_string().as_bytes()).unwrap();
        t.insert(
            format!("k{:03}", i % 100).as_bytes(),
            i.to_string().as_bytes(),
        )
        .unwrap();
        let mut c = w.open_table("churn").unwrap();
        c.insert(&(i % 37).to_be_bytes(), &vec![i as u8; 3000])
            .unwrap();
        c.remove(&((i + 18) % 37).to_be_bytes()).unwrap();
    }
    w.commit().unwrap();
}

/// The child. `writer`: commits round after round until killed. `reader`:
/// holds a read transaction until killed. `idle`: holds the database open
/// until killed. `holder`: holds a write transaction until a line arrives on
/// standard input, then commits it. Each says `@` and what it did on
/// standard output (after the harness's own words, maybe on the same line).
#[test]
fn helper() {
    let (Ok(role), Ok(path)) = (std::env::var(ROLE), std::env::var(DB)) else {
        return;
    };
    // SAFETY: the tests' databases are theirs; only larch handles touch them.
    let db = unsafe { larch::Database::open(&path) }.unwrap();
    let say = |what: &str| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "@{what}").unwrap();
        out.flush().unwrap();
    };
    match role.as_str() {
        "writer" => {
            for i in 1.. {
                commit_round(&db, i);
                if i == 1 {
                    say("ready");
                }
            }
        }
        "reader" => {
            let r = db.begin_read().unwrap();
            say(&format!("reading {} {}", std::process::id(), r.id()));
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "idle" => {
            say("open");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "holder" => {
            let w = db.begin_write().unwrap();
            w.open_table("t").unwrap().insert(b"child", b"1").unwrap();
            say("writing");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            w.commit().unwrap();
            say("committed");
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
        other => panic!("no helper role {other:?}"),
    }
}

/// A child in one of `helper`'s roles; killed when dropped.
struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    fn spawn(role: &str, db: &Path) -> Helper {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(DB, db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Helper {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }

    /// Waits for the child to say `what`; returns what follows it.
    fn expect(&mut self, what: &str) -> String {
        let marker = format!("@{what}");
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "the helper ended before saying {what:?}");
            if let Some(at) = line.rfind(&marker) {
                return line[at + marker.len()..].trim().to_owned();
            }
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGKILL, and waits for it to be gone.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `larch` run: its status and output. Fails the test if it takes more
/// than 30 seconds (a command that waits where it should not).
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn spawn_larch(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_larch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run larch")
}

fn finish(mut child: Child, args: &[&str]) -> Run {
    drop(child.stdin.take());
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = String::new();
        stdout.read_to_string(&mut v).map(|_| v)
    });
    let err = std::thread::spawn(move || {
        let mut v = String::new();
        stderr.read_to_string(&mut v).map(|_| v)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("larch {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        status,
        stdout: out.join().unwrap().expect("UTF-8 output"),
        stderr: err.join().unwrap().expect("UTF-8 errors"),
    }
}

fn larch(args: &[&str]) -> Run {
    finish(spawn_larch(args), args)
}

fn ok(args: &[&str]) -> String {
    let run = larch(args);
    assert!(run.status.success(), "larch {args:?}: {}", run.stderr);
    run.stdout
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The `counter` in a scan of `t`, after checking that the scan is one
/// commit of the writer: every `k<n>` holds a round `i` with `i % 100 == n`,
/// none newer than the counter, and the counter's own round is there.
fn consistent_counter(scan: &str) -> u64 {
    let mut counter = None;
    let mut rounds = Vec::new();
    for line in scan.lines() {
        let (key, value) = line.split_once('\t').expect("key<TAB>value");
        let value: u64 = value.parse().expect("a round number");
        match key.strip_prefix('k') {
            Some(n) => {
                assert_eq!(value % 100, n.parse::<u64>().unwrap(), "{line}");
                rounds.push(value);
            }
            None => {
                assert_eq!(key, "counter");
                counter = Some(value);
            }
        }
    }
    let counter = counter.expect("a counter");
    assert!(rounds.iter().all(|&r| r <= counter), "{scan}");
    assert!(counter == 0 || rounds.contains(&counter), "{scan}");
    counter
}

/// `stat`, `check`, `get`, `scan`, `dump` and `copy` run beside a process
/// that holds the database open and commits all the while: each succeeds,
/// `check` passes, and what they read is one commit of the writer's.
#[test]
fn read_commands_run_beside_a_writing_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.larch");
    ok(&["put", s(&db), "t", "counter", "0"]);
    let mut writer = Helper::spawn("writer", &db);
    writer.expect("ready");
    let mut last = 0;
    for round in 0..3 {
        let stat = ok(&["stat", s(&db)]);
        let txn: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("last transaction: "))
            .expect("the last transaction")
            .parse()
            .unwrap();
        assert!(txn >= 2, "{stat}");
        assert!(stat.contains("tables: 2\n"), "{stat}");

        let check = ok(&["check", s(&db)]);
        assert!(check.ends_with("ok\n"), "{check}");

        let got: u64 = ok(&["get", s(&db), "t", "counter"]).trim().parse().unwrap();
        assert!(got >= last, "the counter went back from {last} to {got}");
        let scanned = consistent_counter(&ok(&["scan", s(&db), "t"]));
        assert!(scanned >= got, "{scanned} < {got}");
        last = scanned;

        let dump = ok(&["dump", "-p", s(&db)]);
        assert!(dump.contains("database=t\n") && dump.contains("database=churn\n"));
        assert!(dump.ends_with("DATA=END\n"), "a dump cut short");

        let copy = dir.path().join(format!("copy{round}"));
        ok(&["copy", s(&db), s(&copy)]);
        assert!(ok(&["check", s(&copy)]).ends_with("ok\n"));
        let copied = consistent_counter(&ok(&["scan", s(&copy), "t"]));
        assert!(copied >= last, "{copied} < {last}");
    }
    // The writer kept committing while the tool read, and still runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now: u64 = ok(&["get", s(&db), "t", "counter"]).trim().parse().unwrap();
        if now > last {
            break;
        }
        assert!(Instant::now() < deadline, "the writer stopped at {now}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(writer.running(), "the writer ended");
}

/// The rows of a `larch readers` listing: (pid, txnid); the pinned pages
/// must be a count.
fn reader_rows(listing: &str) -> Vec<(u32, u64)> {
    let mut lines = listing.lines();
    let header = lines.next().expect("a header");
    assert!(
        header
            .split_whitespace()
            .eq(["pid", "txnid", "age", "pinned"]),
        "{listing}"
    );
    lines
        .filter(|l| *l != "(no active readers)")
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols.len(), 4, "{l}");
            assert!(cols[2].ends_with('s'), "{l}");
            assert!(cols[3].parse::<u64>().is_ok(), "{l}");
            (cols[0].parse().unwrap(), cols[1].parse().unwrap())
        })
        .collect()
}

/// `larch readers` lists the read transaction another process holds, by its
/// pid and snapshot, and not itself; once that process is killed, its slot
/// is freed and it is listed no more.
#[test]
fn readers_lists_other_processes_and_forgets_the_dead() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.larch");
    ok(&["put", s(&db), "t", "k", "1"]);
    let empty = ok(&["readers", s(&db)]);
    assert_eq!(reader_rows(&empty), []);
    assert!(empty.contains("(no active readers)"), "{empty}");

    // Keeps the database open throughout, as an application would.
    let mut app = Helper::spawn("idle", &db);
    app.expect("open");
    let mut reader = Helper::spawn("reader", &db);
    let said = reader.expect("reading ");
    let (pid, txn) = said.split_once(' ').unwrap();
    let (pid, txn): (u32, u64) = (pid.parse().unwrap(), txn.parse().unwrap());
    assert_eq!(pid, reader.child.id());
    assert_eq!(txn, 1);
    // Newer commits: the reader's snapshot stays the one it began with.
    ok(&["put", s(&db), "t", "k", "2"]);
    ok(&["put", s(&db), "t", "k", "3"]);
    assert_eq!(reader_rows(&ok(&["readers", s(&db)])), [(pid, 1)]);
    assert!(ok(&["stat", s(&db)]).contains("live readers: 1\n"));

    reader.kill();
    let out = ok(&["readers", "--clear-stale", s(&db)]);
    let (cleared, listing) = out.split_once('\n').unwrap();
    let n = cleared
        .strip_suffix(" stale reader slot(s) cleared")
        .unwrap_or_else(|| panic!("{out}"));
    // How many this call freed: larch's open frees such slots itself, so
    // the dead reader may be gone before the call.
    assert!(n.parse::<usize>().unwrap() <= 1, "{out}");
    assert_eq!(reader_rows(listing), [], "{out}");
    // Its slot is free, not merely left out of the list.
    assert!(ok(&["stat", s(&db)]).contains("live readers: 0\n"));
    assert!(app.running());
}

/// While another process holds the write transaction, `put`, `del` and
/// `load` with `--no-wait` fail at once in one line; `put` without it waits,
/// and commits once the other process has.
#[test]
fn writes_wait_for_the_writer_of_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.larch");
    ok(&["put", s(&db), "t", "k", "v"]);
    let mut holder = Helper::spawn("holder", &db);
    holder.expect("writing");
    for args in [
        &["put", "--no-wait", s(&db), "t", "k", "cli"][..],
        &["del", "--no-wait", s(&db), "t", "k"],
        &["load", "--no-wait", s(&db)],
    ] {
        let run = larch(args);
        assert!(!run.status.success(), "{args:?}");
        assert!(
            run.stderr
                .contains("another process is writing this database"),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let args = ["put", s(&db), "t", "k", "cli"];
    let mut put = spawn_larch(&args);
    std::thread::sleep(Duration::from_millis(300));
    assert!(put.try_wait().unwrap().is_none(), "put did not wait");
    writeln!(holder.stdin.as_mut().unwrap()).unwrap();
    holder.expect("committed");
    let run = finish(put, &args);
    assert!(run.status.success(), "{}", run.stderr);
    // The other process's commit, then the tool's on top of it.
    assert_eq!(ok(&["get", s(&db), "t", "child"]), "1\n");
    assert_eq!(ok(&["get", s(&db), "t", "k"]), "cli\n");
    assert!(ok(&["check", s(&db)]).ends_with("ok\n"));
}

/// `put` beside a process that commits all the while: each waits its turn
/// and commits. Ignored: larch's open of a database other processes have
/// open (its join) reads the published commit's free list, and with
/// `verify` checks that commit, before it publishes a reader slot, so a
/// writer of another process reuses those pages meanwhile and the open
/// fails with a spurious "corrupted" error. The database itself is intact.
#[test]
fn put_runs_beside_a_writing_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.larch");
    // Enough pages that open's reading takes a few of the writer's commits.
    let mut dump = String::from("VERSION=3\nformat=print\ndatabase=bulk\nHEADER=END\n");
    for i in 0..20_000 {
        dump += &format!(" {i:08}\n {}\n", "v".repeat(100));
    }
    dump += "DATA=END\n";
    let mut load = spawn_larch(&["load", s(&db)]);
    load.stdin
        .as_mut()
        .unwrap()
        .write_all(dump.as_bytes())
        .unwrap();
    let run = finish(load, &["load"]);
    assert!(run.status.success(), "{}", run.stderr);
    let mut writer = Helper::spawn("writer", &db);
    writer.expect("ready");
    for i in 0..10 {
        ok(&["put", s(&db), "cli", &format!("k{i}"), "v"]);
    }
    assert!(writer.running());
    assert_eq!(ok(&["scan", s(&db), "cli"]).lines().count(), 10);
    assert!(ok(&["check", s(&db)]).ends_with("ok\n"));
}
