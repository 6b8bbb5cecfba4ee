//! Each engine behind one small trait, configured for the same durability:
//! every write transaction is synchronous when it returns, but those of
//! `write_unsynced`, which each engine makes durable at `sync`.

use std::ops::Bound;
use std::path::{Path, PathBuf};

/// What the workloads need from an engine. All of it takes `&self`, so reads
/// can run from several threads at once.
pub trait Engine: Sync {
    /// Inserts every pair in one synchronous transaction.
    fn write(&self, pairs: &[(Vec<u8>, Vec<u8>)]);
    /// Removes every key in one synchronous transaction.
    fn remove(&self, keys: &[Vec<u8>]);
    /// Inserts every pair in one transaction that is visible when this
    /// returns but not synced: larch `Durability::Eventual`, LMDB with
    /// `MDB_NOSYNC`, redb `Durability::None`, sled without a flush, RocksDB
    /// with `sync = false`.
    fn write_unsynced(&self, pairs: &[(Vec<u8>, Vec<u8>)]);
    /// Makes every write so far durable: larch `Database::sync`, LMDB
    /// `mdb_env_sync`, an empty `Immediate` commit in redb, sled's `flush`,
    /// RocksDB's `flush_wal(true)`.
    fn sync(&self);
    /// Looks every key up in one read transaction; returns a checksum of the
    /// values so that nothing is optimised away.
    fn get_all(&self, keys: &[Vec<u8>]) -> u64;
    /// Reads `n` entries from each start key in one read transaction.
    fn ranges(&self, starts: &[Vec<u8>], n: usize) -> u64;
    /// Number of entries.
    fn len(&self) -> u64;
    /// A snapshot of the data as committed now, which goes on seeing it
    /// whatever is written meanwhile, until dropped; or why the engine has
    /// none.
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, &'static str>;
    /// Gives the space of removed data back to the file system, with the
    /// database open, or writes a compacted copy of it into the empty
    /// directory `spare` if that is all the engine can do; or says why it can
    /// do neither.
    fn compact(&mut self, spare: &Path) -> Result<Compaction, &'static str>;
}

/// How `Engine::compact` compacted.
pub enum Compaction {
    /// In place: the engine's own files are the compacted database.
    InPlace,
    /// Into a copy, this file (durable when `compact` returns); the engine's
    /// own files are left as they were.
    Copy(PathBuf),
}

/// A read transaction or snapshot held open across writes.
pub trait Snapshot {
    /// Looks every key up in the snapshot; a checksum as `Engine::get_all`.
    fn get_all(&self, keys: &[Vec<u8>]) -> u64;
}

/// Every engine the harness knows, in table order.
pub const KNOWN: &[&str] = &["larch", "lmdb", "redb", "sled", "rocksdb"];

/// The engines this build runs, in table order: RocksDB only with the
/// `rocksdb` feature.
#[cfg(feature = "rocksdb")]
pub const ENGINES: &[&str] = KNOWN;
#[cfg(not(feature = "rocksdb"))]
pub const ENGINES: &[&str] = &["larch", "lmdb", "redb", "sled"];

/// Opens engine `name` in the empty directory `dir`.
pub fn open(name: &str, dir: &Path) -> Box<dyn Engine> {
    match name {
        "larch" => Box::new(Larch::open(dir)),
        "lmdb" => Box::new(Lmdb::open(dir)),
        "redb" => Box::new(Redb::open(dir)),
        "sled" => Box::new(Sled::open(dir)),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Box::new(Rocks::open(dir)),
        _ => panic!("engine {name} is not built in (feature rocksdb?)"),
    }
}

/// Opens engine `name`'s database, which another process created in `dir`
/// and still has open, to read it (the `reads_2_processes` readers).
pub fn open_existing(name: &str, dir: &Path) -> Box<dyn Engine> {
    match name {
        "larch" => Box::new(Larch::open(dir)),
        "lmdb" => Box::new(Lmdb::open_existing(dir)),
        _ => panic!("engine {name} does not share its files between processes"),
    }
}

