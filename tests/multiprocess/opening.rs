//! Opening beside other processes: processes that open (and create) one
//! database at the same moment all get it, and an open that stalls between
//! opening the data file and joining the registry (as one waiting for the
//! first opener's recovery does) uses the file as it is when it joins, not
//! as it was when it opened it.

use std::path::Path;
use std::sync::{Arc, Barrier};

use larch::testing::{FileStorage, Storage, report};
use larch::{Database, Error, Options};

use crate::common::spawn_lock;
use crate::{Proc, digest, say, spawn};

/// Opener role: waits for `go`, opens the database, adds one to the counter
/// "opens" and says `opened` (or `failed <error>`), then keeps it open until
/// the pipe closes.
pub fn opener(path: &Path) {
    let parent = crate::from_parent();
    say("ready");
    assert_eq!(parent.recv().unwrap(), "go");
    // SAFETY: the test owns the file.
    let db = match unsafe { Options::new().map_size(1 << 30).open(path) } {
        Ok(db) => db,
        Err(e) => {
            say(&format!("failed {e:?}"));
            return;
        }
    };
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("opens").unwrap();
        let n = t
            .get(b"n")
            .unwrap()
            .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()));
        t.insert(b"n", &(n + 1).to_be_bytes()).unwrap();
    }
    w.commit().unwrap();
    db.check().unwrap();
    say("opened");
    while parent.recv().is_ok() {}
}

fn opens(db: &Database) -> u64 {
    let r = db.begin_read().unwrap();
    r.open_table("opens").map_or(0, |t| {
        t.get(b"n")
            .unwrap()
            .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()))
    })
}

/// Rounds of processes opening the database at once, none having it open
/// before: the first round creates the file, the second finds it empty.
#[test]
fn processes_opening_at_once_all_get_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opened.larch");
    let (rounds, procs) = (6, 4);
    let mut failures = Vec::new();
    // Opens since the file was last created: each added one to the count.
    let (mut opened, mut since) = (0, 0);
    for round in 0..rounds {
        if round == 1 {
            since = 0;
            std::fs::remove_file(&path).unwrap();
            std::fs::remove_file(dir.path().join("opened.larch-lock")).unwrap();
            std::fs::File::create(&path).unwrap();
        }
        let mut children: Vec<Proc> = (0..procs).map(|_| spawn("opener", &path, "")).collect();
        for c in &children {
            c.expect("ready");
        }
        for c in &mut children {
            c.send("go");
        }
        for c in &children {
            match c.next() {
                Some(line) if line == "opened" => {
                    opened += 1;
                    since += 1;
                }
                other => failures.push(format!("round {round}: {other:?}")),
            }
        }
        for c in children {
            c.finish();
        }
    }
    let _alone = spawn_lock();
    let db = crate::open(&path);
    let counted = opens(&db);
    db.check().unwrap();
    report(&format!(
        "RELIABILITY suite=multiprocess part=opening opens={} opened={opened} counted={counted} \
         failures={}",
        rounds * procs,
        failures.len()
    ));
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(counted, since, "opens counted since the file was created");
}

/// Options whose open stops after opening the data file (in the storage
/// hook, which runs there) until the test has done something else.
fn stalling(pause: Arc<(Barrier, Barrier)>) -> Options {
    Options::new().map_size(1 << 30).storage(move |f| {
        pause.0.wait();
        pause.1.wait();
        Ok(Box::new(FileStorage::new(f)) as Box<dyn Storage>)
    })
}

/// Runs `open` with `options` on `path` in a thread, stalls it after it
/// opened the data file, runs `meanwhile`, and returns what the open gave.
fn stalled_open<T>(path: &Path, meanwhile: impl FnOnce() -> T) -> (larch::Result<Database>, T) {
    let pause = Arc::new((Barrier::new(2), Barrier::new(2)));
    let options = stalling(pause.clone());
    std::thread::scope(|s| {
        // SAFETY: the test owns the file.
        let opening = s.spawn(|| unsafe { options.open(path) });
        pause.0.wait();
        let t = meanwhile();
        pause.1.wait();
        (opening.join().unwrap(), t)
    })
}

fn try_open(path: &Path) -> Database {
    // SAFETY: the test owns the file.
    unsafe { Options::new().map_size(1 << 30).open(path) }.unwrap()
}

/// Commits `mib` MiB of values in table "t"; returns its digest after.
fn grow(db: &Database, from: u32, mib: u32) -> (u64, u64) {
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table("t").unwrap();
        for i in from..from + mib * 64 {
            t.insert(&i.to_be_bytes(), &[i as u8; 16 << 10]).unwrap();
        }
    }
    w.commit().unwrap();
    digest(&db.begin_read().unwrap().open_table("t").unwrap()).unwrap()
}

fn content(db: &Database) -> Option<(u64, u64)> {
    let r = db.begin_read().unwrap();
    r.open_table("t").ok().map(|t| digest(&t).unwrap())
}

