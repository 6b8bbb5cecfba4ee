//! The order between a snapshot install and the purge openraft sends with
//! it.
//!
//! When a follower receives a whole snapshot, openraft 0.9 hands the
//! install to the state machine's task and at once tells the log store to
//! purge the log up to the snapshot, in no order between the two. A purge
//! committed first would leave a file whose log starts after a state that
//! is not there. So the log store waits for the install before it purges.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a purge waits for an install before it gives up (and leaves
/// the log as it is: openraft allows a purge to happen later).
const PURGE_WAIT: Duration = Duration::from_secs(10);

/// What the state machine tells the log store: whether a snapshot is being
/// received, and the index it has applied up to.
#[derive(Default)]
pub(crate) struct InstallGate {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// A snapshot began to arrive and has not been installed.
    receiving: bool,
    /// Its install failed.
    failed: bool,
    applied: u64,
}

impl InstallGate {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot has begun to arrive.
    pub(crate) fn receiving(&self) {
        let mut state = self.state();
        state.receiving = true;
        state.failed = false;
    }

    /// The state machine has applied up to `index`.
    pub(crate) fn applied(&self, index: u64) {
        let mut state = self.state();
        state.applied = state.applied.max(index);
        self.changed.notify_all();
    }

    /// The snapshot received is installed, durably, up to `index`.
    pub(crate) fn installed(&self, index: u64) {
        let mut state = self.state();
        state.applied = state.applied.max(index);
        state.receiving = false;
        self.changed.notify_all();
    }

    /// The snapshot received could not be installed.
    pub(crate) fn install_failed(&self) {
        self.state().failed = true;
        self.changed.notify_all();
    }

    /// Waits until a purge up to `upto` may run: at once unless a snapshot
    /// was received since the state machine last reached `upto`, then until
    /// its install reaches it. Returns whether the purge may run: not if
    /// the install failed or took longer than [`PURGE_WAIT`].
    pub(crate) fn wait_for_purge(&self, upto: u64) -> bool {
        let deadline = Instant::now() + PURGE_WAIT;
        let mut state = self.state();
        while state.receiving && state.applied < upto {
            let left = deadline.saturating_duration_since(Instant::now());
            if state.failed || left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_purge_waits_for_the_install_it_follows() {
        let gate = Arc::new(InstallGate::default());
        assert!(gate.wait_for_purge(100), "nothing received: no wait");
        gate.receiving();
        gate.applied(40);
        assert!(gate.wait_for_purge(40), "already applied that far");
        let installer = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                gate.installed(100);
            })
        };
        let start = Instant::now();
        assert!(gate.wait_for_purge(100));
        assert!(start.elapsed() >= Duration::from_millis(40));
        installer.join().unwrap();
        // A failed install lets no purge past the state machine, at once.
        gate.receiving();
        gate.install_failed();
        let start = Instant::now();
        assert!(!gate.wait_for_purge(200));
        assert!(gate.wait_for_purge(100));
        assert!(start.elapsed() < PURGE_WAIT / 2);
    }
}
