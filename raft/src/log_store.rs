//! The Raft log, the vote and the log's markers in larch tables.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use larch::{Database, Durability, TableDefinition, WriteTxn};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{
    ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogId, RaftTypeConfig, StorageError, Vote,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{decode_error, existing, from_bytes, io_error, to_bytes};
use crate::flush::Flusher;
use crate::order::InstallGate;
use crate::{LOG_DURABILITY, STATE_DURABILITY, blocking};

/// The entries, by index.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft.log");
/// `vote`, `committed` and `purged`.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft.meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// openraft's log store over a larch database: the log in the table
/// `raft.log`, keyed by index, and the vote and the committed and purged
/// log ids in `raft.meta`.
///
/// Clones share the database; each is also the store's log reader.
///
/// An append commits with [`Durability::None`], so it is readable at once,
/// and is reported flushed after a [`Database::sync`] that began after its
/// commit: one sync for every append queued meanwhile (group commit). The
/// vote, truncations and purges commit [`Durability::Immediate`], which
/// makes every append before them durable too.
/// Entries are stored as JSON, so `C`'s entries, node ids and nodes must be
/// serde types (openraft's `serde` feature).
pub struct LogStore<C> {
    db: Database,
    flusher: Arc<Flusher>,
    /// The state machine's, when the store was made with it.
    gate: Option<Arc<InstallGate>>,
    types: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            db: self.db.clone(),
            flusher: self.flusher.clone(),
            gate: self.gate.clone(),
            types: PhantomData,
        }
    }
}

impl<C> LogStore<C> {
    /// The log store of `db` (its tables are created at the first write).
    /// It starts the thread that syncs appends; the last clone's drop waits
    /// for that thread to complete what is queued, so it must not happen
    /// while the dropping thread holds a write transaction of `db` (the
    /// sync would wait for it).
    ///
    /// This store does not know the state machine: a purge openraft sends
    /// with a snapshot install runs at once, so a state machine of your own
    /// must make its install durable before openraft purges (or use
    /// [`stores`](crate::stores), whose log store waits for the install).
    pub fn new(db: Database) -> Self {
        Self::with_gate(db, None)
    }

    pub(crate) fn with_gate(db: Database, gate: Option<Arc<InstallGate>>) -> Self {
        LogStore {
            flusher: Arc::new(Flusher::new(db.clone())),
            db,
            gate,
            types: PhantomData,
        }
    }

    /// The database the store keeps its log in.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    /// The value under `key` in `raft.meta`, decoded.
    fn read_meta<T: DeserializeOwned>(
        &self,
        key: &str,
        subject: ErrorSubject<C::NodeId>,
    ) -> Result<Option<T>, StorageError<C::NodeId>> {
        let fail = |e: larch::Error| io_error(subject.clone(), ErrorVerb::Read, e);
        let r = self.db.begin_read().map_err(fail)?;
        let Some(table) = existing(&r, META).map_err(fail)? else {
            return Ok(None);
        };
        match table.get(key).map_err(fail)? {
            Some(bytes) => from_bytes(bytes)
                .map(Some)
                .map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e)),
            None => Ok(None),
        }
    }

    /// Runs `change` in a write transaction of `durability` and commits it.
    fn write(
        &self,
        subject: ErrorSubject<C::NodeId>,
        durability: Durability,
        change: impl FnOnce(&WriteTxn) -> larch::Result<()>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let fail = |e: larch::Error| io_error(subject.clone(), ErrorVerb::Write, e);
        blocking(|| {
            let mut w = self.db.begin_write()?;
            w.set_durability(durability);
            change(&w)?;
            w.commit()
        })
        .map_err(fail)
    }

    /// The log id of the last entry stored.
    fn last_log_id(&self) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        let fail = |e: larch::Error| io_error(ErrorSubject::Logs, ErrorVerb::Read, e);
        let r = self.db.begin_read().map_err(fail)?;
        let Some(table) = existing(&r, LOG).map_err(fail)? else {
            return Ok(None);
        };
        match table.last().map_err(fail)? {
            Some((index, bytes)) => Ok(Some(decode_entry::<C>(index, bytes)?.get_log_id().clone())),
            None => Ok(None),
        }
    }
}

/// The entry stored under `index`: bytes that do not decode, or an entry
/// of another index, are an error (the file is never trusted, and openraft
/// relies on a log without holes).
fn decode_entry<C>(index: u64, bytes: &[u8]) -> Result<C::Entry, StorageError<C::NodeId>>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
{
    let entry: C::Entry = from_bytes(bytes)
        .map_err(|e| decode_error(ErrorSubject::LogIndex(index), format!("log entry: {e}")))?;
    let stored = entry.get_log_id().index;
    if stored != index {
        return Err(decode_error(
            ErrorSubject::LogIndex(index),
            format!("the entry stored under index {index} is entry {stored}"),
        ));
    }
    Ok(entry)
}

/// `range` of log indexes as owned bounds.
fn index_bounds(range: &impl RangeBounds<u64>) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let fail = |e: larch::Error| io_error(ErrorSubject::Logs, ErrorVerb::Read, e);
        let r = self.db.begin_read().map_err(fail)?;
        let Some(table) = existing(&r, LOG).map_err(fail)? else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for item in table.range::<u64>(index_bounds(&range)).map_err(fail)? {
            let (index, bytes) = item.map_err(fail)?;
            entries.push(decode_entry::<C>(index, bytes)?);
        }
        Ok(entries)
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let last_purged_log_id = self.read_meta(PURGED, ErrorSubject::Logs)?;
        let last_log_id = self.last_log_id()?.or(last_purged_log_id.clone());
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let bytes = to_bytes(vote);
        self.write(ErrorSubject::Vote, LOG_DURABILITY, |w| {
            w.open_typed(META)?.insert(VOTE, bytes.as_slice())?;
            Ok(())
        })
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        self.read_meta(VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        // A marker lost to a crash only means openraft waits for the leader
        // to learn what is committed again: no sync of its own.
        let bytes = to_bytes(&committed);
        self.write(ErrorSubject::Store, STATE_DURABILITY, |w| {
            w.open_typed(META)?.insert(COMMITTED, bytes.as_slice())?;
            Ok(())
        })
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self
            .read_meta::<Option<LogId<C::NodeId>>>(COMMITTED, ErrorSubject::Store)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.write(ErrorSubject::Logs, Durability::None, |w| {
            let mut log = w.open_typed(LOG)?;
            for entry in entries {
                log.insert(entry.get_log_id().index, to_bytes(&entry).as_slice())?;
            }
            Ok(())
        })?;
        // Visible now; flushed once a sync that began after the commit ends.
        self.flusher
            .after_sync(Box::new(move |synced| callback.log_io_completed(synced)));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.write(ErrorSubject::Logs, LOG_DURABILITY, |w| {
            w.open_typed(LOG)?.remove_range(log_id.index..)?;
            Ok(())
        })
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        // After a snapshot install, only once the install is durable.
        let gate = self.gate.clone();
        if let Some(gate) = gate
            && !blocking(|| gate.wait_for_purge(log_id.index))
        {
            return Ok(());
        }
        let bytes = to_bytes(&log_id);
        self.write(ErrorSubject::Logs, LOG_DURABILITY, |w| {
            w.open_typed(META)?.insert(PURGED, bytes.as_slice())?;
            w.open_typed(LOG)?.remove_range(..=log_id.index)?;
            Ok(())
        })
    }
}
