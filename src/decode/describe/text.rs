//! Text helpers: readable-text test, previews, spaced hex.

use super::*;

// ---------------------------------------------------------------------------
// Text helpers

/// Whether bytes read as text: printable ASCII, tabs and line breaks, and
/// a printable first byte (the same test as `dh-p2p.lua`, made stricter).
pub(super) fn readable_text(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.first().is_some_and(|b| (0x20..0x7f).contains(b))
        && bytes
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) || matches!(b, b'\r' | b'\n' | b'\t'))
}

/// A one-line preview: line breaks escaped, long text cut with `…`.
pub(super) fn preview(text: &str) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count >= MAX_PREVIEW_CHARS {
            out.push('…');
            break;
        }
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

pub(super) fn spaced_hex(bytes: &[u8]) -> String {
    // A table lookup per byte: this runs for every payload in `--json`.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(3));
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0x0f)]);
    }
    String::from_utf8(out).unwrap_or_default()
}
