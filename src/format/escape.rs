//! The escaped field: bytes of any length written so that where they end
//! can be found and their order is kept, for the fields of composite keys
//! (typed tables' tuples) and the keys of multimap tables.

use std::borrow::Cow;

/// Writes `bytes` as a field of variable width: each zero byte as zero then
/// 0xFF, then two zero bytes. For byte strings `a < b`, the fields sort as
/// `a` and `b` do.
pub fn encode_escaped(bytes: &[u8], out: &mut Vec<u8>) {
    for part in bytes.split_inclusive(|&b| b == 0) {
        out.extend_from_slice(part);
        if part.last() == Some(&0) {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Reads a field [`encode_escaped`] wrote from the start of `bytes`: its
/// bytes (borrowed when they held no zero byte) and how many bytes the
/// field took. `None` when the field does not end or holds a zero byte
/// followed by neither 0 nor 0xFF.
pub fn decode_escaped(bytes: &[u8]) -> Option<(Cow<'_, [u8]>, usize)> {
    let mut owned: Option<Vec<u8>> = None;
    let mut start = 0;
    let mut at = 0;
    loop {
        let zero = at + bytes.get(at..)?.iter().position(|&b| b == 0)?;
        match bytes.get(zero + 1)? {
            0 => {
                let value = match owned {
                    None => Cow::Borrowed(&bytes[..zero]),
                    Some(mut v) => {
                        v.extend_from_slice(&bytes[start..zero]);
                        Cow::Owned(v)
                    }
                };
                return Some((value, zero + 2));
            }
            0xFF => {
                let v = owned.get_or_insert_with(Vec::new);
                v.extend_from_slice(&bytes[start..=zero]);
                start = zero + 2;
                at = start;
            }
            _ => return None,
        }
    }
}
