//! Reading a captured byte stream as RTSP with interleaved `$` frames,
//! where the capture may have holes: the lenient reader `decode --follow
//! --rtsp` walks a realm with. It never fails; what it cannot read it
//! reports as an item and restarts at the next recognisable start.

use std::ops::Range;

use super::framing::{
    content_length, head_len, interleaved_header, looks_like_interleaved, looks_like_message,
    Interleaved, MAX_MESSAGE_BYTES,
};

/// What the reader found, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// A request or response: its head's range (the whole window up to a
    /// hole or [`MAX_MESSAGE_BYTES`] when no blank line ends it) and how
    /// much of its body is present.
    Message {
        head: Range<usize>,
        body_len: usize,
        /// Cut short by a hole or the end of the stream.
        truncated: bool,
    },
    /// A whole `$` frame at `offset`.
    Interleaved { offset: usize, frame: Interleaved },
    /// A `$` frame at `offset` cut short: `frame` is `None` when even its
    /// 4-byte header is incomplete; `by_end` when the stream ends there
    /// rather than a hole.
    InterleavedCut {
        offset: usize,
        frame: Option<Interleaved>,
        by_end: bool,
    },
    /// Bytes that start neither a message nor a frame.
    Unrecognised(Range<usize>),
    /// The stream does not open with a message or a frame, so it is not
    /// read at all: resyncing inside arbitrary bytes would invent frames.
    NotRtsp,
}

/// Reads `bytes`, whose capture has holes at the offsets in `holes`
/// (nothing is read across one).
pub fn read_stream(bytes: &[u8], holes: &[usize]) -> Vec<StreamItem> {
    let mut boundaries: Vec<usize> = holes
        .iter()
        .copied()
        .filter(|&o| o > 0 && o < bytes.len())
        .collect();
    boundaries.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let segment_end = boundaries
            .iter()
            .copied()
            .find(|&b| b > at)
            .unwrap_or(bytes.len());
        let segment = bytes.get(at..segment_end).unwrap_or_default();
        if segment.first() == Some(&b'$') {
            let frame = interleaved_header(segment);
            match frame {
                Some(frame) if segment.len() >= frame.total_len() => {
                    out.push(StreamItem::Interleaved { offset: at, frame });
                    at += frame.total_len();
                }
                _ => {
                    out.push(StreamItem::InterleavedCut {
                        offset: at,
                        frame,
                        by_end: segment_end == bytes.len(),
                    });
                    at = resync(bytes, segment_end);
                }
            }
            continue;
        }
        if looks_like_message(segment) {
            let window = segment
                .get(..segment.len().min(MAX_MESSAGE_BYTES))
                .unwrap_or_default();
            let Some(head_end) = head_len(window) else {
                out.push(StreamItem::Message {
                    head: at..at + window.len(),
                    body_len: 0,
                    truncated: true,
                });
                at = resync(bytes, segment_end);
                continue;
            };
            let head = window.get(..head_end).unwrap_or_default();
            // A length that is not a number is read as no body.
            let body = content_length(head).unwrap_or(0);
            let available = segment.len().saturating_sub(head_end);
            let truncated = body > available;
            out.push(StreamItem::Message {
                head: at..at + head_end,
                body_len: body.min(available),
                truncated,
            });
            at = if truncated {
                resync(bytes, segment_end)
            } else {
                at + head_end + body
            };
            continue;
        }
        if at == 0 {
            out.push(StreamItem::NotRtsp);
            break;
        }
        let next = resync(bytes, at + 1);
        out.push(StreamItem::Unrecognised(at..next));
        at = next;
    }
    out
}

/// The next position at or after `from` where a message or frame starts.
fn resync(bytes: &[u8], from: usize) -> usize {
    (from..bytes.len())
        .find(|&i| {
            let rest = bytes.get(i..).unwrap_or_default();
            looks_like_message(rest) || looks_like_interleaved(rest)
        })
        .unwrap_or(bytes.len())
}
