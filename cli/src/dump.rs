//! The text format of LMDB's `mdb_dump` and `mdb_load`, so that data moves
//! both ways between larch and LMDB.
//!
//! A dump is a sequence of sections, one per table:
//!
//! ```text
//! VERSION=3
//! format=bytevalue          (or format=print)
//! database=NAME             (absent for LMDB's unnamed database)
//! type=btree
//! mapsize=N                 (a size hint for mdb_load)
//! HEADER=END
//!  6b6579                   (a key: one space, then hex or printable text)
//!  76616c7565               (its value)
//! DATA=END
//! ```
//!
//! In the printable format, bytes from space to `~` stand for themselves, a
//! backslash is `\\`, and any other byte is `\` and two hex digits.
//!
//! Reading holds no line whole: a key or value is decoded as its line is
//! read, and refused once it is longer than any larch database can store
//! ([`MAX_KEY`], [`MAX_VALUE`] bytes); any other line is refused beyond
//! [`MAX_LINE`] bytes. So memory stays bounded whatever the input, and a
//! line with no end is an error that names it. A dump's lines end in a line
//! feed alone and hold no carriage return (the encodings escape it): one is
//! an error that says so, CRLF line endings included.

use std::fmt;
use std::io::{self, BufRead, Read, Write};

/// The longest key a larch database stores. A table name is a key of the
/// catalog: no longer either.
pub const MAX_KEY: usize = larch::MAX_KEY_LEN;

/// The longest value a larch database stores (its length is a `u32`, and
/// an overflow run starts with a 24-byte header): 4 GiB - 25 bytes.
pub const MAX_VALUE: usize = (u32::MAX - 24) as usize;

/// The longest line other than a key or value: room for `database=` and the
/// longest table name twice over.
pub const MAX_LINE: usize = 2 * MAX_KEY;

/// How keys and values are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Two lowercase hex digits per byte (`format=bytevalue`).
    Hex,
    /// Printable bytes as they are, others escaped (`format=print`).
    Print,
}

/// A malformed dump: the line (from 1) and what was wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What reading a dump met: malformed text, or an I/O error.
#[derive(Debug)]
pub enum ReadError {
    Parse(ParseError),
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Parse(e) => e.fmt(f),
            ReadError::Io(e) => write!(f, "reading the dump: {e}"),
        }
    }
}

/// Writes the header of a section.
pub fn write_header(
    out: &mut impl Write,
    format: Format,
    database: Option<&str>,
    mapsize: u64,
    duplicates: bool,
) -> io::Result<()> {
    writeln!(out, "VERSION=3")?;
    match format {
        Format::Hex => writeln!(out, "format=bytevalue")?,
        Format::Print => writeln!(out, "format=print")?,
    }
    if let Some(name) = database {
        writeln!(out, "database={name}")?;
    }
    writeln!(out, "type=btree")?;
    if duplicates {
        // A multimap: LMDB's sorted duplicates (`MDB_DUPSORT`), as
        // `mdb_dump` writes them: `duplicates=1`, then the database flag
        // `dupsort=1`, which is what `mdb_load` reads.
        writeln!(out, "duplicates=1")?;
        writeln!(out, "dupsort=1")?;
    }
    writeln!(out, "mapsize={mapsize}")?;
    writeln!(out, "HEADER=END")
}

/// Writes one key or value line.
pub fn write_item(out: &mut impl Write, bytes: &[u8], format: Format) -> io::Result<()> {
    let mut line = Vec::with_capacity(2 + 2 * bytes.len());
    line.push(b' ');
    encode(&mut line, bytes, format);
    line.push(b'\n');
    out.write_all(&line)
}

/// Writes the end of a section.
pub fn write_footer(out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "DATA=END")
}

