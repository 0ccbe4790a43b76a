//! `dhp2p dissect`: describe datagrams given as hex on the command line or
//! on stdin. The flags live in the command layer (`src/cmd/dissect.rs`);
//! this is the part that does the work, with its streams as parameters so
//! tests can drive it.

use std::io::{self, BufRead, Write};

use super::describe::{describe_with, hex_dump, render_tree, Description, Options};

/// Every datagram decoded.
pub const EXIT_OK: u8 = 0;
/// Some datagram was malformed or not a Dahua P2P datagram (or an I/O error).
pub const EXIT_NOT_DECODED: u8 = 1;
/// Bad command line (the argument parser's own code).
pub const EXIT_USAGE: u8 = 2;
/// Some input was not valid hex.
pub const EXIT_BAD_HEX: u8 = 3;

/// Longest input line accepted: far beyond any UDP datagram in hex.
const MAX_LINE_LEN: usize = 1 << 20;

/// What to print for each datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DissectOptions {
    /// Print the field tree (`-V`).
    pub tree: bool,
    /// Print a hex dump (`--hex`).
    pub hex: bool,
    /// One JSON object per line instead of text (`--json`).
    pub json: bool,
    /// Redact secrets (DevAuth, Authorization credentials).
    pub redact: bool,
    /// No notes on stderr about malformed or unknown datagrams.
    pub quiet: bool,
}

impl Default for DissectOptions {
    fn default() -> DissectOptions {
        DissectOptions {
            tree: false,
            hex: false,
            json: false,
            redact: true,
            quiet: false,
        }
    }
}

/// Why a text is not a datagram in hex. Lines and columns count from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("{character:?} at line {line}, column {column} is not a hex digit")]
    BadCharacter {
        line: usize,
        column: usize,
        character: char,
    },
    #[error("odd number of hex digits ({count}) on line {line}")]
    OddDigits { line: usize, count: usize },
    #[error(
        "hex dump line {line} starts at offset 0x{offset:04x} but {have} bytes came before it"
    )]
    OffsetMismatch {
        line: usize,
        offset: usize,
        have: usize,
    },
    #[error("no hex digits")]
    Empty,
}

/// Parses one datagram written as hex: plain digits with optional spaces,
/// colons, commas and `0x` prefixes (`50 54 43 50`, `50:54`, `0x50,0x54`),
/// or hex dump lines `0000  50 54 43 50 …  |PTCP…|`, possibly several lines.
/// Blank lines and lines starting with `#` are skipped.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let mut bytes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match hexdump_line(trimmed) {
            Some(dump) => {
                let (offset, line_bytes) = dump.map_err(|column| bad_char(line, number, column))?;
                if offset != bytes.len() {
                    return Err(HexError::OffsetMismatch {
                        line: number,
                        offset,
                        have: bytes.len(),
                    });
                }
                bytes.extend(line_bytes);
            }
            None => bytes.extend(plain_hex(line, number)?),
        }
    }
    if bytes.is_empty() {
        return Err(HexError::Empty);
    }
    Ok(bytes)
}

fn bad_char(line: &str, number: usize, byte_index: usize) -> HexError {
    let column = line
        .char_indices()
        .take_while(|(i, _)| *i < byte_index)
        .count()
        + 1;
    HexError::BadCharacter {
        line: number,
        column,
        character: line
            .get(byte_index..)
            .and_then(|s| s.chars().next())
            .unwrap_or(' '),
    }
}

