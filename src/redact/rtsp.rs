//! What to hide in a realm's byte stream: RTSP (and HTTP) `Authorization`
//! and `WWW-Authenticate` values, the userinfo of `rtsp://` and `http://` URLs, dotted addresses in
//! heads and bodies (SDP), and with `--drop-media` the payload of RTP
//! packets in interleaved `$` frames.
//!
//! The scanner sees a realm's stream in order, already put together from
//! PTCP DATA fragments, and returns edits in stream offsets, so a header
//! split across fragments is found like any other.
// TODO(H3 src/codec/rtsp.rs): switch to the codec's RTSP reader (Digest
// Authorization with byte ranges) once it lands; this is a minimal framer.

/// Longest RTSP head looked at; a longer one is not RTSP (binary data).
const MAX_HEAD: usize = 64 * 1024;

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

/// The value of an `Authorization` header with the credentials filled:
/// the scheme and parameter names stay, every value (quoted or not) and a
/// Basic token become `x`s of the same length.
pub fn fill_credentials(value: &[u8]) -> Vec<u8> {
    let mut out = value.to_vec();
    let scheme_end = out.iter().position(|b| *b == b' ').unwrap_or(out.len());
    let mut in_quotes = false;
    let mut in_value = false;
    let basic = value[..scheme_end].eq_ignore_ascii_case(b"Basic");
    for byte in out.iter_mut().skip(scheme_end) {
        match *byte {
            b'"' => in_quotes = !in_quotes,
            b'=' if !in_quotes && !basic => in_value = true,
            b',' if !in_quotes => in_value = false,
            b' ' | b'\t' if !in_quotes => {}
            _ if in_quotes || in_value || basic => *byte = b'x',
            _ => {}
        }
    }
    out
}

/// Scans one contiguous piece of a realm's stream.
pub fn scan(stream: &[u8], drop_media: bool) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        if stream[pos] == b'$' {
            let Some(len_bytes) = stream.get(pos + 2..pos + 4) else {
                break;
            };
            let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
            let start = pos + 4;
            let end = (start + len).min(stream.len());
            if drop_media {
                if let Some(finding) = blank_media(&stream[start..end], start, len) {
                    findings.push(finding);
                }
            }
            pos = start + len;
            continue;
        }
        let window = &stream[pos..stream.len().min(pos + MAX_HEAD)];
        let head_len = super::names::find(window, b"\r\n\r\n").map(|at| at + 4);
        let head_end = pos + head_len.unwrap_or(window.len());
        scan_head(stream, pos, head_end, &mut findings);
        let body_len = head_len
            .map(|_| content_length(&stream[pos..head_end]))
            .unwrap_or(0);
        let body_end = (head_end + body_len).min(stream.len());
        if body_end > head_end {
            scan_urls(stream, head_end, body_end, &mut findings);
            findings.push(Finding::Text {
                start: head_end,
                end: body_end,
            });
        }
        if head_len.is_none() {
            // No end of head in reach: not RTSP, or the stream ends here.
            pos = head_end;
            continue;
        }
        pos = body_end.max(head_end);
    }
    findings
}

fn content_length(head: &[u8]) -> usize {
    head.split(|b| *b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            if !line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(b"Content-Length")
            {
                return None;
            }
            std::str::from_utf8(&line[colon + 1..])
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .next()
        .unwrap_or(0)
}

fn scan_head(stream: &[u8], start: usize, end: usize, findings: &mut Vec<Finding>) {
    let mut line_start = start;
    while line_start < end {
        let line_end = stream[line_start..end]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(end, |at| line_start + at + 1);
        let line = &stream[line_start..line_end];
        if let Some(colon) = line.iter().position(|b| *b == b':') {
            let name = line[..colon].trim_ascii();
            // The challenge's nonce is as much a secret as the answer.
            let credentials = [
                &b"Authorization"[..],
                b"Proxy-Authorization",
                b"WWW-Authenticate",
                b"Proxy-Authenticate",
            ];
            if credentials.iter().any(|c| name.eq_ignore_ascii_case(c)) {
                let value_start = colon + 1 + leading_spaces(&line[colon + 1..]);
                let value_end = line.len() - trailing_eol(line);
                if value_end > value_start {
                    findings.push(Finding::Replace {
                        start: line_start + value_start,
                        bytes: fill_credentials(&line[value_start..value_end]),
                        kind: "RTSP Authorization",
                    });
                }
            }
        }
        line_start = line_end;
    }
    scan_urls(stream, start, end, findings);
    findings.push(Finding::Text { start, end });
}

fn leading_spaces(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count()
}

fn trailing_eol(line: &[u8]) -> usize {
    line.iter()
        .rev()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count()
}

/// `user:password@` in `scheme://user:password@host/...` URLs.
fn scan_urls(stream: &[u8], start: usize, end: usize, findings: &mut Vec<Finding>) {
    let text = &stream[start..end];
    let mut at = 0;
    while let Some(found) = super::names::find(&text[at..], b"://") {
        let authority_start = at + found + 3;
        let authority_len = text[authority_start..]
            .iter()
            .position(|b| matches!(b, b'/' | b' ' | b'\r' | b'\n' | b'"' | b'>' | b'?' | b'#'))
            .unwrap_or(text.len() - authority_start);
        let authority = &text[authority_start..authority_start + authority_len];
        if let Some(at_sign) = authority.iter().rposition(|b| *b == b'@') {
            let filled = authority[..at_sign]
                .iter()
                .map(|b| if *b == b':' { b':' } else { b'x' })
                .collect();
            findings.push(Finding::Replace {
                start: start + authority_start,
                bytes: filled,
                kind: "URL userinfo",
            });
        }
        at = authority_start + authority_len;
    }
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
