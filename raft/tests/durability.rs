//! What the store acknowledged survives: a clean close and reopen keeps the
//! vote, the markers, the log, the map and the snapshot exactly; a process
//! killed while appending keeps every entry whose append it reported
//! flushed, and its log stays a prefix without gaps, over a chain of kills.
//! The killed processes are this test binary re-run with an environment
//! variable naming the file (`child_appends_until_killed` returns at once
//! without it).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use larch::Database;
use larch_raft::{LogStore, Request, Response, StateMachine, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader,
    RaftSnapshotBuilder, StoredMembership, Vote,
};
use tokio::runtime::Runtime;

type NodeId = u64;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn open(path: &Path) -> Database {
    // SAFETY: only larch writes to this file while it is open: the test's
    // own handles, and the child processes it runs one at a time.
    unsafe { Database::open(path) }.unwrap()
}

fn log_id(term: u64, leader: NodeId, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, leader), index)
}

// ---------------------------------------------------------------------------
// A reopened store keeps everything acknowledged.

/// The key an entry at `index` sets or deletes: 211 keys, each written many
/// times, so the map sees overwrites, deletes and keys set again.
fn key_of(index: u64) -> String {
    format!("key-{:03}", index % 211)
}

/// The value an entry of `term` at `index` sets: names both, padded to a
/// length that varies with the index.
fn value_of(term: u64, index: u64) -> String {
    format!("t{term}-i{index}-{}", "x".repeat((index % 97) as usize))
}

/// The configuration a membership entry at `index` holds.
fn membership_of(index: u64) -> Membership<NodeId, BasicNode> {
    Membership::new(vec![BTreeSet::from([1, 2, 3 + index / 400])], ())
}

/// The entry of the leader `(term, leader)` at `index`: a membership entry
/// every 400 indexes, blanks, deletes and sets otherwise.
fn entry_of(term: u64, leader: NodeId, index: u64) -> Entry<TypeConfig> {
    let payload = if index % 400 == 2 {
        EntryPayload::Membership(membership_of(index))
    } else if index.is_multiple_of(13) {
        EntryPayload::Blank
    } else if index.is_multiple_of(5) {
        EntryPayload::Normal(Request::Delete { key: key_of(index) })
    } else {
        EntryPayload::Normal(Request::Set {
            key: key_of(index),
            value: value_of(term, index),
        })
    };
    Entry {
        log_id: log_id(term, leader, index),
        payload,
    }
}

/// `entries` appended in batches whose sizes cycle through `sizes`, each
/// acknowledged (the `LogFlushed` callback called) before the next.
fn append_in_batches(
    rt: &Runtime,
    log: &mut LogStore<TypeConfig>,
    entries: &[Entry<TypeConfig>],
    sizes: &[usize],
) {
    let mut rest = entries;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, tail) = rest.split_at(size.min(rest.len()));
        rt.block_on(log.blocking_append(batch.to_vec())).unwrap();
        rest = tail;
    }
}

/// `entries` applied to `sm` in batches of `batch`, each response checked
/// against the model `map`, which then applies them too. Returns the last
/// membership applied, if any.
fn apply_in_batches(
    rt: &Runtime,
    sm: &mut StateMachine,
    entries: &[Entry<TypeConfig>],
    batch: usize,
    map: &mut BTreeMap<String, String>,
) -> Option<StoredMembership<NodeId, BasicNode>> {
    let mut membership = None;
    for chunk in entries.chunks(batch) {
        let responses = rt.block_on(sm.apply(chunk.to_vec())).unwrap();
        assert_eq!(responses.len(), chunk.len());
        for (entry, response) in chunk.iter().zip(responses) {
            let expected = match &entry.payload {
                EntryPayload::Blank => Response::default(),
                EntryPayload::Normal(Request::Set { key, value }) => Response {
                    previous: map.insert(key.clone(), value.clone()),
                },
                EntryPayload::Normal(Request::Delete { key }) => Response {
                    previous: map.remove(key),
                },
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                    Response::default()
                }
            };
            assert_eq!(response, expected, "response to {}", entry.log_id);
        }
    }
    membership
}

