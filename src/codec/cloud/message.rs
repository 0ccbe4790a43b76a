//! The head of a cloud message (start line and headers, in wire order) and its
//! raw body. The decoder keeps every byte it needs so that
//! `decode(b)?.encode() == b` for every accepted `b`.

use std::ops::Range;

use super::xml::XmlBody;
use super::CloudError;
use crate::codec::crypto::wsse_digest;

/// Most header lines a message may carry; real ones carry at most ten.
pub const MAX_HEADERS: usize = 64;

/// Longest method token [`decode`] looks for before deciding the datagram is
/// not a cloud message.
const MAX_METHOD_LEN: usize = 16;

const HEAD_END: &[u8] = b"\r\n\r\n";

/// Request method. The cloud accepts both verb sets (FIELD-NOTES C9).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// Legacy dialect, no body (DH-P2P §2.2).
    DhGet,
    /// Legacy dialect, with a body.
    DhPost,
    /// SDK dialect, no body (FIELD-NOTES §2.2).
    NfGet,
    /// SDK dialect, with a body.
    NfPost,
    /// Plain `GET` (e.g. local-channel in one reading, FIELD-NOTES §8.10).
    Get,
    /// Plain `POST` (`/tcprelay/client-bind`).
    Post,
    /// Any other token. Build it with [`Method::from_token`] so a known verb
    /// never ends up here.
    Other(String),
}

impl Method {
    /// The method named by `token`, exactly as written (case-sensitive).
    pub fn from_token(token: &str) -> Method {
        match token {
            "DHGET" => Method::DhGet,
            "DHPOST" => Method::DhPost,
            "NFGET" => Method::NfGet,
            "NFPOST" => Method::NfPost,
            "GET" => Method::Get,
            "POST" => Method::Post,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The token as it goes on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::DhGet => "DHGET",
            Method::DhPost => "DHPOST",
            Method::NfGet => "NFGET",
            Method::NfPost => "NFPOST",
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Other(token) => token,
        }
    }
}

/// What separates a header name from its value. DH-P2P §2.4 says `": "`;
/// a bare `Name:` is tolerated and kept so re-encoding is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Separator {
    /// `Name: value` (also `Content-Type: ` with an empty value).
    ColonSpace,
    /// `Name:` with nothing after the colon; the value is then empty.
    Colon,
}

/// One header line, name and value as raw text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    pub name: String,
    pub value: String,
    pub separator: Separator,
}

impl Header {
    /// A `Name: value` header.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
            separator: Separator::ColonSpace,
        }
    }

    /// Writes the line and returns where its parts went.
    fn encode(&self, out: &mut Vec<u8>) -> HeaderLayout {
        let start = out.len();
        let name = written(out, self.name.as_bytes());
        match self.separator {
            Separator::ColonSpace => out.extend_from_slice(b": "),
            Separator::Colon => out.push(b':'),
        }
        let value = written(out, self.value.as_bytes());
        let line = start..out.len();
        out.extend_from_slice(b"\r\n");
        HeaderLayout { line, name, value }
    }
}

/// Where one header line sits in a datagram (the line without its CRLF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLayout {
    pub line: Range<usize>,
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// Where the parts of a message sit in its datagram, as the encoder (the
/// exact inverse of the decoder) writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The start line without its CRLF.
    pub start_line: Range<usize>,
    /// Method, path, version of a request; version, code, reason of a
    /// response.
    pub start_parts: [Range<usize>; 3],
    /// One per header, in wire order.
    pub headers: Vec<HeaderLayout>,
    /// Everything after the empty line.
    pub body: Range<usize>,
}

/// Appends `bytes` and returns the range they took.
fn written(out: &mut Vec<u8>, bytes: &[u8]) -> Range<usize> {
    let start = out.len();
    out.extend_from_slice(bytes);
    start..out.len()
}

/// A request: `METHOD SP path SP version CRLF`, headers, CRLF, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path exactly as written; see [`super::Endpoint::parse`].
    pub path: String,
    /// `HTTP/1.1` in every known message; kept as text.
    pub version: String,
    pub headers: Vec<Header>,
    /// Everything after the first CRLFCRLF, raw.
    pub body: Vec<u8>,
}

