//! What the `larch` binary's test files share: running it (and other
//! programs) as a user would, and a scratch directory.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Held while a child is spawned, and by a test while it closes a database
/// it opened in this process. A child forked by another test's thread holds
/// a copy of every descriptor until it execs, and with it the file lock, so
/// a command run just after the close could still find the file locked.
/// (`spawn` returns once the child has exec'd.)
static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn spawn_lock() -> std::sync::MutexGuard<'static, ()> {
    SPAWN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `program` with `args`, writing `input` to its standard input.
pub fn run_with_input(program: &str, args: &[&str], input: Option<&[u8]>) -> Output {
    let spawned = {
        let _spawning = spawn_lock();
        Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let mut child = spawned.unwrap_or_else(|e| panic!("run {program}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(input) = input {
        // A command that refuses its arguments may exit before reading.
        match stdin.write_all(input) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.expect("write stdin"),
        }
    }
    drop(stdin);
    child.wait_with_output().expect("ran")
}

pub fn larch_with_input(args: &[&str], input: Option<&[u8]>) -> Output {
    run_with_input(env!("CARGO_BIN_EXE_larch"), args, input)
}

pub fn larch(args: &[&str]) -> Output {
    larch_with_input(args, None)
}

pub fn ok(args: &[&str]) -> String {
    let out = larch(args);
    assert!(
        out.status.success(),
        "larch {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs a command that must fail; returns its one-line error.
pub fn fails(args: &[&str]) -> String {
    let out = larch(args);
    assert!(!out.status.success(), "larch {args:?} succeeded");
    let err = String::from_utf8(out.stderr).expect("UTF-8 errors");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A dump without its `mapsize=` lines: the size hint follows the file.
pub fn strip_mapsize(dump: &str) -> String {
    dump.lines()
        .filter(|l| !l.starts_with("mapsize="))
        .map(|l| format!("{l}\n"))
        .collect()
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

pub struct Dir(pub tempfile::TempDir);

impl Dir {
    pub fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}