/// Why engine `name` cannot have its database open in several processes at
/// once, or `None` if it can.
pub fn single_process(name: &str) -> Option<&'static str> {
    match name {
        "larch" | "lmdb" => None,
        "redb" => Some("redb locks its file for one process"),
        "sled" => Some("sled locks its directory for one process"),
        "rocksdb" => Some(
            "RocksDB locks its directory for one read-write process (read-only and secondary instances are other configurations)",
        ),
        _ => Some("unknown engine"),
    }
}

/// The checksum of one value that `get_all` and `ranges` sum.
pub fn checksum(value: &[u8]) -> u64 {
    value.len() as u64 + u64::from(value.first().copied().unwrap_or(0))
}

/// larch with its defaults: 4 KiB pages, synchronous commits.
pub struct Larch(larch::Database);

impl Larch {
    fn open(dir: &Path) -> Larch {
        // The defaults: a 1 GiB first map, grown as the file needs.
        let opts = larch::Options::new();
        // SAFETY: the benchmark's temporary directory is its own.
        Larch(unsafe { opts.open(dir.join("db.larch")) }.expect("open larch"))
    }
}

impl Engine for Larch {
    fn write(&self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        let w = self.0.begin_write().unwrap();
        {
            let mut t = w.open_table("bench").unwrap();
            for (k, v) in pairs {
                t.insert(k, v).unwrap();
            }
        }
        w.commit().unwrap();
    }

    fn write_unsynced(&self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        let mut w = self.0.begin_write().unwrap();
        w.set_durability(larch::Durability::Eventual);
        {
            let mut t = w.open_table("bench").unwrap();
            for (k, v) in pairs {
                t.insert(k, v).unwrap();
            }
        }
        w.commit().unwrap();
    }

    fn sync(&self) {
        self.0.sync().unwrap();
    }

    fn remove(&self, keys: &[Vec<u8>]) {
        let w = self.0.begin_write().unwrap();
        {
            let mut t = w.open_table("bench").unwrap();
            for k in keys {
                t.remove(k).unwrap();
            }
        }
        w.commit().unwrap();
    }

    fn get_all(&self, keys: &[Vec<u8>]) -> u64 {
        let r = self.0.begin_read().unwrap();
        let t = r.open_table("bench").unwrap();
        keys.iter()
            .map(|k| checksum(t.get(k).unwrap().unwrap()))
            .sum()
    }

    fn ranges(&self, starts: &[Vec<u8>], n: usize) -> u64 {
        let r = self.0.begin_read().unwrap();
        let t = r.open_table("bench").unwrap();
        let mut sum = 0;
        for s in starts {
            for e in t.range(&s[..]..).unwrap().take(n) {
                sum += checksum(e.unwrap().1);
            }
        }
        sum
    }

    fn len(&self) -> u64 {
        let r = self.0.begin_read().unwrap();
        r.open_table("bench").unwrap().len()
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, &'static str> {
        Ok(Box::new(self.0.begin_read().unwrap()))
    }

    fn compact(&mut self, _spare: &Path) -> Result<Compaction, &'static str> {
        self.0.compact().unwrap();
        Ok(Compaction::InPlace)
    }
}

impl Snapshot for larch::ReadTxn {
    fn get_all(&self, keys: &[Vec<u8>]) -> u64 {
        let t = self.open_table("bench").unwrap();
        keys.iter()
            .map(|k| checksum(t.get(k).unwrap().unwrap()))
            .sum()
    }
}

/// LMDB through heed, with its default (synchronous) flags and a 64 GiB map.
pub struct Lmdb {
    env: heed::Env,
    db: heed::Database<heed::types::Bytes, heed::types::Bytes>,
}

