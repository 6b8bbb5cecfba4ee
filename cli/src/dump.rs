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

use std::fmt;
use std::io::{self, BufRead, Write};

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
    match format {
        Format::Hex => {
            if !text.len().is_multiple_of(2) {
                return Err("odd number of hex digits".into());
            }
            for pair in text.chunks(2) {
                match (hex_digit(pair[0]), hex_digit(pair[1])) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err("not a hex digit".into()),
                }
            }
        }
        Format::Print => {
            let mut i = 0;
            while i < text.len() {
                if text[i] != b'\\' {
                    out.push(text[i]);
                    i += 1;
                } else if text.get(i + 1) == Some(&b'\\') {
                    out.push(b'\\');
                    i += 2;
                } else {
                    let pair = (text.get(i + 1), text.get(i + 2));
                    match pair {
                        (Some(&h), Some(&l)) => match (hex_digit(h), hex_digit(l)) {
                            (Some(h), Some(l)) => out.push(h << 4 | l),
                            _ => return Err("a backslash not followed by two hex digits".into()),
                        },
                        _ => return Err("a backslash not followed by two hex digits".into()),
                    }
                    i += 3;
                }
            }
        }
    }
    Ok(out)
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A section's header.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    /// The `database=` name, if any.
    pub database: Option<String>,
    pub format: Format,
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

    /// Reads the next line into `buf`, without its newline; false at the end.
    fn next_line(&mut self) -> Result<bool, ReadError> {
        self.buf.clear();
        let n = self
            .input
            .read_until(b'\n', &mut self.buf)
            .map_err(ReadError::Io)?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
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
                    Ok(name) => database = Some(name.to_owned()),
                    Err(_) => return self.fail(self.line, "database name is not UTF-8"),
                },
                "type" if value != "btree" => {
                    return self.fail(self.line, "only type=btree is supported");
                }
                "duplicates" if value != "0" => {
                    return self.fail(self.line, "duplicate keys (dupsort) are not supported");
                }
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
            format,
            line: start,
        }))
    }

    /// The section's next key and value, or `None` after its `DATA=END`.
    pub fn next_pair(&mut self) -> Result<Option<Pair>, ReadError> {
        let Some(key) = self.next_item()? else {
            return Ok(None);
        };
        match self.next_item()? {
            Some(value) => Ok(Some((key, value))),
            None => self.fail(self.line, "a key without a value"),
        }
    }

    /// One data line, or `None` at `DATA=END`.
    fn next_item(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        if !self.next_line()? {
            return self.fail(self.line, "unexpected end of input (no DATA=END)");
        }
        if self.buf == b"DATA=END" {
            return Ok(None);
        }
        let Some(text) = self.buf.strip_prefix(b" ") else {
            return self.fail(
                self.line,
                "expected a data line (a space first) or DATA=END",
            );
        };
        match decode(text, self.format) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(m) => self.fail(self.line, &m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Sections = Vec<(Option<String>, Vec<(Vec<u8>, Vec<u8>)>)>;

    fn parse(text: &str) -> Result<Sections, ParseError> {
        let mut r = Reader::new(text.as_bytes());
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
        fn prop(tables: Vec<(String, Vec<Pair>)>, print: bool) -> bool {
            let format = if print { Format::Print } else { Format::Hex };
            let tables: Sections = tables
                .into_iter()
                .map(|(name, pairs)| (Some(name.replace(['\n', '\r'], "_")), pairs))
                .collect();
            let mut out = Vec::new();
            for (name, pairs) in &tables {
                write_header(&mut out, format, name.as_deref(), 1 << 20).unwrap();
                for (k, v) in pairs {
                    write_item(&mut out, k, format).unwrap();
                    write_item(&mut out, v, format).unwrap();
                }
                write_footer(&mut out).unwrap();
            }
            parse(std::str::from_utf8(&out).expect("dumps are text")) == Ok(tables)
        }
        quickcheck::quickcheck(prop as fn(_, _) -> bool);
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
            ("VERSION=3\nduplicates=1\nHEADER=END\n", 2, "dupsort"),
            ("VERSION=3\ntype=hash\nHEADER=END\n", 2, "btree"),
        ];
        for (text, line, what) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(what), "{text:?}: {e}");
        }
    }
}