/// Asserts `got` are the entries `want`, log ids and payloads (an entry's
/// `==`), naming the first that differs rather than printing them all.
fn assert_same_entries(got: &[Entry<TypeConfig>], want: &[Entry<TypeConfig>], what: &str) {
    if let Some(at) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        panic!(
            "{what}: entry {at} is {:?}, should be {:?}",
            got[at], want[at]
        );
    }
    let ids = |entries: &[Entry<TypeConfig>]| {
        (
            entries.len(),
            entries.first().map(|e| e.log_id),
            entries.last().map(|e| e.log_id),
        )
    };
    assert_eq!(ids(got), ids(want), "{what}: (entries, first, last)");
}

/// Everything the store acknowledged, as a reader must find it.
struct Expected {
    vote: Vote<NodeId>,
    committed: LogId<NodeId>,
    purged: LogId<NodeId>,
    /// The entries left after the purge, in index order.
    log: Vec<Entry<TypeConfig>>,
    applied: LogId<NodeId>,
    membership: StoredMembership<NodeId, BasicNode>,
    map: BTreeMap<String, String>,
    /// Keys the map held at some point and holds no more.
    deleted: Vec<String>,
    snapshot_meta: openraft::SnapshotMeta<NodeId, BasicNode>,
    snapshot_data: Vec<u8>,
    /// The map as the snapshot holds it.
    snapshot_map: BTreeMap<String, String>,
}

/// Checks that the stores over `db` hold exactly `expected`.
fn check_stores(rt: &Runtime, db: &Database, expected: &Expected) {
    let (mut log, mut sm) = larch_raft::stores(db.clone());
    rt.block_on(async {
        assert_eq!(log.read_vote().await.unwrap(), Some(expected.vote));
        assert_eq!(
            log.read_committed().await.unwrap(),
            Some(expected.committed)
        );

        let state = log.get_log_state().await.unwrap();
        let last = expected.log.last().unwrap().log_id;
        assert_eq!(state.last_purged_log_id, Some(expected.purged));
        assert_eq!(state.last_log_id, Some(last));

        // The whole log, through the store and through its reader.
        let mut reader = log.get_log_reader().await;
        for entries in [
            log.try_get_log_entries(..).await.unwrap(),
            reader.try_get_log_entries(0..u64::MAX).await.unwrap(),
        ] {
            assert_same_entries(&entries, &expected.log, "the log");
        }

        // Nothing at or below the purge point, nothing past the end.
        let purged = expected.purged.index;
        assert_eq!(log.try_get_log_entries(..=purged).await.unwrap(), []);
        assert_eq!(log.try_get_log_entries(0..purged + 1).await.unwrap(), []);
        assert_eq!(log.try_get_log_entries(last.index + 1..).await.unwrap(), []);

        // Windows at the edges: the first entry, the last, across the
        // truncation's index and across the truncated log's old end.
        let first = &expected.log[0];
        let got = log.try_get_log_entries(purged..=first.log_id.index).await;
        assert_same_entries(
            &got.unwrap(),
            std::slice::from_ref(first),
            "the first entry",
        );
        let last_entry = expected.log.last().unwrap();
        let got = log.try_get_log_entries(last.index..).await;
        assert_same_entries(
            &got.unwrap(),
            std::slice::from_ref(last_entry),
            "the last entry",
        );
        for (lo, hi) in [(2590, 2610), (1800, 1801), (2790, 3100)] {
            let want: Vec<_> = expected
                .log
                .iter()
                .filter(|e| (lo..hi).contains(&e.log_id.index))
                .cloned()
                .collect();
            let got = log.try_get_log_entries(lo..hi).await.unwrap();
            assert_same_entries(&got, &want, &format!("entries {lo}..{hi}"));
        }

        // The state machine.
        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(expected.applied));
        assert_eq!(membership, expected.membership);
        let (applied, pairs) = sm.dump().unwrap();
        assert_eq!(applied, Some(expected.applied));
        let model: Vec<_> = expected
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(pairs, model, "the map");
        for (k, v) in &expected.map {
            assert_eq!(sm.get(k).unwrap().as_ref(), Some(v), "key {k}");
        }
        assert!(!expected.deleted.is_empty());
        for k in &expected.deleted {
            assert_eq!(sm.get(k).unwrap(), None, "deleted key {k}");
        }
        assert_eq!(sm.get("never-set").unwrap(), None);

        let snapshot = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snapshot.meta, expected.snapshot_meta);
        assert_eq!(snapshot.snapshot.into_inner(), expected.snapshot_data);
    });
}