/// A response: `version SP code SP reason CRLF`, headers, CRLF, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub version: String,
    /// Three decimal digits on the wire (`100`..=`999` in practice).
    pub code: u16,
    /// The whole reason phrase, spaces included (`Server Nat Info!`).
    pub reason: String,
    pub headers: Vec<Header>,
    /// Everything after the first CRLFCRLF, raw.
    pub body: Vec<u8>,
}

/// One cloud datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// The parsed `X-WSSE` header (DH-P2P §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wsse {
    pub username: String,
    pub password_digest: String,
    /// Decimal text as written (signed in the SDK dialect).
    pub nonce: String,
    /// As written: `…Z` or with a numeric offset.
    pub created: String,
}

/// Where each value of an X-WSSE header sits in the header value (inside
/// its quotes), as [`Wsse::parse`] read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsseRanges {
    pub username: Range<usize>,
    pub password_digest: Range<usize>,
    pub nonce: Range<usize>,
    pub created: Range<usize>,
}

impl WsseRanges {
    /// Reads the header value; the errors are [`Wsse::parse`]'s.
    pub fn locate(value: &str) -> Result<WsseRanges, CloudError> {
        let bad = |reason| CloudError::BadWsse { reason };
        let mut rest = value
            .strip_prefix("UsernameToken")
            .ok_or(bad("does not start with `UsernameToken`"))?;
        let (mut username, mut digest, mut nonce, mut created) = (None, None, None, None);
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if rest.is_empty() {
                break;
            }
            let (key, after) = rest.split_once('=').ok_or(bad("a parameter has no `=`"))?;
            let after = after
                .strip_prefix('"')
                .ok_or(bad("a parameter value is not quoted"))?;
            let (val, after) = after
                .split_once('"')
                .ok_or(bad("a quoted value is not closed"))?;
            // `val` is a slice of `value`: its place is its distance from the start.
            let start = value.len() - after.len() - 1 - val.len();
            let range = Some(start..start + val.len());
            match key {
                "Username" => username = range,
                "PasswordDigest" => digest = range,
                "Nonce" => nonce = range,
                "Created" => created = range,
                _ => {}
            }
            rest = after;
        }
        Ok(WsseRanges {
            username: username.ok_or(bad("no Username"))?,
            password_digest: digest.ok_or(bad("no PasswordDigest"))?,
            nonce: nonce.ok_or(bad("no Nonce"))?,
            created: created.ok_or(bad("no Created"))?,
        })
    }
}

impl Wsse {
    /// Parses `UsernameToken Username="…", PasswordDigest="…", Nonce="…",
    /// Created="…"`. Keys may come in any order; unknown keys are ignored.
    /// Quoted values are taken literally (the Amcrest username holds a
    /// backslash that is not an escape).
    pub fn parse(value: &str) -> Result<Wsse, CloudError> {
        let at = WsseRanges::locate(value)?;
        let text = |r: &Range<usize>| value.get(r.clone()).unwrap_or_default().to_owned();
        Ok(Wsse {
            username: text(&at.username),
            password_digest: text(&at.password_digest),
            nonce: text(&at.nonce),
            created: text(&at.created),
        })
    }

    /// The digest this header should carry if the client holds `key`.
    pub fn expected_digest(&self, key: &str) -> String {
        wsse_digest(&self.nonce, &self.created, &self.username, key)
    }

    /// Whether the digest was made with `key` (what a fake cloud checks).
    pub fn digest_matches(&self, key: &str) -> bool {
        self.expected_digest(key) == self.password_digest
    }

    /// The header value, in the order every client writes it.
    pub fn header_value(&self) -> String {
        wsse_header_value(
            &self.username,
            &self.password_digest,
            &self.nonce,
            &self.created,
        )
    }
}

/// The `X-WSSE` value (written here, next to its parser), in the order every client writes it.
pub fn wsse_header_value(username: &str, digest: &str, nonce: &str, created: &str) -> String {
    format!(
        "UsernameToken Username=\"{username}\", PasswordDigest=\"{digest}\", Nonce=\"{nonce}\", Created=\"{created}\""
    )
}

