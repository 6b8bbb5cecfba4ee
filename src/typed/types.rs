//! The types a typed table stores: how each is written to bytes and read
//! back, and, for keys, an encoding whose byte order is the type's order.

use std::borrow::Cow;

use crate::error::{Error, Result};
pub use crate::format::escape::{decode_escaped, encode_escaped};

/// A type a typed table stores as values (and, with [`Key`], as keys).
///
/// `encode` writes a value's bytes and `decode` reads them back. Reads
/// may borrow the stored bytes ([`SelfType`](Value::SelfType) of `&str` is
/// a `&str` into the map), so they live as long as the transaction.
///
/// Implement it (and [`Key`]) for types of your own:
///
/// ```
/// use larch::{Key, Value};
///
/// /// A version number that sorts as its parts do.
/// #[derive(Debug, PartialEq)]
/// struct Version { major: u16, minor: u16 }
///
/// impl Value for Version {
///     type SelfType<'a> = Version;
///     fn type_name() -> String { "Version".into() }
///     fn encode(v: &Version, out: &mut Vec<u8>) {
///         out.extend_from_slice(&v.major.to_be_bytes());
///         out.extend_from_slice(&v.minor.to_be_bytes());
///     }
///     fn decode(bytes: &[u8]) -> larch::Result<Version> {
///         let [a, b, c, d] = bytes.try_into().map_err(|_| larch::Error::Decode {
///             type_name: Self::type_name(),
///             reason: "not 4 bytes",
///         })?;
///         Ok(Version { major: u16::from_be_bytes([a, b]), minor: u16::from_be_bytes([c, d]) })
///     }
/// }
///
/// // Big-endian parts of fixed width sort as the numbers do, and say
/// // where they end: the key and field encodings are the value encoding.
/// impl Key for Version {
///     fn encode_field(v: &Version, out: &mut Vec<u8>) {
///         Self::encode(v, out);
///     }
///     fn decode_field(bytes: &[u8]) -> larch::Result<(Version, usize)> {
///         let head = bytes.get(..4).ok_or(larch::Error::Decode {
///             type_name: Self::type_name(),
///             reason: "fewer than 4 bytes",
///         })?;
///         Ok((Self::decode(head)?, 4))
///     }
/// }
///
/// const RELEASES: larch::TableDefinition<Version, &str> = larch::TableDefinition::new("releases");
/// # let dir = tempfile::tempdir().unwrap();
/// # // SAFETY: the file is this example's own.
/// # let db = unsafe { larch::Database::open(dir.path().join("db")) }.unwrap();
/// let mut w = db.begin_write()?;
/// {
///     let mut t = w.open_typed(RELEASES)?;
///     t.insert(Version { major: 1, minor: 10 }, "ten")?;
///     t.insert(Version { major: 1, minor: 9 }, "nine")?;
///     t.insert(Version { major: 2, minor: 0 }, "two")?;
/// }
/// w.commit()?;
/// let r = db.begin_read()?;
/// let t = r.open_typed(RELEASES)?;
/// let names: Vec<&str> = t.iter()?.map(|e| e.map(|(_, v)| v)).collect::<larch::Result<_>>()?;
/// assert_eq!(names, ["nine", "ten", "two"]);
/// # Ok::<(), larch::Error>(())
/// ```
pub trait Value {
    /// The type reads give back; it may borrow the stored bytes.
    type SelfType<'a>
    where
        Self: 'a;

    /// The name stored with a table of this type: a table is opened only
    /// with the names it was created with. Types whose bytes are the same
    /// share a name (`&str` and `String` are both `str`).
    fn type_name() -> String;

    /// Appends the bytes of `value` to `out`.
    fn encode(value: &Self::SelfType<'_>, out: &mut Vec<u8>);

    /// Reads a value back from exactly the bytes `encode` wrote;
    /// [`Error::Decode`] when they cannot be one.
    fn decode<'a>(bytes: &'a [u8]) -> Result<Self::SelfType<'a>>;

