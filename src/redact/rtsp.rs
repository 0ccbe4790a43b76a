//! What to hide in a realm's byte stream: RTSP (and HTTP) `Authorization`
//! and `WWW-Authenticate` values, the userinfo of `rtsp://` and `http://` URLs, dotted addresses in
//! heads and bodies (SDP), and with `--drop-media` the payload of RTP
//! packets in interleaved `$` frames.
//!
//! The scanner sees a realm's stream in order, already put together from
//! PTCP DATA fragments, and returns edits in stream offsets, so a header
//! split across fragments is found like any other.
//!
//! Framing, header lines, `Authorization` parameters and URL userinfo are
//! read by the codec's one RTSP reader ([`crate::codec::rtsp`]); this file
//! only decides what of it to hide.

use std::ops::Range;

use crate::codec::rtsp::{
    content_length, head_len, header_field, interleaved_header, is_challenge_header,
    is_credentials_header, line_ranges, parse_authorization, userinfo_ranges, Credentials,
    INTERLEAVED_HEADER_LEN, MAX_MESSAGE_BYTES,
};

/// One thing the scanner found, in stream offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Same-length replacement bytes at `start`.
    Replace {
        start: usize,
        bytes: Vec<u8>,
        kind: &'static str,
    },
    /// Text to search for dotted addresses: `start..end`.
    Text { start: usize, end: usize },
}

/// The value of an `Authorization` (or `WWW-Authenticate`) header with the
/// credentials filled: the scheme and Digest parameter names stay, every
/// Digest value and a Basic token become `x`s of the same length. A
/// damaged Digest header or another scheme is filled whole after the
/// scheme (whitespace aside).
pub fn fill_credentials(value: &[u8]) -> Vec<u8> {
    let mut out = value.to_vec();
    for range in hidden(value) {
        for byte in out.get_mut(range).unwrap_or_default() {
            if !byte.is_ascii_whitespace() {
                *byte = b'x';
            }
        }
    }
    out
}

/// The ranges of `value` that [`fill_credentials`] fills.
fn hidden(value: &[u8]) -> Vec<Range<usize>> {
    match parse_authorization(value) {
        Credentials::Basic { token } => vec![token],
        Credentials::Digest {
            params,
            well_formed: true,
        } => params.into_iter().map(|p| p.value).collect(),
        Credentials::Digest { .. } | Credentials::Other => {
            let scheme_start = value
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(value.len());
            let scheme_end = value
                .iter()
                .skip(scheme_start)
                .position(u8::is_ascii_whitespace)
                .map_or(value.len(), |at| scheme_start + at);
            std::iter::once(scheme_end..value.len()).collect()
        }
    }
}

/// Scans one contiguous piece of a realm's stream.
pub fn scan(stream: &[u8], drop_media: bool) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut pos = 0;
    while let Some(rest) = stream.get(pos..).filter(|rest| !rest.is_empty()) {
        if rest.first() == Some(&b'$') {
            let Some(frame) = interleaved_header(rest) else {
                break;
            };
            let start = pos + INTERLEAVED_HEADER_LEN;
            let end = (start + frame.len).min(stream.len());
            if drop_media {
                let payload = stream.get(start..end).unwrap_or_default();
                findings.extend(blank_media(payload, start, frame.len));
            }
            pos = start + frame.len;
            continue;
        }
        // Anything else is read as a head, RTSP-looking or not: a secret in
        // bytes the reader does not recognise must not slip through.
        let window = rest
            .get(..rest.len().min(MAX_MESSAGE_BYTES))
            .unwrap_or(rest);
        let head = head_len(window);
        let head_end = pos + head.unwrap_or(window.len());
        scan_head(stream, pos..head_end, &mut findings);
        let Some(head) = head else {
            // No end of head in reach: not RTSP, or the stream ends here.
            pos = head_end;
            continue;
        };
        // A length that is not a number is read as no body.
        let body_len = content_length(window.get(..head).unwrap_or_default()).unwrap_or(0);
        let body_end = (head_end + body_len).min(stream.len());
        if body_end > head_end {
            scan_text(stream, head_end..body_end, &mut findings);
        }
        pos = body_end;
    }
    findings
}

/// The credential header values in the head at `range`, then the head as text.
fn scan_head(stream: &[u8], range: Range<usize>, findings: &mut Vec<Finding>) {
    let head = stream.get(range.clone()).unwrap_or_default();
    for line in line_ranges(head) {
        let Some(field) = header_field(head, line) else {
            continue;
        };
        let name = head.get(field.name).unwrap_or_default();
        if !(is_credentials_header(name) || is_challenge_header(name)) {
            continue;
        }
        let value = head.get(field.value.clone()).unwrap_or_default();
        if !value.is_empty() {
            findings.push(Finding::Replace {
                start: range.start + field.value.start,
                bytes: fill_credentials(value),
                kind: "RTSP Authorization",
            });
        }
    }
    scan_text(stream, range, findings);
}