impl Lmdb {
    /// The environment in `dir`, with the flags every run uses.
    fn env(dir: &Path) -> heed::Env {
        // SAFETY: the benchmark's temporary directory is its own.
        unsafe {
            heed::EnvOpenOptions::new()
                .map_size(64 << 30)
                .max_dbs(1)
                .open(dir)
        }
        .expect("open lmdb")
    }

    fn open(dir: &Path) -> Lmdb {
        let env = Lmdb::env(dir);
        let mut w = env.write_txn().unwrap();
        let db = env.create_database(&mut w, None).unwrap();
        w.commit().unwrap();
        Lmdb { env, db }
    }

    /// The same environment, opened in another process beside the one that
    /// created it, with the same flags; only reads its unnamed database.
    fn open_existing(dir: &Path) -> Lmdb {
        let env = Lmdb::env(dir);
        let r = env.read_txn().unwrap();
        let db = env
            .open_database(&r, None)
            .unwrap()
            .expect("the unnamed database");
        // Committed so that the handle outlives this transaction.
        r.commit().unwrap();
        Lmdb { env, db }
    }
}

impl Engine for Lmdb {
    fn write(&self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        let mut w = self.env.write_txn().unwrap();
        for (k, v) in pairs {
            self.db.put(&mut w, k, v).unwrap();
        }
        w.commit().unwrap();
    }

    fn write_unsynced(&self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        use heed::{EnvFlags, FlagSetMode};
        // SAFETY: no other transaction of this environment runs while the
        // flag is set (the harness writes from one thread); MDB_NOSYNC's
        // risk to the file on power loss is the figure's point of comparison.
        unsafe { self.env.set_flags(EnvFlags::NO_SYNC, FlagSetMode::Enable) }.unwrap();
        self.write(pairs);
        // SAFETY: as above.
        unsafe { self.env.set_flags(EnvFlags::NO_SYNC, FlagSetMode::Disable) }.unwrap();
    }

    fn sync(&self) {
        self.env.force_sync().unwrap();
    }

    fn remove(&self, keys: &[Vec<u8>]) {
        let mut w = self.env.write_txn().unwrap();
        for k in keys {
            self.db.delete(&mut w, k).unwrap();
        }
        w.commit().unwrap();
    }

    fn get_all(&self, keys: &[Vec<u8>]) -> u64 {
        let r = self.env.read_txn().unwrap();
        keys.iter()
            .map(|k| checksum(self.db.get(&r, k).unwrap().unwrap()))
            .sum()
    }

    fn ranges(&self, starts: &[Vec<u8>], n: usize) -> u64 {
        let r = self.env.read_txn().unwrap();
        let mut sum = 0;
        for s in starts {
            let bounds = (Bound::Included(&s[..]), Bound::Unbounded);
            for e in self.db.range(&r, &bounds).unwrap().take(n) {
                sum += checksum(e.unwrap().1);
            }
        }
        sum
    }

    fn len(&self) -> u64 {
        let r = self.env.read_txn().unwrap();
        self.db.len(&r).unwrap()
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, &'static str> {
        let txn = self.env.read_txn().unwrap();
        Ok(Box::new(LmdbSnapshot { txn, db: self.db }))
    }

    /// LMDB never shrinks its file: the closest is `mdb_env_copy2` with
    /// `MDB_CP_COMPACT`, which writes the live pages, renumbered, to a new
    /// file. The copy is synced before returning, as a commit would be.
    fn compact(&mut self, spare: &Path) -> Result<Compaction, &'static str> {
        let path = spare.join("data.mdb");
        let file = self
            .env
            .copy_to_path(&path, heed::CompactionOption::Enabled)
            .unwrap();
        file.sync_all().unwrap();
        Ok(Compaction::Copy(path))
    }
}

/// An LMDB read transaction and the database to read through it.
struct LmdbSnapshot<'e> {
    txn: heed::RoTxn<'e, heed::WithTls>,
    db: heed::Database<heed::types::Bytes, heed::types::Bytes>,
}