    /// Appends `value` as [`encode`](Value::encode) does, for storing:
    /// refuses with [`Error::Decode`] a value that would not read back as
    /// this type. The default cannot fail; tuples (and an `Option` of one)
    /// check that what they wrote reads back (a `&str` or `&[u8]` field
    /// with more fields after it and a zero byte in it does not: it reads
    /// back only as `String` or `Vec<u8>`). Typed tables store keys and
    /// values through it, so nothing they store is unreadable.
    fn encode_checked(value: &Self::SelfType<'_>, out: &mut Vec<u8>) -> Result<()> {
        Self::encode(value, out);
        Ok(())
    }
}

/// A type a typed table stores as keys: its encoding sorts, bytewise, in
/// the order of the values (larch compares keys as bytes), so that ranges
/// and iteration follow the type's order: `-1 < 0 < 1` for the signed
/// integers, `None` before every `Some`, tuples field by field.
///
/// A key that is a field of a tuple, with more fields after it, is written
/// so that its end can be found: [`encode_field`](Key::encode_field). A type
/// of fixed width writes its bytes as they are; one of variable width ends
/// them with two zero bytes and writes each zero byte of its own as zero
/// then 0xFF ([`encode_escaped`]), which keeps the order.
pub trait Key: Value {
    /// Appends `value` as a field with more fields after it: its bytes must
    /// say where they end, and keep the order.
    fn encode_field(value: &Self::SelfType<'_>, out: &mut Vec<u8>);

    /// Reads a field from the start of `bytes`: the value and how many bytes
    /// it took.
    fn decode_field<'a>(bytes: &'a [u8]) -> Result<(Self::SelfType<'a>, usize)>;
}

fn decode_error<T: Value + ?Sized, R>(reason: &'static str) -> Result<R> {
    Err(Error::Decode {
        type_name: T::type_name(),
        reason,
    })
}

/// A borrowed field of variable width: read back borrowed, which a field
/// holding a zero byte (written escaped) cannot be.
fn decode_borrowed_field<T: Value + ?Sized>(bytes: &[u8]) -> Result<(&[u8], usize)> {
    match decode_escaped(bytes) {
        Some((Cow::Borrowed(b), n)) => Ok((b, n)),
        Some((Cow::Owned(_), _)) => decode_error::<T, _>(
            "a zero byte in a field read as borrowed (read it as String or Vec<u8>)",
        ),
        None => decode_error::<T, _>("a field of a composite key does not end"),
    }
}

fn decode_owned_field<T: Value + ?Sized>(bytes: &[u8]) -> Result<(Vec<u8>, usize)> {
    match decode_escaped(bytes) {
        Some((b, n)) => Ok((b.into_owned(), n)),
        None => decode_error::<T, _>("a field of a composite key does not end"),
    }
}

/// A fixed-width field: its bytes as they are.
fn fixed_field<T: Value + ?Sized>(bytes: &[u8], width: usize) -> Result<&[u8]> {
    match bytes.get(..width) {
        Some(b) => Ok(b),
        None => decode_error::<T, _>("a field of a composite key runs past the key"),
    }
}

/// `Key` for a type whose encoding has a fixed width: a field is its
/// encoding as it is, and says where it ends by its width.
macro_rules! fixed_width_key {
    ($t:ty, $width:expr) => {
        impl Key for $t {
            fn encode_field(value: &$t, out: &mut Vec<u8>) {
                Self::encode(value, out);
            }
            fn decode_field(bytes: &[u8]) -> Result<($t, usize)> {
                let width = $width;
                Ok((Self::decode(fixed_field::<$t>(bytes, width)?)?, width))
            }
        }
    };
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        /// Big-endian: the bytes sort as the numbers do.
        impl Value for $t {
            type SelfType<'a> = $t;
            fn type_name() -> String {
                stringify!($t).into()
            }
            fn encode(value: &$t, out: &mut Vec<u8>) {
                out.extend_from_slice(&value.to_be_bytes());
            }
            fn decode(bytes: &[u8]) -> Result<$t> {
                match bytes.try_into() {
                    Ok(b) => Ok(<$t>::from_be_bytes(b)),
                    Err(_) => decode_error::<$t, _>("wrong length"),
                }
            }
        }

        fixed_width_key!($t, size_of::<$t>());
    )*};
}