/// A store closed cleanly and opened again holds everything it
/// acknowledged: the last vote saved, the committed log id, the purge
/// point, every entry appended and not purged or truncated (ids and
/// payloads, the ones appended after a truncation in place of those it
/// removed), the applied log id and membership, the map, and the snapshot
/// built, byte for byte, which installs as the map it was built from; and
/// the file passes larch's check.
#[test]
fn a_reopened_store_keeps_everything_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.larch");
    let rt = runtime();

    let expected = {
        let db = open(&path);
        let (mut log, mut sm) = larch_raft::stores(db.clone());

        // Votes of several elections; the last one saved is the one kept.
        rt.block_on(log.save_vote(&Vote::new(1, 1))).unwrap();
        rt.block_on(log.save_vote(&Vote::new_committed(1, 1)))
            .unwrap();

        // Leader 1 writes indexes 1..=3000 over terms 1, 2 and 3.
        let first: Vec<_> = (1..=3000u64)
            .map(|i| entry_of(1 + (i - 1) / 1000, 1, i))
            .collect();
        rt.block_on(log.save_vote(&Vote::new_committed(3, 1)))
            .unwrap();
        append_in_batches(&rt, &mut log, &first, &[1, 2, 3, 50, 128, 300, 7, 499]);
        rt.block_on(log.save_committed(Some(first[1999].log_id)))
            .unwrap();
        rt.block_on(log.save_committed(Some(first[2499].log_id)))
            .unwrap();

        // Apply up to 2200, snapshot there, apply on to 2450.
        let mut map = BTreeMap::new();
        let mut sm_membership =
            apply_in_batches(&rt, &mut sm, &first[..2200], 97, &mut map).unwrap();
        let mut builder = rt.block_on(sm.get_snapshot_builder());
        let snapshot = rt.block_on(builder.build_snapshot()).unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(first[2199].log_id));
        assert_eq!(snapshot.meta.last_membership, sm_membership);
        let snapshot_meta = snapshot.meta.clone();
        let snapshot_data = snapshot.snapshot.into_inner();
        let snapshot_map = map.clone();
        if let Some(m) = apply_in_batches(&rt, &mut sm, &first[2200..2450], 31, &mut map) {
            sm_membership = m;
        }
        assert_eq!(sm_membership.log_id().unwrap().index, 2402);

        // Purge below the snapshot; a new leader (2, term 5) truncates the
        // uncommitted tail from 2601 and writes 2601..=2800 in its place,
        // so the old 2801..=3000 must be gone too.
        let purged = first[1699].log_id;
        rt.block_on(log.purge(purged)).unwrap();
        rt.block_on(log.save_vote(&Vote::new(5, 2))).unwrap();
        rt.block_on(log.truncate(first[2600].log_id)).unwrap();
        let second: Vec<_> = (2601..=2800u64).map(|i| entry_of(5, 2, i)).collect();
        let vote = Vote::new_committed(5, 2);
        rt.block_on(log.save_vote(&vote)).unwrap();
        append_in_batches(&rt, &mut log, &second, &[33, 1, 150, 4]);

        let applied_keys: BTreeSet<_> = first[..2450]
            .iter()
            .filter_map(|e| match &e.payload {
                EntryPayload::Normal(Request::Set { key, .. } | Request::Delete { key }) => {
                    Some(key.clone())
                }
                _ => None,
            })
            .collect();
        let deleted = applied_keys
            .into_iter()
            .filter(|k| !map.contains_key(k))
            .collect();
        let expected = Expected {
            vote,
            committed: first[2499].log_id,
            purged,
            log: first[1700..2600].iter().chain(&second).cloned().collect(),
            applied: first[2449].log_id,
            membership: sm_membership,
            map,
            deleted,
            snapshot_meta,
            snapshot_data,
            snapshot_map,
        };
        // The open store holds it all, so a loss below is the reopen's.
        check_stores(&rt, &db, &expected);
        expected
        // Every handle of the database closes here: the stores', the
        // builder's and `db`.
    };

    let db = open(&path);
    db.check().unwrap();
    check_stores(&rt, &db, &expected);
    db.check().unwrap();

    // The snapshot read back installs as the map it was built from.
    let mut sm = larch_raft::stores(db).1;
    let snapshot = rt.block_on(sm.get_current_snapshot()).unwrap().unwrap();
    let mut other = larch_raft::stores(open(&dir.path().join("other.larch"))).1;
    rt.block_on(other.install_snapshot(&snapshot.meta, snapshot.snapshot))
        .unwrap();
    let (applied, pairs) = other.dump().unwrap();
    assert_eq!(applied, expected.snapshot_meta.last_log_id);
    assert_eq!(pairs, expected.snapshot_map.into_iter().collect::<Vec<_>>());
    let (_, membership) = rt.block_on(other.applied_state()).unwrap();
    assert_eq!(membership, expected.snapshot_meta.last_membership);
}

