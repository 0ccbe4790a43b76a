//! Renderers: the `-V` tree and the hex dump.

use super::*;

// ---------------------------------------------------------------------------
// Renderers

/// Appends the field tree, indented like `tshark -V`: `label: value`, four
/// spaces per level, a `[Malformed: …]` line for a decoder error.
pub fn render_tree(desc: &Description, out: &mut String) {
    for field in &desc.fields {
        render_field(field, 0, out);
    }
}

pub(super) fn render_field(field: &Field, depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("    ");
    }
    out.push_str(&field.label);
    if !field.value.is_empty() {
        out.push_str(": ");
        out.push_str(&field.value);
    }
    out.push('\n');
    for child in &field.children {
        render_field(child, depth + 1, out);
    }
}

/// A hex dump in the reference files' form: offset, 16 bytes, ASCII.
///
/// ```text
/// 0000  50 54 43 50 00 00 00 00 00 00 00 00 00 02 ff ff  |PTCP............|
/// ```
pub fn hex_dump(payload: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in payload.chunks(16).enumerate() {
        let _ = write!(out, "{:04x}  ", line.saturating_mul(16));
        let hex = spaced_hex(chunk);
        let _ = write!(out, "{hex:<47}  |");
        for &byte in chunk {
            out.push(if (0x20..0x7f).contains(&byte) {
                char::from(byte)
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
    out
}
