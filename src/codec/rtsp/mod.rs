//! RTSP/1.0 (RFC 2326) as it travels through a realm: the one reader of
//! its framing and of its `Authorization` header.
//!
//! - [`framing`]: where messages and interleaved `$` frames start and end,
//!   request heads, headers and `Content-Length` bodies, read incrementally
//!   from the front of a growing buffer. Sizes are bounded
//!   ([`MAX_MESSAGE_BYTES`], [`MAX_HEADERS`]); bad input is an error, never
//!   a panic.
//! - [`auth`]: `Authorization` values (Digest and Basic) with the byte range
//!   of every parameter, so redaction blanks exactly the secret bytes, and
//!   the Digest computation (RFC 2617, MD5) a server checks them with.
//! - [`stream`]: a captured stream with holes read leniently, item by item.
//! - [`response`]: the responses a server writes.
//!
//! The emulator's RTSP service, `decode --follow --rtsp`, describe's
//! redaction and the inspector all read RTSP through this module.

pub mod auth;
pub mod framing;
pub mod response;
pub mod stream;

pub use auth::{
    credential_ranges, digest_response, ha1, ha2, is_credentials_header, parse_authorization,
    AuthParam, Credentials, DigestAuthorization, DigestInput, QopAuth,
};
pub use framing::{
    content_length, head_len, header_field, interleaved_header, is_challenge_header, line_ranges,
    looks_like_interleaved, looks_like_message, next_client_frame, parse_request, redact_userinfo,
    userinfo_ranges, ClientFrame, HeaderField, Interleaved, Request, RtspError,
    INTERLEAVED_HEADER_LEN, MAX_HEADERS, MAX_MESSAGE_BYTES, METHODS,
};
pub use response::{reason, Response};
pub use stream::{read_stream, StreamItem};
