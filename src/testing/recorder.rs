//! A storage that writes through to the file and remembers what is not yet
//! durable, so that crash images can be built from it.

use std::fs::File;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use super::Rng;
use crate::pager::{FileStorage, Storage};

/// A write or resize not yet made durable by a sync.
#[derive(Clone, Debug)]
pub enum Op {
    /// `data` written at `offset`.
    Write {
        /// Byte offset.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The file length set.
    SetLen(u64),
}

/// What a crash does to one pending operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// It reached the disk.
    Applied,
    /// It did not.
    Dropped,
    /// Each 512-byte sector independently reached the disk, did not, or holds
    /// garbage (with `garble`); the choices come from the seed.
    Torn {
        /// Random choices.
        seed: u64,
        /// Whether a sector may hold garbage.
        garble: bool,
    },
}

/// The state at a sync: what is durable, and what the sync is about to make so.
pub struct CrashPoint<'a> {
    /// The file as of the last completed sync.
    pub durable: &'a [u8],
    /// Operations since then, in order.
    pub pending: &'a [Op],
    /// Syncs completed before this one.
    pub syncs: u64,
}

type OnSync = Box<dyn FnMut(&CrashPoint<'_>) + Send>;

struct State {
    durable: Vec<u8>,
    pending: Vec<Op>,
    syncs: u64,
    on_sync: Option<OnSync>,
    /// Whether `wrap` keeps `durable` and `pending` (a recorder resumed after
    /// a process crash) instead of taking the file as durable.
    resumed: bool,
    /// The sync (by number) that fails with EIO, and the seed of the fates its
    /// pending writes meet.
    fail_sync: Option<(u64, u64)>,
}

/// Writes through to the file and records every write and resize since the
/// last sync. `on_sync` sees each crash point before the sync completes. The
/// durable image is kept in memory; the real file is never synced.
#[derive(Clone)]
pub struct Recorder {
    state: Arc<Mutex<State>>,
}

impl Recorder {
    /// A recorder calling `on_sync` at each sync.
    pub fn new(on_sync: impl FnMut(&CrashPoint<'_>) + Send + 'static) -> Recorder {
        Recorder {
            state: Arc::new(Mutex::new(State {
                durable: Vec::new(),
                pending: Vec::new(),
                syncs: 0,
                on_sync: Some(Box::new(on_sync)),
                resumed: false,
                fail_sync: None,
            })),
        }
    }

    /// A recorder that goes on from an earlier one's state after a process
    /// crash: the file it will wrap holds what the page cache held (every
    /// write made), while only `durable` reached the disk and `pending` may
    /// still reach it or not. Its first sync (number `syncs`) makes `pending`
    /// durable.
    pub fn resume(
        durable: Vec<u8>,
        pending: Vec<Op>,
        syncs: u64,
        on_sync: impl FnMut(&CrashPoint<'_>) + Send + 'static,
    ) -> Recorder {
        Recorder {
            state: Arc::new(Mutex::new(State {
                durable,
                pending,
                syncs,
                on_sync: Some(Box::new(on_sync)),
                resumed: true,
                fail_sync: None,
            })),
        }
    }

    /// Makes sync number `sync` (counting from 0) fail with EIO, as a failed
    /// writeback does: each pending write independently reaches the disk, does
    /// not, or is torn (choices from `seed`), and none of them is pending any
    /// more, although the file (the page cache) still shows all of them.
    pub fn fail_sync(&self, sync: u64, seed: u64) {
        self.state.lock().fail_sync = Some((sync, seed));
    }

    /// The durable image, the operations still pending, and the syncs so far.
    pub fn state(&self) -> (Vec<u8>, Vec<Op>, u64) {
        let s = self.state.lock();
        (s.durable.clone(), s.pending.clone(), s.syncs)
    }

    /// The storage for `file`: its current contents count as durable, unless
    /// the recorder was [resumed](Recorder::resume).
    pub fn wrap(&self, file: File) -> io::Result<Box<dyn Storage>> {
        let mut s = self.state.lock();
        if !s.resumed {
            let mut durable = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut durable)?;
            s.durable = durable;
            s.pending.clear();
        }
        Ok(Box::new(Recording {
            file: FileStorage::new(file),
            state: self.state.clone(),
        }))
    }

    /// Stops calling `on_sync`.
    pub fn disarm(&self) {
        self.state.lock().on_sync = None;
    }

    /// Calls `on_sync` from now on.
    pub fn set_on_sync(&self, on_sync: impl FnMut(&CrashPoint<'_>) + Send + 'static) {
        self.state.lock().on_sync = Some(Box::new(on_sync));
    }
}

struct Recording {
    file: FileStorage,
    state: Arc<Mutex<State>>,
}

impl Storage for Recording {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_at(offset, data)?;
        self.state.lock().pending.push(Op::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.state.lock().pending.push(Op::SetLen(len));
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut s = self.state.lock();
        let State {
            durable,
            pending,
            syncs,
            on_sync,
            fail_sync,
            ..
        } = &mut *s;
        if let Some((at, seed)) = *fail_sync
            && at == *syncs
        {
            let mut rng = Rng(seed);
            let fates: Vec<Fate> = pending
                .iter()
                .map(|_| match rng.below(3) {
                    0 => Fate::Applied,
                    1 => Fate::Dropped,
                    _ => Fate::Torn {
                        seed: rng.next_u64(),
                        garble: false,
                    },
                })
                .collect();
            *durable = apply(durable, pending, &fates);
            pending.clear();
            *syncs += 1;
            return Err(io::Error::from_raw_os_error(5));
        }
        if let Some(f) = on_sync {
            f(&CrashPoint {
                durable,
                pending,
                syncs: *syncs,
            });
        }
        // The durable image below is the simulation's truth; the real file
        // needs no fdatasync (which would only slow the suites down).
        let fates = vec![Fate::Applied; pending.len()];
        *durable = apply(durable, pending, &fates);
        pending.clear();
        *syncs += 1;
        Ok(())
    }
}

/// Builds the file a crash leaves: `durable` with each pending operation
/// applied according to its fate.
pub fn apply(durable: &[u8], pending: &[Op], fates: &[Fate]) -> Vec<u8> {
    const SECTOR: usize = 512;
    let mut image = durable.to_vec();
    for (op, fate) in pending.iter().zip(fates) {
        match (op, *fate) {
            (_, Fate::Dropped) => {}
            (Op::SetLen(len), _) => image.resize(*len as usize, 0),
            (Op::Write { offset, data }, fate) => {
                let offset = *offset as usize;
                if image.len() < offset + data.len() {
                    image.resize(offset + data.len(), 0);
                }
                let target = &mut image[offset..offset + data.len()];
                match fate {
                    Fate::Torn { seed, garble } => {
                        let mut rng = Rng(seed);
                        for (dst, src) in target.chunks_mut(SECTOR).zip(data.chunks(SECTOR)) {
                            match rng.below(if garble { 3 } else { 2 }) {
                                0 => dst.copy_from_slice(src),
                                1 => {}
                                _ => dst.copy_from_slice(&rng.bytes(dst.len())),
                            }
                        }
                    }
                    _ => target.copy_from_slice(data),
                }
            }
        }
    }
    image
}

/// A storage whose syncs do nothing: for databases whose crashes are not under
/// test, so that they run fast.
pub struct NoSync(pub FileStorage);

impl Storage for NoSync {
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_at(offset, data)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}
