//! Many processes on one database (docs/reliability.md, suite multiprocess).
//!
//! The test binary runs itself as child processes (`child_process`, a role
//! named in `LARCH_MP_ROLE`): readers that verify whole snapshots, writers
//! that take turns committing, readers that hold a snapshot until they are
//! killed. Children talk to the parent in lines starting with `@mp ` on their
//! standard output and stop when their standard input closes, so none
//! outlives a parent that dies. Each test prints its own
//! `RELIABILITY suite=multiprocess part=...` line.

#[path = "../common/mod.rs"]
mod common;

mod bank;
mod counters;
mod growth;
mod lockfile;
mod opening;
mod reclaim;
mod shrink;
mod writer_kills;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use larch::Database;

/// Page size of every database here: small pages make deeper trees and more
/// pages to reuse.
pub const PAGE: u32 = 1024;

const ROLE: &str = "LARCH_MP_ROLE";
const PATH: &str = "LARCH_MP_PATH";
const ARGS: &str = "LARCH_MP_ARGS";

/// What starts a message line of a child.
const MARK: &str = "@mp ";

/// The longest a child may take to say something, or to exit once told.
const PATIENCE: Duration = Duration::from_secs(120);

/// The child half of every test here: runs the role `LARCH_MP_ROLE` names
/// on the database at `LARCH_MP_PATH`. Returns at once in a normal run.
#[test]
fn child_process() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let path = PathBuf::from(std::env::var(PATH).unwrap());
    let args = Args(std::env::var(ARGS).unwrap_or_default());
    match role.as_str() {
        "bank_reader" => bank::reader(&path),
        "bank_writer" => bank::writer(&path, &args),
        "counter_writer" => counters::writer(&path, &args),
        "holder" => reclaim::holder(&path),
        "pinner" => reclaim::pinner(&path),
        "opener" => opening::opener(&path),
        "grow_watcher" => growth::watcher(&path),
        "crowd" => reclaim::crowd(&path, &args),
        "shrink_watcher" => shrink::watcher(&path),
        other => panic!("unknown role {other}"),
    }
}

/// A child's arguments: `key=value` pairs separated by spaces.
pub struct Args(String);

impl Args {
    pub fn get(&self, key: &str) -> u64 {
        field(&self.0, key).unwrap_or_else(|| panic!("no argument {key} in {:?}", self.0))
    }
}

/// The number after `key=` in `line`.
pub fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Opens the database at `path` as every process here does.
pub fn open(path: &Path) -> Database {
    common::open(path, PAGE)
}

/// In a child: sends `msg` to the parent.
pub fn say(msg: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{msg}").unwrap();
    out.flush().unwrap();
}

/// In a child: the lines the parent sends, on a channel that disconnects when
/// the parent closes the pipe (or dies).
pub fn from_parent() -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// In a child: a flag that rises when the parent closes the pipe.
pub fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let set = stop.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if line.is_err() {
                break;
            }
        }
        set.store(true, Ordering::SeqCst);
    });
    stop
}

/// A child process of this test binary, killed if still running when dropped.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    role: String,
}

/// Starts a child in `role` on the database at `path`.
pub fn spawn(role: &str, path: &Path, args: &str) -> Proc {
    let mut child = {
        let _spawning = common::spawn_lock();
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, role)
            .env(PATH, path)
            .env(ARGS, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The harness's "test child_process ... " has no newline yet, so
            // the first message may share its line.
            if let Some(at) = line.find(MARK)
                && tx.send(line[at + MARK.len()..].to_owned()).is_err()
            {
                break;
            }
        }
    });
    Proc {
        stdin: child.stdin.take(),
        child,
        lines: rx,
        role: role.to_owned(),
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next message, or `None` once the child's output ended.
    pub fn next(&self) -> Option<String> {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("{} said nothing for {PATIENCE:?}", self.role),
        }
    }

    /// The next message, which must start with `word`.
    pub fn expect(&self, word: &str) -> String {
        match self.next() {
            Some(line) if line.starts_with(word) => line,
            other => panic!("{} said {other:?}, not {word}", self.role),
        }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Kills the child with SIGKILL and waits for it; returns every message
    /// it sent.
    pub fn kill(mut self) -> Vec<String> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.rest()
    }

    /// Closes the child's standard input (its signal to stop), waits for it
    /// to exit, requires success, and returns the messages not yet read.
    pub fn finish(mut self) -> Vec<String> {
        self.stdin = None;
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}", self.role);
                return self.rest();
            }
            assert!(Instant::now() < deadline, "{} does not exit", self.role);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The messages left, up to the end of the output.
    fn rest(&self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(line) = self.next() {
            out.push(line);
        }
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 64-bit hash of `bytes` (FNV-1a, then a finaliser).
pub fn hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The digest of a whole table: the number of entries and a hash over them
/// in order.
pub fn digest(t: &larch::Table<'_>) -> larch::Result<(u64, u64)> {
    let (mut n, mut h) = (0u64, 0u64);
    for e in t.iter()? {
        let (k, v) = e?;
        n += 1;
        h = hash(&[&h.to_le_bytes(), k, v]);
    }
    Ok((n, h))
}