/// Appends `bytes` in `format` to `out`.
pub fn encode(out: &mut Vec<u8>, bytes: &[u8], format: Format) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        match format {
            Format::Print if b == b'\\' => out.extend_from_slice(b"\\\\"),
            Format::Print if (0x20..=0x7e).contains(&b) => out.push(b),
            Format::Print => {
                out.extend_from_slice(&[b'\\', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
            }
            Format::Hex => {
                out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
            }
        }
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes one key or value (the line without its leading space).
pub fn decode(text: &[u8], format: Format) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut decoder = Decoder::new(format);
    decoder.push(text, &mut out)?;
    decoder.finish()?;
    Ok(out)
}

/// Decodes a key or value piece by piece, as its line is read.
pub struct Decoder {
    format: Format,
    pending: Pending,
}

/// What a decoder holds between pieces.
#[derive(Clone, Copy)]
enum Pending {
    Nothing,
    /// The first hex digit of a byte (hex format).
    Digit(u8),
    /// A backslash (printable format).
    Backslash,
    /// A backslash and the first hex digit of its byte (printable format).
    Escape(u8),
}

const BAD_ESCAPE: &str = "a backslash not followed by two hex digits";

impl Decoder {
    pub fn new(format: Format) -> Decoder {
        Decoder {
            format,
            pending: Pending::Nothing,
        }
    }

    /// Decodes `text`, the next piece of the line, onto `out`.
    pub fn push(&mut self, text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let mut pending = self.pending;
        for &c in text {
            pending = match (self.format, pending) {
                (Format::Hex, Pending::Nothing) => {
                    Pending::Digit(hex_digit(c).ok_or("not a hex digit")?)
                }
                (Format::Hex, Pending::Digit(h)) => {
                    out.push(h << 4 | hex_digit(c).ok_or("not a hex digit")?);
                    Pending::Nothing
                }
                (Format::Print, Pending::Nothing) if c == b'\\' => Pending::Backslash,
                (Format::Print, Pending::Nothing) => {
                    out.push(c);
                    Pending::Nothing
                }
                (Format::Print, Pending::Backslash) if c == b'\\' => {
                    out.push(b'\\');
                    Pending::Nothing
                }
                (Format::Print, Pending::Backslash) => {
                    Pending::Escape(hex_digit(c).ok_or(BAD_ESCAPE)?)
                }
                (Format::Print, Pending::Escape(h)) => {
                    out.push(h << 4 | hex_digit(c).ok_or(BAD_ESCAPE)?);
                    Pending::Nothing
                }
                (_, _) => unreachable!("each format has its own states"),
            };
        }
        self.pending = pending;
        Ok(())
    }

    /// Checks that the line ended between two bytes.
    pub fn finish(self) -> Result<(), String> {
        match self.pending {
            Pending::Nothing => Ok(()),
            Pending::Digit(_) => Err("odd number of hex digits".into()),
            Pending::Backslash | Pending::Escape(_) => Err(BAD_ESCAPE.into()),
        }
    }
}

/// What a carriage return in a dump is.
fn carriage_return(at_line_end: bool) -> &'static str {
    if at_line_end {
        "the line ends in a carriage return (CRLF line endings?): \
         a dump's lines end in a line feed alone"
    } else {
        "a carriage return inside a line: a dump holds none (its encodings escape them)"
    }
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A section's header.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    /// The `database=` name, if any.
    pub database: Option<String>,
    /// The line of the `database=` name, if any.
    pub database_line: Option<usize>,
    pub format: Format,
    /// `duplicates=1`: a key may repeat (a multimap, LMDB's dupsort).
    pub duplicates: bool,
    /// The line the section starts on.
    pub line: usize,
}

