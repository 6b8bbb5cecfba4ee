//! Scratch files of the fuzz targets, and how they write and open images.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pager::FileStorage;
use crate::testing::recorder::NoSync;
use crate::{Database, Options};

/// A scratch file of its own for each call (fuzzers run calls in parallel).
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new(tag: &str) -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("larch-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir.join(format!("{tag}-{n}.larch")))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes `image` to `path`, leaving its all-zero 4 KiB blocks as holes
/// (they read as zeros): most of a base image is the file's unused tail.
pub(super) fn write_image(path: &Path, image: &[u8]) {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 4096;
    let file = std::fs::File::create(path).expect("create the image");
    file.set_len(image.len() as u64).expect("size the image");
    let mut at = 0;
    while at < image.len() {
        // One comparison per block: a byte loop here would be traced per byte.
        let zero = |i: usize| {
            let block = &image[i..(i + BLOCK).min(image.len())];
            block == &[0u8; BLOCK][..block.len()]
        };
        if zero(at) {
            at += BLOCK;
            continue;
        }
        let mut end = at + BLOCK;
        while end < image.len() && !zero(end) {
            end += BLOCK;
        }
        let end = end.min(image.len());
        file.write_all_at(&image[at..end], at as u64)
            .expect("write the image");
        at = end;
    }
}

pub(super) fn open(path: &Path, page_size: u32) -> crate::Result<Database> {
    open_with(path, page_size, false)
}

pub(super) fn open_with(path: &Path, page_size: u32, verify: bool) -> crate::Result<Database> {
    let opts = Options::new()
        .page_size(page_size)
        .map_size(1 << 30)
        .verify(verify)
        .storage(|f| Ok(Box::new(NoSync(FileStorage::new(f)))));
    opts.open_scratch(path)
}