// ---------------------------------------------------------------------------
// A killed appender keeps every flushed entry.

/// Names the database file the child appends to.
const CHILD_PATH: &str = "LARCH_RAFT_DURABILITY_CHILD";
/// The term the child writes its entries in.
const CHILD_TERM: &str = "LARCH_RAFT_DURABILITY_TERM";
/// The leader of the killed appenders' entries.
const APPENDER: NodeId = 1;
/// The signal `Child::kill` sends on Unix.
const SIGKILL: i32 = 9;
/// Entries a child appends at most: it is killed long before (the parent
/// checks it was), so this only bounds a child left running by a parent
/// that died.
const CHILD_MAX_ENTRIES: u64 = 200_000;

/// The value of the killed appenders' entry at `index`: the index, then
/// padding of a length that varies with it.
fn appended_value(index: u64) -> String {
    format!("{index}:{}", "v".repeat((index * 7 % 301) as usize))
}

/// The entry a killed appender of `term` writes at `index`.
fn appended_entry(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, APPENDER, index),
        payload: EntryPayload::Normal(Request::Set {
            key: format!("k{}", index % 1000),
            value: appended_value(index),
        }),
    }
}

/// The child: opens the store on the file `CHILD_PATH` names, and from its
/// last index on appends batches of 1 to 50 entries in term `CHILD_TERM`
/// until killed, printing `flushed <last index>` once each batch's append
/// reported it flushed.
#[test]
fn child_appends_until_killed() {
    let Ok(path) = std::env::var(CHILD_PATH) else {
        return;
    };
    let term: u64 = std::env::var(CHILD_TERM).unwrap().parse().unwrap();
    let rt = runtime();
    let mut log = LogStore::<TypeConfig>::new(open(Path::new(&path)));
    let state = rt.block_on(log.get_log_state()).unwrap();
    let start = state.last_log_id.map_or(1, |id| id.index + 1);
    let mut next = start;
    // xorshift, seeded by the term: batch sizes differ from child to child.
    let mut x = term.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while next - start < CHILD_MAX_ENTRIES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = 1 + x % 50;
        let batch: Vec<_> = (next..next + size)
            .map(|i| appended_entry(term, i))
            .collect();
        rt.block_on(log.blocking_append(batch)).unwrap();
        next += size;
        let mut out = std::io::stdout().lock();
        // The parent gone, the child has no one to report to.
        if writeln!(out, "flushed {}", next - 1)
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}

/// What one child reported before it died.
struct Killed {
    /// `flushed` lines read.
    flushes: u64,
    /// The last index a `flushed` line named.
    last_flushed: Option<u64>,
}

