//! Storage whose disk fills up on demand: once the flag is set, the file
//! cannot grow (`allocate` fails with ENOSPC); everything else is a file's.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use larch::Options;
use larch::testing::{FileStorage, Storage};

/// Storage whose disk is full once `full` is set: the file cannot grow.
pub struct Full {
    pub inner: FileStorage,
    pub full: Arc<AtomicBool>,
}

impl Storage for Full {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, data)
    }
    fn write_vectored_at(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        self.inner.write_vectored_at(offset, bufs)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, from: u64, to: u64) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.inner.allocate(from, to)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}

/// `options` with storage that becomes a full disk when `full` is set.
pub fn full_disk(options: Options, full: &Arc<AtomicBool>) -> Options {
    let flag = full.clone();
    options.storage(move |file| {
        Ok(Box::new(Full {
            inner: FileStorage::new(file),
            full: flag.clone(),
        }) as Box<dyn Storage>)
    })
}