/// Digits of a plain hex line, separators and `0x` prefixes skipped.
fn plain_hex(line: &str, number: usize) -> Result<Vec<u8>, HexError> {
    let bytes = line.as_bytes();
    let mut digits = Vec::with_capacity(bytes.len());
    let mut i = 0usize;
    let mut token_start = true;
    while let Some(&b) = bytes.get(i) {
        if b.is_ascii_whitespace() || b == b':' || b == b',' {
            token_start = true;
            i += 1;
            continue;
        }
        if token_start && b == b'0' && matches!(bytes.get(i + 1), Some(b'x' | b'X')) {
            i += 2;
            token_start = false;
            continue;
        }
        token_start = false;
        match hex_value(b) {
            Some(v) => digits.push(v),
            None => return Err(bad_char(line, number, i)),
        }
        i += 1;
    }
    if digits.len() % 2 != 0 {
        return Err(HexError::OddDigits {
            line: number,
            count: digits.len(),
        });
    }
    Ok(digits
        .chunks(2)
        .map(|pair| pair[0] << 4 | pair[1])
        .collect())
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// A hex dump line (`0000  50 54 …  |PTCP|`): `None` when the line is not in
/// that form, else its offset and bytes, or the byte index of a bad
/// character. With the `|…|` column every token before it must be a byte;
/// without it (tshark `-x`) bytes are read until the first token that is not
/// one, at most 16.
fn hexdump_line(line: &str) -> Option<Result<(usize, Vec<u8>), usize>> {
    let offset_len = line.find(|c: char| !c.is_ascii_hexdigit())?;
    if !(4..=8).contains(&offset_len) || !line.get(offset_len..)?.starts_with("  ") {
        return None;
    }
    let offset = usize::from_str_radix(line.get(..offset_len)?, 16).ok()?;
    let bar = line.find('|');
    let area = line.get(offset_len..bar.unwrap_or(line.len()))?;
    let first = area.split_ascii_whitespace().next()?;
    if first.len() != 2 || !first.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut bytes = Vec::with_capacity(16);
    let mut at = offset_len;
    for token in area.split_ascii_whitespace() {
        let token_at = at + line.get(at..)?.find(token)?;
        at = token_at + token.len();
        let byte = (token.len() == 2)
            .then(|| u8::from_str_radix(token, 16).ok())
            .flatten();
        match byte {
            Some(byte) if bytes.len() < 16 || bar.is_some() => bytes.push(byte),
            _ if bar.is_none() => break,
            _ => {
                let bad = token
                    .bytes()
                    .position(|b| !b.is_ascii_hexdigit())
                    .unwrap_or(token.len().min(2));
                return Some(Err(token_at + bad));
            }
        }
    }
    Some(Ok((offset, bytes)))
}

/// The offset of a hex dump line, when `line` is one.
fn hexdump_offset(line: &str) -> Option<usize> {
    match hexdump_line(line.trim())? {
        Ok((offset, _)) => Some(offset),
        Err(_) => Some(usize::MAX),
    }
}

/// One input datagram: where it came from and its text.
struct Input {
    source: String,
    text: String,
}

/// Runs `dissect` over `args` (each one datagram; `-` or none means stdin)
/// and returns the exit code. Data goes to `out`, diagnostics to `err`.
pub fn run(
    options: &DissectOptions,
    args: &[String],
    stdin: impl BufRead,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<u8> {
    let mut state = State {
        options: *options,
        count: 0,
        bad_hex: false,
        not_decoded: false,
    };
    let mut stdin = Some(stdin);
    if args.is_empty() {
        if let Some(stdin) = stdin.take() {
            read_stdin(stdin, &mut state, out, err)?;
        }
    }
    for (index, arg) in args.iter().enumerate() {
        if arg == "-" {
            match stdin.take() {
                Some(stdin) => read_stdin(stdin, &mut state, out, err)?,
                None => writeln!(err, "dhp2p dissect: `-` given twice; stdin is read once")?,
            }
            continue;
        }
        let input = Input {
            source: format!("argument {}", index + 1),
            text: arg.clone(),
        };
        state.handle(&input, out, err)?;
    }
    out.flush()?;
    Ok(if state.bad_hex {
        EXIT_BAD_HEX
    } else if state.not_decoded {
        EXIT_NOT_DECODED
    } else {
        EXIT_OK
    })
}

/// Reads datagrams from stdin: one per line of plain hex, or one per hex
/// dump block (a block ends at a blank line, a comment, a plain line or a
/// line at offset 0).
fn read_stdin(
    stdin: impl BufRead,
    state: &mut State,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<()> {
    let mut block: Option<Input> = None;
    for (index, line) in stdin.split(b'\n').enumerate() {
        let mut line = line?;
        let number = index + 1;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let line = match String::from_utf8(line) {
            Ok(line) => line,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                writeln!(
                    err,
                    "dhp2p dissect: stdin line {number}: not text (byte 0x{:02x} at column {} is not UTF-8), skipped",
                    e.as_bytes().get(at).copied().unwrap_or(0),
                    at + 1
                )?;
                state.bad_hex = true;
                continue;
            }
        };
        if line.len() > MAX_LINE_LEN {
            writeln!(
                err,
                "dhp2p dissect: stdin line {number}: longer than {MAX_LINE_LEN} bytes, skipped"
            )?;
            state.bad_hex = true;
            continue;
        }
        let trimmed = line.trim();
        let offset = hexdump_offset(trimmed);
        let continues_block = matches!(offset, Some(o) if o != 0);
        if !continues_block {
            if let Some(done) = block.take() {
                state.handle(&done, out, err)?;
            }
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if offset.is_some() {
            let current = block.get_or_insert_with(|| Input {
                source: format!("stdin line {number}"),
                text: String::new(),
            });
            current.text.push_str(trimmed);
            current.text.push('\n');
        } else {
            let input = Input {
                source: format!("stdin line {number}"),
                text: line,
            };
            state.handle(&input, out, err)?;
        }
    }
    if let Some(done) = block.take() {
        state.handle(&done, out, err)?;
    }
    Ok(())
}

struct State {
    options: DissectOptions,
    count: usize,
    bad_hex: bool,
    not_decoded: bool,
}

impl State {
    fn handle(
        &mut self,
        input: &Input,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> io::Result<()> {
        self.count += 1;
        let n = self.count;
        let payload = match parse_hex(&input.text) {
            Ok(payload) => payload,
            Err(error) => {
                self.bad_hex = true;
                return writeln!(err, "dhp2p dissect: {}: bad hex: {error}", input.source);
            }
        };
        let desc = describe_with(
            &payload,
            Options {
                redact: self.options.redact,
            },
        );
        if !desc.is_decoded() {
            self.not_decoded = true;
            if !self.options.quiet {
                let why = match &desc.error {
                    Some(error) => format!("malformed {}: {error}", desc.kind.label()),
                    None => "not PTCP, cloud or punch".to_owned(),
                };
                writeln!(err, "dhp2p dissect: datagram {n} ({}): {why}", input.source)?;
            }
        }
        self.print(n, &payload, &desc, out)
    }

    fn print(
        &self,
        n: usize,
        payload: &[u8],
        desc: &Description,
        out: &mut impl Write,
    ) -> io::Result<()> {
        if self.options.json {
            let mut value = desc.to_json();
            if let Some(object) = value.as_object_mut() {
                object.insert("n".into(), n.into());
            }
            return writeln!(out, "{value}");
        }
        writeln!(out, "{n} {} {}", desc.kind.label(), desc.summary)?;
        write_details(desc, payload, self.options.tree, self.options.hex, out)
    }
}

/// What follows a datagram's summary line in `dissect` and `decode`: the
/// field tree (`-V`), the hex dump with secrets masked (`--hex`), and a
/// blank line after either.
pub fn write_details(
    desc: &Description,
    payload: &[u8],
    tree: bool,
    hex: bool,
    out: &mut impl Write,
) -> io::Result<()> {
    if tree {
        let mut text = String::new();
        render_tree(desc, &mut text);
        out.write_all(text.as_bytes())?;
    }
    if hex {
        out.write_all(hex_dump(&desc.masked(payload)).as_bytes())?;
    }
    if tree || hex {
        writeln!(out)?;
    }
    Ok(())
}