/// Runs a child appending to `path` in `term`, kills it (SIGKILL) once it
/// reported `kill_after` flushed appends and `delay` more passed, and
/// returns what it reported, every line it finished printing included.
fn append_and_kill(path: &Path, term: u64, kill_after: u64, delay: Duration) -> Killed {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_appends_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_PATH, path)
        .env(CHILD_TERM, term.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // A thread reads the child's lines, so the parent can give up on a
    // child that hangs instead of hanging with it.
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut out = BufReader::new(out);
        loop {
            let mut line = String::new();
            match out.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                // A line cut short by the kill was never fully reported.
                Ok(_) if line.ends_with('\n') => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
                Ok(_) => break,
            }
        }
    });
    let mut killed = Killed {
        flushes: 0,
        last_flushed: None,
    };
    let mut take = |line: String| {
        // The harness's own text may share the first line.
        if let Some(at) = line.rfind("flushed ") {
            let index: u64 = line[at + 8..].trim().parse().unwrap();
            assert!(killed.last_flushed < Some(index), "indexes grow");
            killed.flushes += 1;
            killed.last_flushed = Some(index);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = 0;
    while lines < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                lines += u64::from(line.contains("flushed "));
                take(line);
            }
            Err(e) => {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("the child stopped reporting ({e:?}) after {lines} appends");
            }
        }
    }
    std::thread::sleep(delay);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(SIGKILL), "killed: {status:?}");
    // What the child printed before it died counts too.
    reader.join().unwrap();
    for line in rx.try_iter() {
        take(line);
    }
    killed
}

/// Processes killed at varying moments while appending, one after another
/// on one file, each going on from the log the last one left: every entry
/// an append reported flushed (its `LogFlushed` callback called) survives
/// each kill, and the log stays gap-free from index 1, each entry the one
/// written at its index, in the term of the process that wrote it; the
/// file passes larch's check after each kill.
#[test]
fn a_killed_appender_keeps_every_flushed_entry() {
    const ROUNDS: u64 = 18;
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft.larch");
    let rt = runtime();
    // The first index each round's child wrote: round r's entries are
    // those from starts[r] to starts[r + 1] - 1, in term r + 1.
    let mut starts: Vec<u64> = Vec::new();
    let (mut kills, mut flushes, mut lost, mut unreported) = (0u64, 0u64, 0u64, 0u64);
    let mut losses = Vec::new();
    let mut last_index = 0;
    for round in 0..ROUNDS {
        starts.push(last_index + 1);
        let kill_after = 3 + round * 7;
        // A few hundred microseconds more on some rounds, so the kill lands
        // at different points of an append.
        let delay = Duration::from_micros(round % 4 * 300);
        let killed = append_and_kill(&path, round + 1, kill_after, delay);
        kills += 1;
        flushes += killed.flushes;

        let db = open(&path);
        db.check().unwrap();
        let mut log = LogStore::<TypeConfig>::new(db);
        let state = rt.block_on(log.get_log_state()).unwrap();
        assert_eq!(state.last_purged_log_id, None);
        let entries = rt.block_on(log.try_get_log_entries(..)).unwrap();
        let last = state.last_log_id.map_or(0, |id| id.index);
        assert_eq!(entries.len() as u64, last, "round {round}: a gap-free log");
        for (at, entry) in entries.iter().enumerate() {
            let index = at as u64 + 1;
            // The round whose child wrote `index`.
            let writer = starts.partition_point(|&s| s <= index) as u64 - 1;
            assert_eq!(
                *entry,
                appended_entry(writer + 1, index),
                "round {round}: the entry at {index}"
            );
        }
        // Acknowledged entries missing: past the log's end, those this
        // child or an earlier one reported flushed.
        let acknowledged = killed.last_flushed.unwrap_or(0).max(last_index);
        // Entries kept past that: the kill fell between a commit and its
        // report (allowed: their appends were never acknowledged).
        unreported += last.saturating_sub(acknowledged);
        last_index = last;
        if acknowledged > last {
            lost += acknowledged - last;
            losses.push(format!(
                "round {round}: {acknowledged} was reported flushed, the log ends at {last}"
            ));
            // The rounds' bookkeeping assumes a log that only grows.
            break;
        }
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "RELIABILITY suite=kill part=raft kills={kills} flushed={flushes} lost={lost} \
         entries={last_index} unreported={unreported} secs={:.1}",
        started.elapsed().as_secs_f64()
    );
    assert!(losses.is_empty(), "{losses:#?}");
    assert_eq!(lost, 0);
}