/// A stalled open of a new file becomes the first opener after another
/// handle created the database, committed and closed it: it must find that
/// commit, not initialise the file again.
#[test]
fn an_open_stalled_while_another_creates_the_file_keeps_its_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.larch");
    let _alone = spawn_lock();
    let (opened, expected) = stalled_open(&path, || {
        let db = try_open(&path);
        grow(&db, 0, 1)
    });
    let db = opened.unwrap();
    assert_eq!(content(&db), Some(expected), "the commit is gone");
    db.check().unwrap();
}

/// A stalled open of an existing file becomes the first opener after
/// another handle grew the file by one commit (or two) and closed it: it
/// must find the last commit.
#[test]
fn an_open_stalled_while_another_grows_the_file_keeps_its_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut outcomes = Vec::new();
    for commits in [1, 2] {
        let path = dir.path().join(format!("grown{commits}.larch"));
        let _alone = spawn_lock();
        grow(&try_open(&path), 0, 1);
        let (opened, expected) = stalled_open(&path, || {
            let db = try_open(&path);
            let mut expected = None;
            for c in 0..commits {
                expected = Some(grow(&db, 1000 * (c + 1), 3));
            }
            expected
        });
        let outcome = match opened {
            Ok(db) if content(&db) == expected => "ok".to_owned(),
            Ok(db) => format!(
                "opened at txn {} without the last commit ({:?})",
                db.last_txn_id(),
                db.stat().unwrap().set_aside
            ),
            Err(e) => format!("{e:?}"),
        };
        eprintln!("stalled first opener after {commits} growing commits: {outcome}");
        outcomes.push(outcome);
    }
    assert!(outcomes.iter().all(|o| o == "ok"), "{outcomes:#?}");
}

/// A stalled open joins another handle that created the file (or grew it by
/// two commits) meanwhile and keeps it open.
#[test]
fn an_open_stalled_while_another_grows_the_file_joins_it() {
    let dir = tempfile::tempdir().unwrap();
    for existing in [false, true] {
        let path = dir.path().join(format!("joined{existing}.larch"));
        let _alone = spawn_lock();
        if existing {
            grow(&try_open(&path), 0, 1);
        }
        let (opened, (other, expected)) = stalled_open(&path, || {
            let db = try_open(&path);
            grow(&db, 1000, 3);
            let expected = grow(&db, 2000, 3);
            (db, expected)
        });
        let db = opened.unwrap_or_else(|e| panic!("existing {existing}: {e:?}"));
        assert_eq!(content(&db), Some(expected));
        grow(&db, 3000, 1);
        assert_eq!(content(&db), content(&other));
        db.check().unwrap();
    }
}

/// A handle whose map is smaller than the file another handle grew maps
/// anew at its next transaction: its old snapshot keeps reading through the
/// old map, its new ones see the grown file, and its writer builds on it.
#[test]
fn a_handle_with_a_smaller_map_than_the_file_maps_it_anew() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maps.larch");
    let big = try_open(&path);
    let before = grow(&big, 0, 1);
    // SAFETY: the test owns the file.
    let small = unsafe { Options::new().map_size(256 << 10).open(&path) }.unwrap();
    let old = small.begin_read().unwrap();
    let old_value = old
        .open_table("t")
        .unwrap()
        .get(&5u32.to_be_bytes())
        .unwrap()
        .unwrap();
    let grown = grow(&big, 64, 8);
    assert_ne!(grown, before);
    assert_eq!(content(&small), Some(grown));
    // The snapshot from before the growth, and a slice it handed out.
    assert_eq!(digest(&old.open_table("t").unwrap()).unwrap(), before);
    assert_eq!(old_value, &[5u8; 16 << 10][..]);
    let expected = grow(&small, 1000, 2);
    assert_eq!(content(&big), Some(expected));
    drop(old);
    small.check().unwrap();
    big.check().unwrap();
}

/// A read-only handle that opened first recovered without making anything
/// durable; the writer that joins later must, and both see its commits.
#[test]
fn a_read_only_first_opener_shares_the_file_with_a_later_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.larch");
    let _alone = spawn_lock();
    grow(&try_open(&path), 0, 1);
    // SAFETY: the test owns the file.
    let ro = unsafe { Options::new().read_only(true).map_size(1 << 30).open(&path) }.unwrap();
    let pinned = ro.begin_read().unwrap();
    let before = digest(&pinned.open_table("t").unwrap()).unwrap();
    let rw = try_open(&path);
    let mut expected = None;
    for c in 0..3 {
        expected = Some(grow(&rw, 1000 * (c + 1), 1));
    }
    assert_eq!(content(&ro), expected);
    assert_eq!(digest(&pinned.open_table("t").unwrap()).unwrap(), before);
    pinned.check().unwrap();
    assert!(matches!(ro.try_begin_write(), Err(Error::ReadOnly)));
    drop(pinned);
    drop((ro, rw));
    let db = try_open(&path);
    assert_eq!(content(&db), expected);
    db.check().unwrap();
}