unsigned!(u8, u16, u32, u64, u128);

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        /// Big-endian with the sign bit flipped: negative numbers first,
        /// then the bytes sort as the numbers do.
        impl Value for $t {
            type SelfType<'a> = $t;
            fn type_name() -> String {
                stringify!($t).into()
            }
            fn encode(value: &$t, out: &mut Vec<u8>) {
                let flipped = (*value as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
            fn decode(bytes: &[u8]) -> Result<$t> {
                match bytes.try_into() {
                    Ok(b) => Ok((<$u>::from_be_bytes(b) ^ (1 << (<$u>::BITS - 1))) as $t),
                    Err(_) => decode_error::<$t, _>("wrong length"),
                }
            }
        }

        fixed_width_key!($t, size_of::<$t>());
    )*};
}

signed!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

/// One byte, 0 or 1.
impl Value for bool {
    type SelfType<'a> = bool;
    fn type_name() -> String {
        "bool".into()
    }
    fn encode(value: &bool, out: &mut Vec<u8>) {
        out.push(u8::from(*value));
    }
    fn decode(bytes: &[u8]) -> Result<bool> {
        match bytes {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => decode_error::<bool, _>("not a 0 or 1 byte"),
        }
    }
}

fixed_width_key!(bool, 1);

/// No bytes: a table of keys alone (a set).
impl Value for () {
    type SelfType<'a> = ();
    fn type_name() -> String {
        "()".into()
    }
    fn encode(_: &(), _: &mut Vec<u8>) {}
    fn decode(bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            Ok(())
        } else {
            decode_error::<(), _>("not empty")
        }
    }
}

impl Key for () {
    fn encode_field(_: &(), _: &mut Vec<u8>) {}
    fn decode_field(_: &[u8]) -> Result<((), usize)> {
        Ok(((), 0))
    }
}

/// UTF-8, read back as a `&str` into the map (checked to be UTF-8).
impl Value for &str {
    type SelfType<'a>
        = &'a str
    where
        Self: 'a;
    fn type_name() -> String {
        "str".into()
    }
    fn encode(value: &&str, out: &mut Vec<u8>) {
        out.extend_from_slice(value.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<&str> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(_) => decode_error::<&str, _>("not UTF-8"),
        }
    }
}

/// A `&str` field with more fields after it that holds a NUL character
/// reads back as `String` only (a tuple key refuses it).
impl Key for &str {
    fn encode_field(value: &&str, out: &mut Vec<u8>) {
        encode_escaped(value.as_bytes(), out);
    }
    fn decode_field(bytes: &[u8]) -> Result<(&str, usize)> {
        let (b, n) = decode_borrowed_field::<&str>(bytes)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok((s, n)),
            Err(_) => decode_error::<&str, _>("not UTF-8"),
        }
    }
}

