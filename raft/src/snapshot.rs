//! A snapshot's bytes in memory, as openraft streams them in and out, and
//! their encoding.

use std::io::{self, Cursor, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// The largest snapshot a node builds or accepts: the map is held in
/// memory while it is sent or received.
pub const MAX_SNAPSHOT: u64 = 1 << 30;

/// The bytes of a snapshot (openraft's `SnapshotData`): a cursor over a
/// vector that a peer's chunks can only extend from its end, never past
/// [`MAX_SNAPSHOT`], and whose end (`shutdown`, when the last chunk is in)
/// checks that the bytes decode, so a crafted snapshot is refused before
/// openraft installs it.
///
/// Outside this crate one is made only by `Raft::begin_receiving_snapshot`
/// (openraft's way to receive a snapshot, which the chunked transfer uses
/// and a transport of one's own must use before `install_full_snapshot`):
/// that is how the log store learns that an install is coming, and holds
/// back the purge openraft sends with it until the install is durable.
#[derive(Debug)]
pub struct SnapshotData {
    cursor: Cursor<Vec<u8>>,
}

impl SnapshotData {
    /// The snapshot of `bytes`.
    pub(crate) fn new(bytes: Vec<u8>) -> SnapshotData {
        SnapshotData {
            cursor: Cursor::new(bytes),
        }
    }

    /// The bytes.
    pub fn into_inner(self) -> Vec<u8> {
        self.cursor.into_inner()
    }

    fn len(&self) -> u64 {
        self.cursor.get_ref().len() as u64
    }
}

fn refused(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why)
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.cursor).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A seek never goes past the end, so a write never leaves a gap.
        let end = self.cursor.position().saturating_add(buf.len() as u64);
        if end > MAX_SNAPSHOT {
            return Poll::Ready(Err(refused("snapshot larger than MAX_SNAPSHOT")));
        }
        Pin::new(&mut self.cursor).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(
            decode(self.cursor.get_ref())
                .map(|_| ())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        )
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let target = match position {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.cursor.position().checked_add_signed(d),
        };
        match target {
            Some(n) if n <= self.len() => Pin::new(&mut self.cursor).start_seek(SeekFrom::Start(n)),
            _ => Err(refused("seek past the end of the snapshot")),
        }
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.cursor).poll_complete(cx)
    }
}

/// The start of a snapshot's bytes.
const MAGIC: &[u8; 8] = b"larchkv1";

/// The map's entries as a snapshot's bytes: the magic, the number of
/// entries (`u64`, little-endian), then each entry as its key's and its
/// value's length (`u64`) and bytes. The count makes a snapshot cut at an
/// entry's end an error, not a smaller map.
pub(crate) fn encode<'a>(
    pairs: impl Iterator<Item = larch::Result<(&'a str, &'a str)>>,
) -> larch::Result<Vec<u8>> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[0; 8]);
    let mut count = 0u64;
    for pair in pairs {
        let (k, v) = pair?;
        for field in [k.as_bytes(), v.as_bytes()] {
            out.extend_from_slice(&(field.len() as u64).to_le_bytes());
            out.extend_from_slice(field);
        }
        count += 1;
    }
    out[MAGIC.len()..][..8].copy_from_slice(&count.to_le_bytes());
    Ok(out)
}

/// The entries of a snapshot's bytes, checked: a snapshot from the network
/// or the file is never trusted.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<(&str, &str)>, String> {
    fn u64_field(rest: &mut &[u8]) -> Result<u64, String> {
        let (n, tail) = rest.split_first_chunk::<8>().ok_or("snapshot cut short")?;
        *rest = tail;
        Ok(u64::from_le_bytes(*n))
    }
    fn str_field<'a>(rest: &mut &'a [u8]) -> Result<&'a str, String> {
        let len = u64_field(rest)?;
        if (rest.len() as u64) < len {
            return Err("snapshot cut short".into());
        }
        let (s, tail) = rest.split_at(len as usize);
        *rest = tail;
        std::str::from_utf8(s).map_err(|e| format!("snapshot field not UTF-8: {e}"))
    }
    let mut rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or("not a larch-raft snapshot (bad magic)")?;
    let count = u64_field(&mut rest)?;
    let mut pairs = Vec::new();
    for _ in 0..count {
        let k = str_field(&mut rest)?;
        let v = str_field(&mut rest)?;
        pairs.push((k, v));
    }
    if !rest.is_empty() {
        return Err("bytes after the snapshot's last entry".into());
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};

    #[test]
    fn snapshots_round_trip_and_reject_crafted_bytes() {
        let pairs = [("a", "1"), ("", ""), ("ключ", "значение")];
        let bytes = encode(pairs.iter().map(|&p| Ok(p))).unwrap();
        assert_eq!(decode(&bytes).unwrap(), pairs);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        // A count of entries the bytes cannot hold, and a length past the
        // end, fail without allocating for them.
        let mut many = MAGIC.to_vec();
        many.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&many).is_err());
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&1u64.to_le_bytes());
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
        let mut bad_utf8 = MAGIC.to_vec();
        bad_utf8.extend_from_slice(&1u64.to_le_bytes());
        bad_utf8.extend_from_slice(&1u64.to_le_bytes());
        bad_utf8.push(0xff);
        bad_utf8.extend_from_slice(&0u64.to_le_bytes());
        assert!(decode(&bad_utf8).is_err());
        let empty = encode(std::iter::empty()).unwrap();
        assert_eq!(decode(&empty).unwrap(), []);
    }

    #[tokio::test]
    async fn received_snapshots_cannot_leave_gaps_grow_past_the_limit_or_end_undecodable() {
        let bytes = encode([("k", "v")].into_iter().map(Ok)).unwrap();
        let mut data = SnapshotData::new(Vec::new());
        data.write_all(&bytes[..5]).await.unwrap();
        assert!(data.seek(SeekFrom::Start(1 << 50)).await.is_err());
        assert!(data.seek(SeekFrom::Start(6)).await.is_err());
        data.seek(SeekFrom::Start(5)).await.unwrap();
        data.write_all(&bytes[5..]).await.unwrap();
        data.shutdown().await.unwrap();
        assert_eq!(data.into_inner(), bytes);

        let mut cut = SnapshotData::new(Vec::new());
        cut.write_all(&bytes[..bytes.len() - 1]).await.unwrap();
        assert!(cut.shutdown().await.is_err());

        let mut big = SnapshotData::new(vec![0; 16]);
        big.seek(SeekFrom::End(0)).await.unwrap();
        assert!(
            big.write_all(&vec![0; MAX_SNAPSHOT as usize])
                .await
                .is_err()
        );
    }
}