/// URL userinfo (`user:password@`) in `range`, and the range as text to
/// search for addresses.
fn scan_text(stream: &[u8], range: Range<usize>, findings: &mut Vec<Finding>) {
    let text = stream.get(range.clone()).unwrap_or_default();
    for userinfo in userinfo_ranges(text) {
        let filled = text
            .get(userinfo.clone())
            .unwrap_or_default()
            .iter()
            .map(|b| if *b == b':' { b':' } else { b'x' })
            .collect();
        findings.push(Finding::Replace {
            start: range.start + userinfo.start,
            bytes: filled,
            kind: "URL userinfo",
        });
    }
    findings.push(Finding::Text {
        start: range.start,
        end: range.end,
    });
}

/// The zeroed payload of one interleaved frame (`len` as declared; the
/// frame may run past the end of what was captured). RTP keeps its header
/// (fixed part, CSRCs, extension) and its padding count; RTCP keeps its
/// 8-byte header; anything else is zeroed whole.
fn blank_media(frame: &[u8], start: usize, len: usize) -> Option<Finding> {
    let first = *frame.first()?;
    let keep = if first >> 6 == 2 && frame.len() >= 2 && (200..=206).contains(&frame[1]) {
        8
    } else if first >> 6 == 2 && len >= 12 {
        let csrcs = usize::from(first & 0x0f) * 4;
        let mut header = 12 + csrcs;
        if first & 0x10 != 0 {
            let words = frame
                .get(header + 2..header + 4)
                .map_or(0, |w| usize::from(u16::from_be_bytes([w[0], w[1]])));
            header += 4 + words * 4;
        }
        header
    } else {
        0
    };
    let padded = first >> 6 == 2 && first & 0x20 != 0 && frame.len() == len;
    let end = if padded { frame.len() - 1 } else { frame.len() };
    if keep >= end {
        return None;
    }
    Some(Finding::Replace {
        start: start + keep,
        bytes: vec![0; end - keep],
        kind: "media frame blanked",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replaced(stream: &[u8]) -> Vec<u8> {
        let mut out = stream.to_vec();
        for finding in scan(stream, false) {
            if let Finding::Replace { start, bytes, .. } = finding {
                out[start..start + bytes.len()].copy_from_slice(&bytes);
            }
        }
        out
    }

    #[test]
    fn digest_values_are_filled_and_names_kept() {
        let value = br#"Digest username="admin", realm="Login", nonce="abc", response="0123""#;
        assert_eq!(
            fill_credentials(value),
            br#"Digest username="xxxxx", realm="xxxxx", nonce="xxx", response="xxxx""#.to_vec()
        );
    }

    #[test]
    fn other_schemes_and_damaged_digest_are_filled_whole() {
        assert_eq!(
            fill_credentials(b"Bearer s3cret"),
            b"Bearer xxxxxx".to_vec()
        );
        assert_eq!(fill_credentials(b"Digest junk"), b"Digest xxxx".to_vec());
        assert_eq!(
            fill_credentials(b"Basic YWRtaW4="),
            b"Basic xxxxxxxx".to_vec()
        );
    }

    #[test]
    fn heads_challenges_urls_and_bodies_after_a_frame() {
        let mut stream = b"$\x01\x00\x02ab".to_vec();
        stream.extend_from_slice(
            b"DESCRIBE rtsp://u:pw@10.0.0.1/cam RTSP/1.0\r\nCSeq: 2\r\n\
              Authorization: Basic dTpwdw==\r\n\r\n\
              RTSP/1.0 401 Unauthorized\r\nWWW-Authenticate: Digest nonce=\"n1\"\r\n\
              Content-Length: 20\r\n\r\nv=0 rtsp://a:b@h/ x\n",
        );
        let out = String::from_utf8(replaced(&stream)).unwrap();
        assert!(out.contains("rtsp://x:xx@10.0.0.1/cam"), "{out}");
        assert!(out.contains("Authorization: Basic xxxxxxxx\r\n"), "{out}");
        assert!(out.contains("Digest nonce=\"xx\""), "{out}");
        assert!(out.contains("rtsp://x:x@h/"), "{out}");
        assert_eq!(out.len(), stream.len());
    }
}