impl Snapshot for LmdbSnapshot<'_> {
    fn get_all(&self, keys: &[Vec<u8>]) -> u64 {
        keys.iter()
            .map(|k| checksum(self.db.get(&self.txn, k).unwrap().unwrap()))
            .sum()
    }
}

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("bench");

/// redb with its default durability (immediate).
pub struct Redb(redb::Database);

impl Redb {
    fn open(dir: &Path) -> Redb {
        Redb(redb::Database::create(dir.join("db.redb")).expect("open redb"))
    }
}

impl Engine for Redb {
    fn write(&self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        let w = self.0.begin_write().unwrap();
        {
            let mut t = w.open_table(REDB_TABLE).unwrap();
            for (k, v) in pairs {
                t.insert(&k[..], &v[..]).unwrap();
            }
        }
        w.commit().unwrap();
    }

    fn write_unsynced(&self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        let mut w = self.0.begin_write().unwrap();
        w.set_durability(redb::Durability::None).unwrap();
        {
            let mut t = w.open_table(REDB_TABLE).unwrap();
            for (k, v) in pairs {
                t.insert(&k[..], &v[..]).unwrap();
            }
        }
        w.commit().unwrap();
    }

    fn sync(&self) {
        // An empty commit with the default, immediate durability persists
        // the ones before it.
        self.0.begin_write().unwrap().commit().unwrap();
    }

    fn remove(&self, keys: &[Vec<u8>]) {
        let w = self.0.begin_write().unwrap();
        {
            let mut t = w.open_table(REDB_TABLE).unwrap();
            for k in keys {
                t.remove(&k[..]).unwrap();
            }
        }
        w.commit().unwrap();
    }

    fn get_all(&self, keys: &[Vec<u8>]) -> u64 {
        use redb::ReadableDatabase;
        let r = self.0.begin_read().unwrap();
        let t = r.open_table(REDB_TABLE).unwrap();
        keys.iter()
            .map(|k| checksum(t.get(&k[..]).unwrap().unwrap().value()))
            .sum()
    }

    fn ranges(&self, starts: &[Vec<u8>], n: usize) -> u64 {
        use redb::ReadableDatabase;
        let r = self.0.begin_read().unwrap();
        let t = r.open_table(REDB_TABLE).unwrap();
        let mut sum = 0;
        for s in starts {
            for e in t.range(&s[..]..).unwrap().take(n) {
                sum += checksum(e.unwrap().1.value());
            }
        }
        sum
    }

    fn len(&self) -> u64 {
        use redb::{ReadableDatabase, ReadableTableMetadata};
        let r = self.0.begin_read().unwrap();
        r.open_table(REDB_TABLE).unwrap().len().unwrap()
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, &'static str> {
        use redb::ReadableDatabase;
        Ok(Box::new(self.0.begin_read().unwrap()))
    }

    /// `Database::compact` runs its compaction transactions until one moves
    /// nothing; it needs no transaction open, hence `&mut`.
    fn compact(&mut self, _spare: &Path) -> Result<Compaction, &'static str> {
        self.0.compact().unwrap();
        Ok(Compaction::InPlace)
    }
}

impl Snapshot for redb::ReadTransaction {
    fn get_all(&self, keys: &[Vec<u8>]) -> u64 {
        let t = self.open_table(REDB_TABLE).unwrap();
        keys.iter()
            .map(|k| checksum(t.get(&k[..]).unwrap().unwrap().value()))
            .sum()
    }
}

/// sled, with an explicit flush (fsync) after every write batch: sled does
/// not promise durability otherwise.
pub struct Sled(sled::Db);

impl Sled {
    fn open(dir: &Path) -> Sled {
        Sled(sled::open(dir.join("db.sled")).expect("open sled"))
    }
}

impl Engine for Sled {
    fn write(&self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        let mut batch = sled::Batch::default();
        for (k, v) in pairs {
            batch.insert(&k[..], &v[..]);
        }
        self.0.apply_batch(batch).unwrap();
        self.0.flush().unwrap();
    }