/// A cheap content check for the classifier: a known method followed by a
/// space, or `HTTP/`. [`decode`] is more lenient (any method token).
pub fn looks_like_cloud(bytes: &[u8]) -> bool {
    const PREFIXES: [&[u8]; 7] = [
        b"DHGET ", b"DHPOST ", b"NFGET ", b"NFPOST ", b"GET ", b"POST ", b"HTTP/",
    ];
    PREFIXES.iter().any(|p| bytes.starts_with(p))
}

/// Decodes one datagram. Only the head is checked here; the body is kept raw
/// and parsed on demand by `xml_body()`.
pub fn decode(bytes: &[u8]) -> Result<Message, CloudError> {
    let is_response = bytes.starts_with(b"HTTP/");
    if !is_response && !starts_with_method_token(bytes) {
        return Err(CloudError::NotCloud);
    }
    let head_len = crate::codec::find_bytes(bytes, HEAD_END)
        .ok_or(CloudError::HeadUnterminated { len: bytes.len() })?;
    let (head, rest) = bytes.split_at(head_len);
    let body = rest.get(HEAD_END.len()..).unwrap_or_default().to_vec();
    let head = std::str::from_utf8(head).map_err(|e| CloudError::NonUtf8Head {
        offset: e.valid_up_to(),
    })?;

    let mut lines = Lines {
        rest: head,
        offset: 0,
    };
    // `head` is non-empty after a method token or `HTTP/`, so there is a line.
    let (start_offset, start) = lines.next().unwrap_or((0, ""));
    check_line(start, start_offset)?;
    let headers = decode_headers(lines)?;
    if is_response {
        let (version, code, reason) = decode_status_line(start)?;
        Ok(Message::Response(Response {
            version,
            code,
            reason,
            headers,
            body,
        }))
    } else {
        let (method, path, version) = decode_request_line(start)?;
        Ok(Message::Request(Request {
            method,
            path,
            version,
            headers,
            body,
        }))
    }
}

fn starts_with_method_token(bytes: &[u8]) -> bool {
    let token_len = bytes
        .iter()
        .take(MAX_METHOD_LEN + 1)
        .position(|b| !is_tchar(*b));
    matches!(token_len, Some(n) if n > 0 && bytes.get(n) == Some(&b' '))
}

/// RFC 9110 `tchar`: what a method or header name may be made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Head lines split on CRLF, with the offset of each line.
struct Lines<'a> {
    rest: &'a str,
    offset: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        if self.offset > 0 && self.rest.is_empty() {
            return None;
        }
        let start = self.offset;
        match self.rest.split_once("\r\n") {
            Some((line, rest)) => {
                self.rest = rest;
                self.offset = start.saturating_add(line.len()).saturating_add(2);
                Some((start, line))
            }
            None => {
                let line = self.rest;
                self.rest = "";
                // Mark the iterator as exhausted even for an empty first line.
                self.offset = start.saturating_add(line.len()).max(1);
                Some((start, line))
            }
        }
    }
}

/// Lines end in CRLF only: a lone CR or LF would not survive other parsers.
fn check_line(line: &str, offset: usize) -> Result<(), CloudError> {
    match line.bytes().position(|b| b == b'\r' || b == b'\n') {
        Some(i) => Err(CloudError::BareLineBreak {
            offset: offset.saturating_add(i),
        }),
        None => Ok(()),
    }
}

fn decode_headers(lines: Lines<'_>) -> Result<Vec<Header>, CloudError> {
    let mut headers = Vec::new();
    for (offset, line) in lines {
        if headers.len() >= MAX_HEADERS {
            return Err(CloudError::TooManyHeaders { max: MAX_HEADERS });
        }
        check_line(line, offset)?;
        let bad = |reason| CloudError::BadHeaderLine { offset, reason };
        let (name, after) = line.split_once(':').ok_or(bad("no `:`"))?;
        if !is_token(name) {
            return Err(bad("header name is empty or not a token"));
        }
        let (separator, value) = if after.is_empty() {
            (Separator::Colon, after)
        } else {
            let value = after
                .strip_prefix(' ')
                .ok_or(bad("no space after `:` (want `Name: value`)"))?;
            (Separator::ColonSpace, value)
        };
        headers.push(Header {
            name: name.to_owned(),
            value: value.to_owned(),
            separator,
        });
    }
    Ok(headers)
}

