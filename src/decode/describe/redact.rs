//! Secrets: which bytes are masked and how redacted text reads.

use super::*;

// ---------------------------------------------------------------------------
// Secrets

pub(super) fn shift(ranges: Vec<Range<usize>>, by: usize) -> Vec<Range<usize>> {
    ranges
        .into_iter()
        .map(|r| r.start.saturating_add(by)..r.end.saturating_add(by))
        .collect()
}

/// `bytes` with every byte inside `ranges` replaced by `*`.
pub(super) fn mask(bytes: &[u8], ranges: &[Range<usize>]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for range in ranges {
        let end = range.end.min(out.len());
        let start = range.start.min(end);
        if let Some(slice) = out.get_mut(start..end) {
            slice.fill(MASK_BYTE);
        }
    }
    out
}

/// `text` (an RTSP or HTTP head) with the credentials of its
/// `Authorization` lines replaced by [`REDACTED`]: the one redaction rule
/// that `describe`, `decode --follow --rtsp` and the inspector share.
pub fn redact_auth_text(text: &[u8]) -> String {
    redact_text(text, &rtsp::credential_ranges(text))
}

/// `bytes` as text with each range (sorted, disjoint) replaced by [`REDACTED`].
pub(super) fn redact_text(bytes: &[u8], ranges: &[Range<usize>]) -> String {
    let mut sorted: Vec<&Range<usize>> = ranges.iter().collect();
    sorted.sort_by_key(|r| r.start);
    let mut out = String::new();
    let mut at = 0usize;
    for range in sorted {
        let start = range.start.clamp(at, bytes.len());
        let end = range.end.clamp(start, bytes.len());
        out.push_str(&String::from_utf8_lossy(
            bytes.get(at..start).unwrap_or_default(),
        ));
        if start < end {
            out.push_str(REDACTED);
        }
        at = end;
    }
    out.push_str(&String::from_utf8_lossy(
        bytes.get(at..).unwrap_or_default(),
    ));
    out
}
