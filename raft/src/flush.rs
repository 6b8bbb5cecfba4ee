//! Group commit for the log: appends commit without a sync of their own,
//! and one thread makes them durable many at a time, then tells openraft.

use std::io;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use larch::Database;

/// What to do once an append is durable, or is known never to be.
pub(crate) type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// A thread that syncs the database for the appends waiting on it: it
/// takes every append queued, calls [`Database::sync`] once, which makes
/// every commit before it durable, and then completes them all. Appends
/// queued during a sync wait for the next one, so under load one sync
/// serves a whole batch of appends, whichever tasks made them.
///
/// Dropping it completes what is queued and joins the thread.
pub(crate) struct Flusher {
    queue: Option<Sender<Done>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// The flusher of `db`.
    pub(crate) fn new(db: Database) -> Flusher {
        let (queue, waiting) = channel();
        let thread = std::thread::Builder::new()
            .name("larch-raft-flush".into())
            .spawn(move || flush(db, waiting))
            .expect("the flush thread starts");
        Flusher {
            queue: Some(queue),
            thread: Some(thread),
        }
    }

    /// Calls `done` once every commit made before this call is durable
    /// (or with the error that kept it from being so).
    pub(crate) fn after_sync(&self, done: Done) {
        let queue = self.queue.as_ref().expect("present until drop");
        if let Err(unsent) = queue.send(done) {
            // The thread is gone (it panicked): nothing will sync.
            (unsent.0)(Err(io::Error::other("the log's flush thread is gone")));
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The flush thread: one sync per batch of waiting appends.
fn flush(db: Database, waiting: Receiver<Done>) {
    while let Ok(first) = waiting.recv() {
        let mut batch = vec![first];
        batch.extend(waiting.try_iter());
        let synced = db.sync();
        for done in batch {
            done(match &synced {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::other(e.to_string())),
            });
        }
    }
}
