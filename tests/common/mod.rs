#![allow(dead_code)]

use std::path::{Path, PathBuf};

use larch::{Database, Options};
use tempfile::TempDir;

/// A database in a fresh temporary directory.
pub struct TestDb {
    pub dir: TempDir,
    pub db: Option<Database>,
    page_size: u32,
}

impl TestDb {
    pub fn new(page_size: u32) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TestDb {
            dir,
            db: None,
            page_size,
        };
        t.reopen();
        t
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("test.larch")
    }

    pub fn db(&self) -> &Database {
        self.db.as_ref().unwrap()
    }

    pub fn reopen(&mut self) {
        self.db = None;
        self.db = Some(open(&self.path(), self.page_size));
    }

    pub fn file_size(&self) -> u64 {
        std::fs::metadata(self.path()).unwrap().len()
    }
}

pub fn open(path: &Path, page_size: u32) -> Database {
    // SAFETY: the test owns the file and nothing else touches it.
    unsafe {
        Options::new()
            .page_size(page_size)
            .map_size(1 << 34)
            .open(path)
    }
    .unwrap()
}

/// A deterministic pseudo-random sequence (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Collects a range into owned pairs.
pub fn collect(r: larch::Range<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    r.map(|e| {
        let (k, v) = e.unwrap();
        (k.to_vec(), v.to_vec())
    })
    .collect()
}