/// UTF-8, read back as a `String` (a copy).
impl Value for String {
    type SelfType<'a> = String;
    fn type_name() -> String {
        "str".into()
    }
    fn encode(value: &String, out: &mut Vec<u8>) {
        out.extend_from_slice(value.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<String> {
        Ok(<&str>::decode(bytes)?.to_owned())
    }
}

impl Key for String {
    fn encode_field(value: &String, out: &mut Vec<u8>) {
        encode_escaped(value.as_bytes(), out);
    }
    fn decode_field(bytes: &[u8]) -> Result<(String, usize)> {
        let (b, n) = decode_owned_field::<String>(bytes)?;
        match String::from_utf8(b) {
            Ok(s) => Ok((s, n)),
            Err(_) => decode_error::<String, _>("not UTF-8"),
        }
    }
}

/// Bytes as they are, read back as a `&[u8]` into the map.
impl Value for &[u8] {
    type SelfType<'a>
        = &'a [u8]
    where
        Self: 'a;
    fn type_name() -> String {
        "bytes".into()
    }
    fn encode(value: &&[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(value);
    }
    fn decode(bytes: &[u8]) -> Result<&[u8]> {
        Ok(bytes)
    }
}

/// A `&[u8]` field with more fields after it that holds a zero byte reads
/// back as `Vec<u8>` only (a tuple key refuses it): use `Vec<u8>` or a
/// fixed-size array for those.
impl Key for &[u8] {
    fn encode_field(value: &&[u8], out: &mut Vec<u8>) {
        encode_escaped(value, out);
    }
    fn decode_field(bytes: &[u8]) -> Result<(&[u8], usize)> {
        decode_borrowed_field::<&[u8]>(bytes)
    }
}

/// Bytes as they are, read back as a `Vec<u8>` (a copy).
impl Value for Vec<u8> {
    type SelfType<'a> = Vec<u8>;
    fn type_name() -> String {
        "bytes".into()
    }
    fn encode(value: &Vec<u8>, out: &mut Vec<u8>) {
        out.extend_from_slice(value);
    }
    fn decode(bytes: &[u8]) -> Result<Vec<u8>> {
        Ok(bytes.to_vec())
    }
}

impl Key for Vec<u8> {
    fn encode_field(value: &Vec<u8>, out: &mut Vec<u8>) {
        encode_escaped(value, out);
    }
    fn decode_field(bytes: &[u8]) -> Result<(Vec<u8>, usize)> {
        decode_owned_field::<Vec<u8>>(bytes)
    }
}

/// `N` bytes as they are.
impl<const N: usize> Value for [u8; N] {
    type SelfType<'a> = [u8; N];
    fn type_name() -> String {
        format!("[u8; {N}]")
    }
    fn encode(value: &[u8; N], out: &mut Vec<u8>) {
        out.extend_from_slice(value);
    }
    fn decode(bytes: &[u8]) -> Result<[u8; N]> {
        match bytes.try_into() {
            Ok(b) => Ok(b),
            Err(_) => decode_error::<[u8; N], _>("wrong length"),
        }
    }
}

impl<const N: usize> Key for [u8; N] {
    fn encode_field(value: &[u8; N], out: &mut Vec<u8>) {
        out.extend_from_slice(value);
    }
    fn decode_field(bytes: &[u8]) -> Result<([u8; N], usize)> {
        Ok((Self::decode(fixed_field::<[u8; N]>(bytes, N)?)?, N))
    }
}

/// A byte 0 for `None`; a byte 1 and the value for `Some`: `None` sorts
/// first, then the values in their order.
impl<T: Value> Value for Option<T> {
    type SelfType<'a>
        = Option<T::SelfType<'a>>
    where
        Self: 'a;
    fn type_name() -> String {
        format!("Option<{}>", T::type_name())
    }
    fn encode(value: &Self::SelfType<'_>, out: &mut Vec<u8>) {
        match value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                T::encode(v, out);
            }
        }
    }
    fn decode<'a>(bytes: &'a [u8]) -> Result<Self::SelfType<'a>> {
        match bytes.split_first() {
            Some((0, [])) => Ok(None),
            Some((1, rest)) => Ok(Some(T::decode(rest)?)),
            _ => decode_error::<Self, _>("not a 0 byte, or a 1 byte and a value"),
        }
    }
    fn encode_checked(value: &Self::SelfType<'_>, out: &mut Vec<u8>) -> Result<()> {
        match value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                T::encode_checked(v, out)?;
            }
        }
        Ok(())
    }
}

impl<T: Key> Key for Option<T> {
    fn encode_field(value: &Self::SelfType<'_>, out: &mut Vec<u8>) {
        match value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                T::encode_field(v, out);
            }
        }
    }
    fn decode_field<'a>(bytes: &'a [u8]) -> Result<(Self::SelfType<'a>, usize)> {
        match bytes.split_first() {
            Some((0, _)) => Ok((None, 1)),
            Some((1, rest)) => {
                let (v, n) = T::decode_field(rest)?;
                Ok((Some(v), n + 1))
            }
            _ => decode_error::<Self, _>("not a 0 byte, or a 1 byte and a value"),
        }
    }
}