    fn write_unsynced(&self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        let mut batch = sled::Batch::default();
        for (k, v) in pairs {
            batch.insert(&k[..], &v[..]);
        }
        self.0.apply_batch(batch).unwrap();
    }

    fn sync(&self) {
        self.0.flush().unwrap();
    }

    fn remove(&self, keys: &[Vec<u8>]) {
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(&k[..]);
        }
        self.0.apply_batch(batch).unwrap();
        self.0.flush().unwrap();
    }

    fn get_all(&self, keys: &[Vec<u8>]) -> u64 {
        keys.iter()
            .map(|k| checksum(&self.0.get(k).unwrap().unwrap()))
            .sum()
    }

    fn ranges(&self, starts: &[Vec<u8>], n: usize) -> u64 {
        let mut sum = 0;
        for s in starts {
            for e in self.0.range(&s[..]..).take(n) {
                sum += checksum(&e.unwrap().1);
            }
        }
        sum
    }

    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, &'static str> {
        Err(
            "sled has no snapshots (its reads see every later write); it ran without the held reader",
        )
    }

    fn compact(&mut self, _spare: &Path) -> Result<Compaction, &'static str> {
        Err("sled 0.34 has no call that compacts or shrinks its files")
    }
}

/// RocksDB with its defaults and `sync = true` on every write batch.
#[cfg(feature = "rocksdb")]
pub struct Rocks(rocksdb::DB);

#[cfg(feature = "rocksdb")]
impl Rocks {
    fn open(dir: &Path) -> Rocks {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        Rocks(rocksdb::DB::open(&opts, dir.join("db.rocksdb")).expect("open rocksdb"))
    }

    fn sync_write(&self, batch: rocksdb::WriteBatch) {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.0.write_opt(batch, &wo).unwrap();
    }
}

#[cfg(feature = "rocksdb")]
impl Engine for Rocks {
    fn write(&self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        let mut batch = rocksdb::WriteBatch::default();
        for (k, v) in pairs {
            batch.put(k, v);
        }
        self.sync_write(batch);
    }

    fn write_unsynced(&self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        let mut batch = rocksdb::WriteBatch::default();
        for (k, v) in pairs {
            batch.put(k, v);
        }
        self.0.write(batch).unwrap();
    }

    fn sync(&self) {
        self.0.flush_wal(true).unwrap();
    }

    fn remove(&self, keys: &[Vec<u8>]) {
        let mut batch = rocksdb::WriteBatch::default();
        for k in keys {
            batch.delete(k);
        }
        self.sync_write(batch);
    }

    fn get_all(&self, keys: &[Vec<u8>]) -> u64 {
        keys.iter()
            .map(|k| checksum(&self.0.get_pinned(k).unwrap().unwrap()))
            .sum()
    }

    fn ranges(&self, starts: &[Vec<u8>], n: usize) -> u64 {
        let mut sum = 0;
        for s in starts {
            let mode = rocksdb::IteratorMode::From(s, rocksdb::Direction::Forward);
            for e in self.0.iterator(mode).take(n) {
                sum += checksum(&e.unwrap().1);
            }
        }
        sum
    }

    fn len(&self) -> u64 {
        self.0.iterator(rocksdb::IteratorMode::Start).count() as u64
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, &'static str> {
        Ok(Box::new(self.0.snapshot()))
    }

    /// A manual compaction of the whole key range, which flushes the memtable
    /// first and drops the deleted entries with their tombstones.
    fn compact(&mut self, _spare: &Path) -> Result<Compaction, &'static str> {
        self.0.compact_range(None::<&[u8]>, None::<&[u8]>);
        Ok(Compaction::InPlace)
    }
}

#[cfg(feature = "rocksdb")]
impl Snapshot for rocksdb::Snapshot<'_> {
    fn get_all(&self, keys: &[Vec<u8>]) -> u64 {
        keys.iter()
            .map(|k| checksum(&self.get(k).unwrap().unwrap()))
            .sum()
    }
}
