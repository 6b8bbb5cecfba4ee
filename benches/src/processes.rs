//! Reads from several processes at once on one database file.
//!
//! The engine's process (which loaded the database and keeps it open, with
//! no write transaction running) starts this binary again once per reader,
//! with `--reader`, the engine and the database's directory. Each reader
//! gets its keys on stdin, opens the database, says `ready` on stdout and
//! waits; once all are ready the parent releases them with one byte each
//! and times until every one has said `done SUM`. Opening, receiving the
//! keys and process start-up are outside the time; the mapping of the file
//! into each new process is inside, as it is for any process that starts
//! reading. Each reader's checksum must match the one the parent computed
//! from the generated data, so a reader that read nothing, or the wrong
//! values, fails the run.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::Instant;

use crate::engines;

/// A reader process and its two pipes.
struct Reader {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Reader {
    /// The next line the reader writes, without its newline.
    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err("a reader process ended early".into()),
            Ok(_) => Ok(line.trim_end().to_owned()),
            Err(e) => Err(format!("read from a reader process: {e}")),
        }
    }
}

/// Keys on the pipe: their count, then each one's length and bytes (u64 and
/// u32, little-endian).
fn encode(keys: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + keys.iter().map(|k| 4 + k.len()).sum::<usize>());
    out.extend_from_slice(&(keys.len() as u64).to_le_bytes());
    for k in keys {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
    }
    out
}

fn decode(input: &mut impl Read) -> std::io::Result<Vec<Vec<u8>>> {
    let mut word = [0u8; 8];
    input.read_exact(&mut word)?;
    let n = u64::from_le_bytes(word) as usize;
    // Each key copied out in the order it is read, so that the list lies in
    // memory as a stream, as the in-process workloads' lists do.
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        let mut len = [0u8; 4];
        input.read_exact(&mut len)?;
        let mut k = vec![0u8; u32::from_le_bytes(len) as usize];
        input.read_exact(&mut k)?;
        keys.push(k);
    }
    Ok(keys)
}

/// Reads `parts[i]` in reader process `i`, all at once, on engine `name`'s
/// database in `dir`; `expected[i]` is the checksum of `parts[i]`'s values.
/// Returns the milliseconds from the release of the readers until the last
/// one is done.
pub fn reads(
    name: &str,
    dir: &Path,
    parts: &[&[Vec<u8>]],
    expected: &[u64],
) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("path of this binary: {e}"))?;
    let mut readers = Vec::new();
    for part in parts {
        let mut child = Command::new(&exe)
            .args(["--reader", "--engines", name, "--db"])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start a reader process: {e}"))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        stdin
            .write_all(&encode(part))
            .map_err(|e| format!("send a reader its keys: {e}"))?;
        readers.push(Reader {
            child,
            stdin,
            stdout,
        });
    }
    for r in &mut readers {
        let line = r.line()?;
        if line != "ready" {
            return Err(format!("a reader said {line:?}, not ready"));
        }
    }
    let start = Instant::now();
    for r in &mut readers {
        r.stdin
            .write_all(b"g")
            .map_err(|e| format!("release a reader: {e}"))?;
    }
    let mut sums = Vec::new();
    for r in &mut readers {
        let line = r.line()?;
        let sum = line
            .strip_prefix("done ")
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("a reader said {line:?}, not done"))?;
        sums.push(sum);
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    for (i, mut r) in readers.into_iter().enumerate() {
        drop(r.stdin);
        let status = r
            .child
            .wait()
            .map_err(|e| format!("wait for reader {i}: {e}"))?;
        if !status.success() {
            return Err(format!("reader {i} failed ({status})"));
        }
        if sums[i] != expected[i] {
            return Err(format!(
                "reader {i} read values with checksum {}, expected {}",
                sums[i], expected[i]
            ));
        }
    }
    Ok(ms)
}

/// The reader process: keys from stdin, engine `name`'s database in `dir`
/// opened beside the parent's handle, one read of every key once released.
pub fn reader_main(name: &str, dir: &Path) -> ExitCode {
    let mut stdin = std::io::stdin().lock();
    let keys = match decode(&mut stdin) {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("reader: receive the keys: {e}");
            return ExitCode::FAILURE;
        }
    };
    let engine = engines::open_existing(name, dir);
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "ready")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    let mut go = [0u8; 1];
    if stdin.read_exact(&mut go).is_err() {
        eprintln!("reader: never released");
        return ExitCode::FAILURE;
    }
    let sum = engine.get_all(&keys);
    if writeln!(stdout, "done {sum}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