fn decode_request_line(line: &str) -> Result<(Method, String, String), CloudError> {
    let bad = |offset, reason| CloudError::BadRequestLine { offset, reason };
    let (method, rest) = line
        .split_once(' ')
        .ok_or(bad(0, "no space after the method"))?;
    if !is_token(method) {
        return Err(bad(0, "method is not a token"));
    }
    let rest_offset = method.len().saturating_add(1);
    let (path, version) = rest
        .rsplit_once(' ')
        .ok_or(bad(rest_offset, "no space before the version"))?;
    if path.is_empty() {
        return Err(bad(rest_offset, "empty path"));
    }
    if !version.starts_with("HTTP/") {
        let offset = rest_offset.saturating_add(path.len()).saturating_add(1);
        return Err(bad(offset, "version does not start with `HTTP/`"));
    }
    Ok((
        Method::from_token(method),
        path.to_owned(),
        version.to_owned(),
    ))
}

fn decode_status_line(line: &str) -> Result<(String, u16, String), CloudError> {
    let bad = |offset, reason| CloudError::BadStatusLine { offset, reason };
    let (version, rest) = line
        .split_once(' ')
        .ok_or(bad(0, "no space after the version"))?;
    let code_offset = version.len().saturating_add(1);
    let (code_text, reason) = rest.split_once(' ').ok_or(bad(
        code_offset,
        "no space after the status code (the reason phrase is required)",
    ))?;
    let code = parse_status_code(code_text).ok_or_else(|| CloudError::BadStatusCode {
        offset: code_offset,
        text: code_text.to_owned(),
    })?;
    Ok((version.to_owned(), code, reason.to_owned()))
}

