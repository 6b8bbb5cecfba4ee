//! The lock file's layout: a header and the reader slots, every field an
//! 8-byte word in the machine's byte order, read and written atomically by
//! every process of the database (DESIGN.md, "The lock file").
//!
//! The byte-range locks on the lock file cover offsets that need not exist in
//! it; they are listed here too.

/// The first word: "larchreg".
pub(crate) const REGISTRY_MAGIC: u64 = u64::from_le_bytes(*b"larchreg");

/// The layout's version; a lock file of another is rebuilt by the first
/// opener and refused by any other.
pub(crate) const REGISTRY_VERSION: u64 = 2;

/// Header words, by byte offset.
pub(crate) mod header {
    /// `REGISTRY_MAGIC`, written last when the file is built.
    pub(crate) const MAGIC: u64 = 0;
    /// `REGISTRY_VERSION`.
    pub(crate) const VERSION: u64 = 8;
    /// The data file's device number.
    pub(crate) const DEV: u64 = 16;
    /// The data file's inode number.
    pub(crate) const INO: u64 = 24;
    /// The last commit published: new snapshots take it. Durable, or one
    /// of the commits since `DURABLE` that were not (its meta is then in
    /// a weak meta, `weak_at`).
    pub(crate) const COMMITTED: u64 = 32;
    /// Reader slots the file holds.
    pub(crate) const SLOTS: u64 = 40;
    /// Slots handed out since the file was built: scans stop here.
    pub(crate) const USED: u64 = 48;
    /// 1 once a writable process has made the committed state durable (the
    /// first opener, or the first writer after a read-only first opener).
    pub(crate) const SYNCED: u64 = 56;
    /// The transaction id a writer is writing out, plus one; 0 when none is.
    pub(crate) const WRITING: u64 = 64;
    /// The newest commit the data file holds durably, in its meta slot.
    pub(crate) const DURABLE: u64 = 72;
    /// When the oldest commit since `DURABLE` that is not durable was made,
    /// microseconds since the Unix epoch; 0 when every commit is durable.
    pub(crate) const WEAK_SINCE: u64 = 80;
}

/// Byte offset of the weak metas: two of `WEAK_SIZE` bytes, which the
/// commits that are not durable take by turns (`weak_at`).
pub(crate) const WEAK_AT: u64 = 128;

/// Bytes per weak meta: a meta's fixed part, its checksum included.
pub(crate) const WEAK_SIZE: u64 = 128;

/// Byte offset of the weak meta of commit `id`. The ids of commits that
/// are not durable all have one parity and step by two after each other, so
/// they alternate between the two by `id / 2`: each is overwritten two such
/// commits later, as a meta slot is.
pub(crate) const fn weak_at(id: u64) -> u64 {
    WEAK_AT + ((id / 2) % 2) * WEAK_SIZE
}

/// Bytes before slot 0: the header words and the weak metas.
pub(crate) const HEADER_SIZE: u64 = WEAK_AT + 2 * WEAK_SIZE;

/// Bytes per slot: a cache line, so readers of different slots do not share one.
pub(crate) const SLOT_SIZE: u64 = 64;

/// Slot words, by byte offset within the slot.
pub(crate) mod slot {
    /// The snapshot's transaction id plus one; 0 when the slot holds none.
    pub(crate) const TXN: u64 = 0;
    /// The process that owns the slot; 0 when none does.
    pub(crate) const PID: u64 = 8;
    /// When the snapshot began: microseconds since the Unix epoch.
    pub(crate) const SINCE: u64 = 16;
}

/// Slots of a new lock file.
pub(crate) const INITIAL_SLOTS: u64 = 256;

/// Slots at most (the address space reserved for the lock file's map).
pub(crate) const MAX_SLOTS: u64 = 1 << 20;

/// Bytes of address space reserved for the lock file's map.
pub(crate) const RESERVE: u64 = HEADER_SIZE + MAX_SLOTS * SLOT_SIZE;

/// Byte offset of `slot`'s word `word`.
pub(crate) const fn slot_word(slot: u64, word: u64) -> u64 {
    HEADER_SIZE + slot * SLOT_SIZE + word
}

/// Length of a lock file holding `slots` slots.
pub(crate) const fn file_len(slots: u64) -> u64 {
    HEADER_SIZE + slots * SLOT_SIZE
}

/// The byte-range locks, by the byte they lock.
pub(crate) mod locks {
    /// Shared by every process for as long as it has the database open;
    /// exclusive for the first opener while it rebuilds the lock file.
    pub(crate) const OPEN: u64 = 0;
    /// Exclusive for the one writer. A read-only process that cannot write
    /// the lock file holds it shared, keeping writers out while it reads.
    pub(crate) const WRITER: u64 = 1;
    /// Exclusive while a process hands out a new slot or grows the file.
    pub(crate) const GROW: u64 = 2;
    /// Slot `i` is owned by whoever holds byte `SLOT_BASE + i` exclusively.
    pub(crate) const SLOT_BASE: u64 = 1 << 32;
    /// On the data file, not the lock file: held shared for life by every
    /// handle that uses a lock file, whatever the name it opened the
    /// database by, so that a handle without one can tell it is not alone.
    pub(crate) const DATA_REGISTERED: u64 = 0;
    /// On the data file: exclusive by the writer for the life of its
    /// transaction (after the lock file's writer lock); shared for life by a
    /// read-only handle that cannot publish its snapshots, which so keeps
    /// out the writers of every name of the database.
    pub(crate) const DATA_WRITER: u64 = 1;
}