/// The bytes of a composite key from `at` on; a field that said it took
/// more than there is (a `decode_field` of another type's) is refused.
fn rest<T: Value + ?Sized>(bytes: &[u8], at: usize) -> Result<&[u8]> {
    match bytes.get(at..) {
        Some(rest) => Ok(rest),
        None => decode_error::<T, _>("a field says it runs past the key"),
    }
}

/// Tuples of keys: each field but the last as a field (so its end is
/// known), the last as it is. They sort field by field.
macro_rules! tuple {
    ($($name:ident $idx:tt),+ ; $last:ident $lidx:tt) => {
        impl<$($name: Key,)+ $last: Key> Value for ($($name,)+ $last,) {
            type SelfType<'a>
                = ($($name::SelfType<'a>,)+ $last::SelfType<'a>,)
            where
                Self: 'a;
            fn type_name() -> String {
                let names = [$($name::type_name(),)+ $last::type_name()];
                format!("({})", names.join(", "))
            }
            fn encode(value: &Self::SelfType<'_>, out: &mut Vec<u8>) {
                $($name::encode_field(&value.$idx, out);)+
                $last::encode(&value.$lidx, out);
            }
            fn encode_checked(value: &Self::SelfType<'_>, out: &mut Vec<u8>) -> Result<()> {
                let start = out.len();
                $($name::encode_field(&value.$idx, out);)+
                $last::encode_checked(&value.$lidx, out)?;
                // A field that does not read back as its type (a borrowed
                // one with a zero byte) is refused here, not at the read.
                Self::decode(&out[start..])?;
                Ok(())
            }
            #[allow(non_snake_case)] // the fields are named as their types
            fn decode<'a>(bytes: &'a [u8]) -> Result<Self::SelfType<'a>> {
                let mut at = 0;
                $(
                    let (field, n) = $name::decode_field(rest::<Self>(bytes, at)?)?;
                    let $name = field;
                    at += n;
                )+
                Ok(($($name,)+ $last::decode(rest::<Self>(bytes, at)?)?,))
            }
        }

        impl<$($name: Key,)+ $last: Key> Key for ($($name,)+ $last,) {
            fn encode_field(value: &Self::SelfType<'_>, out: &mut Vec<u8>) {
                $($name::encode_field(&value.$idx, out);)+
                $last::encode_field(&value.$lidx, out);
            }
            #[allow(non_snake_case)] // the fields are named as their types
            fn decode_field<'a>(bytes: &'a [u8]) -> Result<(Self::SelfType<'a>, usize)> {
                let mut at = 0;
                $(
                    let (field, n) = $name::decode_field(rest::<Self>(bytes, at)?)?;
                    let $name = field;
                    at += n;
                )+
                let (last, n) = $last::decode_field(rest::<Self>(bytes, at)?)?;
                match at.checked_add(n).filter(|&end| end <= bytes.len()) {
                    Some(end) => Ok((($($name,)+ last,), end)),
                    None => decode_error::<Self, _>("a field says it runs past the key"),
                }
            }
        }
    };
}

tuple!(A 0; B 1);
tuple!(A 0, B 1; C 2);
tuple!(A 0, B 1, C 2; D 3);
tuple!(A 0, B 1, C 2, D 3; E 4);
tuple!(A 0, B 1, C 2, D 3, E 4; F 5);

/// The bytes of `value`, for looking up: `encode`'s, which cannot fail.
pub(crate) fn encoded<V: Value + ?Sized>(value: &V::SelfType<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    V::encode(value, &mut out);
    out
}

/// The bytes of `value`, for storing: `encode_checked`'s.
pub(crate) fn encoded_checked<V: Value + ?Sized>(value: &V::SelfType<'_>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    V::encode_checked(value, &mut out)?;
    Ok(out)
}