fn parse_status_code(text: &str) -> Option<u16> {
    if text.len() != 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Writes the headers and the empty line ending the head.
fn encode_headers(headers: &[Header], out: &mut Vec<u8>) -> Vec<HeaderLayout> {
    let layouts = headers.iter().map(|h| h.encode(out)).collect();
    out.extend_from_slice(b"\r\n");
    layouts
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, path: impl Into<String>) -> Request {
        Request {
            method,
            path: path.into(),
            version: "HTTP/1.1".to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The endpoint named by the path.
    pub fn endpoint(&self) -> super::Endpoint {
        super::Endpoint::parse(&self.path)
    }

    fn encode_head(&self, out: &mut Vec<u8>) -> Layout {
        let parts = [
            self.method.as_str().as_bytes(),
            self.path.as_bytes(),
            self.version.as_bytes(),
        ];
        encode_head(out, parts, &self.headers, self.body.len())
    }

    /// The datagram.
    pub fn encode(&self) -> Vec<u8> {
        encode_datagram(|out| self.encode_head(out), &self.body)
    }
}

impl Response {
    /// A response with no headers and no body.
    pub fn new(code: u16, reason: impl Into<String>) -> Response {
        Response {
            version: "HTTP/1.1".to_owned(),
            code,
            reason: reason.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Appends a `Name: value` header (builder style).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Appends `Content-Length` for `body` and sets the body: what a fake cloud
    /// sends (DH-P2P §7 suggests `CSeq` then `Content-Length`).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        let len = self.body.len().to_string();
        self.with_header("Content-Length", len)
    }

    fn encode_head(&self, out: &mut Vec<u8>) -> Layout {
        let code = format!("{:03}", self.code);
        let parts = [
            self.version.as_bytes(),
            code.as_bytes(),
            self.reason.as_bytes(),
        ];
        encode_head(out, parts, &self.headers, self.body.len())
    }

    /// The datagram.
    pub fn encode(&self) -> Vec<u8> {
        encode_datagram(|out| self.encode_head(out), &self.body)
    }
}

/// Writes a start line of three space-separated parts and the headers, and
/// returns where everything went (the body of `body_len` bytes comes next).
fn encode_head(
    out: &mut Vec<u8>,
    parts: [&[u8]; 3],
    headers: &[Header],
    body_len: usize,
) -> Layout {
    let start = out.len();
    let first = written(out, parts[0]);
    out.push(b' ');
    let second = written(out, parts[1]);
    out.push(b' ');
    let third = written(out, parts[2]);
    let start_line = start..out.len();
    out.extend_from_slice(b"\r\n");
    let headers = encode_headers(headers, out);
    let body = out.len()..out.len().saturating_add(body_len);
    Layout {
        start_line,
        start_parts: [first, second, third],
        headers,
        body,
    }
}

/// The head written by `head`, then `body`.
fn encode_datagram(head: impl FnOnce(&mut Vec<u8>) -> Layout, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len().saturating_add(256));
    head(&mut out);
    out.extend_from_slice(body);
    out
}

/// Accessors shared by requests, responses and messages. Each type provides
/// `header_list()`, `body_bytes()` and `body_offset()`.
macro_rules! head_and_body_accessors {
    ($ty:ty) => {
        impl $ty {
            /// The first header named `name`, compared case-insensitively.
            pub fn header(&self, name: &str) -> Option<&str> {
                find_header(self.header_list(), name)
            }

            /// `CSeq` as a signed number (a random int32 in the SDK dialect).
            pub fn cseq(&self) -> Option<i64> {
                self.header("CSeq")?.parse().ok()
            }

            /// `Content-Length` when present and a plain decimal number.
            pub fn content_length(&self) -> Option<usize> {
                let text = self.header("Content-Length")?;
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                text.parse().ok()
            }

            /// False when a `Content-Length` header is present and does not
            /// equal the body length. A disagreement is reported, never fatal.
            pub fn content_length_matches(&self) -> bool {
                match self.header("Content-Length") {
                    None => true,
                    Some(_) => self.content_length() == Some(self.body_bytes().len()),
                }
            }

            /// The parsed `X-WSSE` header: `Ok(None)` when absent, an error only
            /// when present and unparseable.
            pub fn wsse(&self) -> Result<Option<Wsse>, CloudError> {
                self.header("X-WSSE").map(Wsse::parse).transpose()
            }

            /// Whether the body holds anything but whitespace (DH-P2P §2.4).
            pub fn has_body(&self) -> bool {
                !self.body_bytes().iter().all(u8::is_ascii_whitespace)
            }

            /// The XML body, `Ok(None)` when there is no body. Error offsets
            /// count from the start of the datagram.
            pub fn xml_body(&self) -> Result<Option<XmlBody>, CloudError> {
                if !self.has_body() {
                    return Ok(None);
                }
                XmlBody::parse_at(self.body_bytes(), self.body_offset()).map(Some)
            }
        }
    };
}

impl Request {
    fn header_list(&self) -> &[Header] {
        &self.headers
    }
    fn body_bytes(&self) -> &[u8] {
        &self.body
    }
    fn body_offset(&self) -> usize {
        let mut head = Vec::new();
        self.encode_head(&mut head);
        head.len()
    }
}

impl Response {
    fn header_list(&self) -> &[Header] {
        &self.headers
    }
    fn body_bytes(&self) -> &[u8] {
        &self.body
    }
    fn body_offset(&self) -> usize {
        let mut head = Vec::new();
        self.encode_head(&mut head);
        head.len()
    }
}

impl Message {
    /// Decodes one datagram; see [`decode`].
    pub fn decode(bytes: &[u8]) -> Result<Message, CloudError> {
        decode(bytes)
    }

    /// The datagram: the exact inverse of [`decode`].
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.encode(),
            Message::Response(r) => r.encode(),
        }
    }

    /// The headers in wire order.
    pub fn headers(&self) -> &[Header] {
        self.header_list()
    }

    /// The raw body.
    pub fn body(&self) -> &[u8] {
        self.body_bytes()
    }

    pub fn as_request(&self) -> Option<&Request> {
        match self {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        }
    }

    pub fn as_response(&self) -> Option<&Response> {
        match self {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        }
    }

    fn header_list(&self) -> &[Header] {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
    fn body_bytes(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }
    fn body_offset(&self) -> usize {
        match self {
            Message::Request(r) => r.body_offset(),
            Message::Response(r) => r.body_offset(),
        }
    }
}

impl Message {
    /// Where each part of the message sits in its datagram.
    pub fn layout(&self) -> Layout {
        let mut head = Vec::new();
        match self {
            Message::Request(r) => r.encode_head(&mut head),
            Message::Response(r) => r.encode_head(&mut head),
        }
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Message {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Message {
        Message::Response(r)
    }
}

head_and_body_accessors!(Request);
head_and_body_accessors!(Response);
head_and_body_accessors!(Message);