/// Reads a dump section by section: `next_section` returns each header,
/// then `next_pair` each key and value until it returns `None`.
pub struct Reader<R> {
    input: R,
    line: usize,
    buf: Vec<u8>,
    format: Format,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R) -> Reader<R> {
        Reader {
            input,
            line: 0,
            buf: Vec::new(),
            format: Format::Hex,
        }
    }

    fn fail<T>(&self, line: usize, message: &str) -> Result<T, ReadError> {
        Err(ReadError::Parse(ParseError {
            line,
            message: message.to_owned(),
        }))
    }

    /// The number of the last line read (from 1): after
    /// [`next_pair`](Reader::next_pair), the line of the value, the key's
    /// being the one before.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Reads the next line (not a key or value) into `buf`, without its
    /// newline; false at the end. At most [`MAX_LINE`] bytes are read.
    fn next_line(&mut self) -> Result<bool, ReadError> {
        self.buf.clear();
        let n = (&mut self.input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(ReadError::Io)?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            return self.fail(
                self.line,
                &format!("a line longer than {MAX_LINE} bytes where a header line or DATA=END belongs (is this a dump?)"),
            );
        }
        if self.buf.last() == Some(&b'\r') {
            return self.fail(self.line, carriage_return(true));
        }
        Ok(true)
    }

    /// The next section's header, or `None` at the end of the input.
    pub fn next_section(&mut self) -> Result<Option<Header>, ReadError> {
        if !self.next_line()? {
            return Ok(None);
        }
        let start = self.line;
        let (mut version, mut format, mut database) = (None, Format::Hex, None);
        let mut duplicates = false;
        let mut database_line = None;
        while self.buf != b"HEADER=END" {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            let Some((key, value)) = text.split_once('=') else {
                return self.fail(self.line, "expected a header line (key=value)");
            };
            match key {
                "VERSION" => version = Some(value.to_owned()),
                "format" => {
                    format = match value {
                        "bytevalue" => Format::Hex,
                        "print" => Format::Print,
                        _ => return self.fail(self.line, "unknown format (bytevalue or print)"),
                    }
                }
                "database" => match std::str::from_utf8(&self.buf["database=".len()..]) {
                    Ok(name) if name.contains('\r') => {
                        return self.fail(
                            self.line,
                            "a table name with a carriage return, which a dump cannot hold",
                        );
                    }
                    Ok(name) => {
                        database = Some(name.to_owned());
                        database_line = Some(self.line);
                    }
                    Err(_) => return self.fail(self.line, "database name is not UTF-8"),
                },
                "type" if value != "btree" => {
                    return self.fail(self.line, "only type=btree is supported");
                }
                // LMDB's database flag (`dupsort`) or the dump's own mark
                // (`duplicates`): either makes the section a multimap.
                "duplicates" | "dupsort" => match value {
                    "0" => {}
                    "1" => duplicates = true,
                    _ => return self.fail(self.line, "duplicates and dupsort are 0 or 1"),
                },
                // mapsize, maxreaders, db_pagesize and the like: LMDB's own.
                _ => {}
            }
            if !self.next_line()? {
                return self.fail(self.line, "unexpected end of input in a header");
            }
        }
        if version.as_deref() != Some("3") {
            return self.fail(start, "missing or unsupported VERSION (3 expected)");
        }
        self.format = format;
        Ok(Some(Header {
            database,
            database_line,
            format,
            duplicates,
            line: start,
        }))
    }

    /// The section's next key and value, or `None` after its `DATA=END`.
    pub fn next_pair(&mut self) -> Result<Option<Pair>, ReadError> {
        let Some(key) = self.next_item("key", MAX_KEY)? else {
            return Ok(None);
        };
        match self.next_item("value", MAX_VALUE)? {
            Some(value) => Ok(Some((key, value))),
            None => self.fail(self.line, "a key without a value"),
        }
    }

    /// One data line, decoded, or `None` at `DATA=END`. More than `max`
    /// bytes decoded is an error: the `what` is too long.
    fn next_item(&mut self, what: &str, max: usize) -> Result<Option<Vec<u8>>, ReadError> {
        let first = self
            .input
            .fill_buf()
            .map_err(ReadError::Io)?
            .first()
            .copied();
        match first {
            None => self.fail(self.line, "unexpected end of input (no DATA=END)"),
            Some(b' ') => {
                self.input.consume(1);
                self.line += 1;
                self.decode_line(what, max).map(Some)
            }
            Some(_) => {
                self.next_line()?;
                if self.buf == b"DATA=END" {
                    Ok(None)
                } else {
                    self.fail(
                        self.line,
                        "expected a data line (a space first) or DATA=END",
                    )
                }
            }
        }
    }

    /// Decodes the rest of the current line, through its newline.
    fn decode_line(&mut self, what: &str, max: usize) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        let mut decoder = Decoder::new(self.format);
        loop {
            let chunk = self.input.fill_buf().map_err(ReadError::Io)?;
            if chunk.is_empty() {
                break; // The end of the input ends the line.
            }
            let end = chunk.iter().position(|&b| b == b'\n');
            let text = &chunk[..end.unwrap_or(chunk.len())];
            if let Some(at) = text.iter().position(|&b| b == b'\r') {
                // Whether a newline follows, in this piece or the next.
                let at_end = match chunk.get(at + 1) {
                    Some(&next) => next == b'\n',
                    None => {
                        self.input.consume(at + 1);
                        let next = self.input.fill_buf().map_err(ReadError::Io)?;
                        next.first() == Some(&b'\n')
                    }
                };
                return self.fail(self.line, carriage_return(at_end));
            }
            let decoded = decoder.push(text, &mut out);
            let used = end.map_or(chunk.len(), |at| at + 1);
            self.input.consume(used);
            if let Err(m) = decoded {
                return self.fail(self.line, &m);
            }
            if out.len() > max {
                return self.fail(
                    self.line,
                    &format!("a {what} longer than {max} bytes, the most a larch database stores"),
                );
            }
            if end.is_some() {
                break;
            }
        }
        match decoder.finish() {
            Ok(()) => Ok(out),
            Err(m) => self.fail(self.line, &m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Sections = Vec<(Option<String>, Vec<(Vec<u8>, Vec<u8>)>)>;

    fn parse(text: &str) -> Result<Sections, ParseError> {
        parse_in_pieces(text, text.len().max(1))
    }

    /// Parses `text` read through a buffer of `piece` bytes, so that lines
    /// arrive in pieces.
    fn parse_in_pieces(text: &str, piece: usize) -> Result<Sections, ParseError> {
        let mut r = Reader::new(io::BufReader::with_capacity(piece, text.as_bytes()));
        let mut out: Sections = Vec::new();
        let unwrap = |e| match e {
            ReadError::Parse(e) => e,
            ReadError::Io(e) => panic!("{e}"),
        };
        while let Some(h) = r.next_section().map_err(unwrap)? {
            let mut pairs = Vec::new();
            while let Some(p) = r.next_pair().map_err(unwrap)? {
                pairs.push(p);
            }
            out.push((h.database, pairs));
        }
        Ok(out)
    }

    #[test]
    fn every_byte_round_trips_in_both_formats() {
        let all: Vec<u8> = (0..=255).collect();
        for format in [Format::Hex, Format::Print] {
            let mut line = Vec::new();
            encode(&mut line, &all, format);
            assert!(line.iter().all(|b| (0x20..=0x7e).contains(b)));
            assert_eq!(decode(&line, format).unwrap(), all);
        }
        let mut line = Vec::new();
        encode(&mut line, b"a\\b\n", Format::Print);
        assert_eq!(line, b"a\\\\b\\0a");
    }

    #[test]
    fn sections_and_pairs() {
        let text = "VERSION=3\nformat=print\ndatabase=t1\ntype=btree\nmapsize=1048576\nHEADER=END\n k\\0a\n \n x\n y\nDATA=END\nVERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n 00ff\n 41\nDATA=END\n";
        let got = parse(text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.as_deref(), Some("t1"));
        assert_eq!(
            got[0].1,
            [(b"k\n".to_vec(), vec![]), (b"x".to_vec(), b"y".to_vec())]
        );
        assert_eq!(got[1], (None, vec![(vec![0, 255], b"A".to_vec())]));
    }

    /// Whatever the keys, values and table names (without line breaks), a
    /// dump written in either format reads back as written.
    #[test]
    fn any_dump_reads_back_as_written() {
        fn prop(tables: Vec<(String, Vec<Pair>)>, print: bool, piece: u8) -> bool {
            let format = if print { Format::Print } else { Format::Hex };
            let tables: Sections = tables
                .into_iter()
                .map(|(name, pairs)| (Some(name.replace(['\n', '\r'], "_")), pairs))
                .collect();
            let mut out = Vec::new();
            for (name, pairs) in &tables {
                write_header(&mut out, format, name.as_deref(), 1 << 20, false).unwrap();
                for (k, v) in pairs {
                    write_item(&mut out, k, format).unwrap();
                    write_item(&mut out, v, format).unwrap();
                }
                write_footer(&mut out).unwrap();
            }
            let text = std::str::from_utf8(&out).expect("dumps are text");
            parse(text) == Ok(tables.clone())
                && parse_in_pieces(text, 1 + usize::from(piece % 8)) == Ok(tables)
        }
        quickcheck::quickcheck(prop as fn(_, _, _) -> bool);
    }

    #[test]
    fn lines_are_bounded() {
        let long_header = format!("VERSION=3\ndatabase={}", "x".repeat(MAX_LINE));
        let e = parse(&long_header).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("longer than"), "{e}");
        // Exactly as long as allowed, it is read.
        let name = "x".repeat(MAX_LINE - "database=".len());
        let fits = format!("VERSION=3\ndatabase={name}\nHEADER=END\nDATA=END\n");
        assert_eq!(parse(&fits).unwrap(), [(Some(name), vec![])]);
        for format in ["bytevalue", "print"] {
            let key = |n: usize| {
                format!(
                    "VERSION=3\nformat={format}\nHEADER=END\n {}\n 00\nDATA=END\n",
                    "41".repeat(n)
                )
            };
            let e = parse(&key(MAX_KEY + 1)).unwrap_err();
            assert_eq!(e.line, 4, "{e}");
            assert!(e.message.contains("key longer than"), "{e}");
            let at_most = parse(&key(MAX_KEY / 2)).unwrap();
            assert_eq!(at_most[0].1.len(), 1);
        }
    }

    #[test]
    fn malformed_input_names_its_line() {
        let cases = [
            (
                "VERSION=3\nHEADER=END\n 616\n 62\nDATA=END\n",
                3,
                "odd number",
            ),
            (
                "VERSION=3\nHEADER=END\n 61\nDATA=END\n",
                4,
                "without a value",
            ),
            ("VERSION=3\nHEADER=END\n 61\n 62\n", 4, "no DATA=END"),
            ("VERSION=3\nformat=print\n", 2, "end of input in a header"),
            ("VERSION=2\nHEADER=END\nDATA=END\n", 1, "VERSION"),
            ("HEADER=END\nDATA=END\n", 1, "VERSION"),
            ("VERSION=3\nbogus\nHEADER=END\n", 2, "header line"),
            ("VERSION=3\nHEADER=END\n6162\n", 3, "data line"),
            ("VERSION=3\nHEADER=END\n 6g\n", 3, "not a hex digit"),
            (
                "VERSION=3\nformat=print\nHEADER=END\n a\\z1\n",
                4,
                "backslash",
            ),
            (
                "VERSION=3\nduplicates=2\nHEADER=END\n",
                2,
                "duplicates and dupsort are 0 or 1",
            ),
            ("VERSION=3\ntype=hash\nHEADER=END\n", 2, "btree"),
            ("VERSION=3\r\nHEADER=END\r\n", 1, "carriage return (CRLF"),
            (
                "VERSION=3\nHEADER=END\nDATA=END\r\n",
                3,
                "carriage return (CRLF",
            ),
            ("VERSION=3\nHEADER=END\n 61\r\n", 3, "carriage return (CRLF"),
            (
                "VERSION=3\nHEADER=END\n 6\r1\n",
                3,
                "carriage return inside",
            ),
            ("VERSION=3\ndatabase=a\rb\nHEADER=END\n", 2, "table name"),
            (
                "VERSION=3\nformat=print\nHEADER=END\n a\r\n",
                4,
                "carriage return (CRLF",
            ),
        ];
        for (text, line, what) in cases {
            for piece in [1, 2, 3, 1000] {
                let e = parse_in_pieces(text, piece).unwrap_err();
                assert_eq!(e.line, line, "{text:?}: {e}");
                assert!(e.message.contains(what), "{text:?}: {e}");
            }
        }
    }
}
