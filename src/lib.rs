//! dhp2p: a toolkit for the Dahua P2P protocol (Easy4IPCloud signalling,
//! inverted-STUN hole punching and PTCP, the TCP-like streams carried in UDP).
//!
//! Layers, bottom up (see docs/ARCHITECTURE.md):
//! - [`codec`]: wire formats only. Bytes in, typed values out, and back. No
//!   sockets, no clock, no randomness of its own.
//! - `session` (state machines), `net` (tokio drivers), `emulator`, `decode`,
//!   `tui`: built on the codec, added by later issues.

pub mod capture;
pub mod codec;
pub mod decode;
pub mod emulator;
pub mod net;
pub mod redact;
pub mod session;
pub mod tui;
