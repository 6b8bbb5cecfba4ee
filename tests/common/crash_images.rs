//! Crash images of a workload: what the file could hold after a power loss
//! at each sync, for the red-team suites' power-loss attacks.

use std::sync::{Arc, Mutex};

use larch::testing::{Fate, Recorder, apply};

/// Crash images, each with the commits acknowledged when it was taken.
pub type Images = Vec<(Vec<u8>, usize)>;

/// A recorder, the images it keeps, and the count of acknowledged commits
/// the test bumps after each commit returns.
pub struct CrashImages {
    pub recorder: Recorder,
    pub images: Arc<Mutex<Images>>,
    pub acked: Arc<Mutex<usize>>,
}

/// A recorder that keeps, at every sync, the images of the file with the
/// pending writes all dropped, all applied, and `torn` mixes of torn
/// writes (the last of them garbled).
pub fn crash_images(torn: u64) -> CrashImages {
    let images: Arc<Mutex<Images>> = Arc::default();
    let acked = Arc::new(Mutex::new(0usize));
    let (im, ak) = (Arc::clone(&images), Arc::clone(&acked));
    let recorder = Recorder::new(move |p| {
        let k = *ak.lock().unwrap();
        let n = p.pending.len();
        let mut out = im.lock().unwrap();
        out.push((apply(p.durable, p.pending, &vec![Fate::Dropped; n]), k));
        out.push((apply(p.durable, p.pending, &vec![Fate::Applied; n]), k));
        for seed in 0..torn {
            let fates: Vec<Fate> = (0..n)
                .map(|i| Fate::Torn {
                    seed: seed * 1000 + i as u64 + p.syncs,
                    garble: seed + 1 == torn,
                })
                .collect();
            out.push((apply(p.durable, p.pending, &fates), k));
        }
    });
    CrashImages {
        recorder,
        images,
        acked,
    }
}
