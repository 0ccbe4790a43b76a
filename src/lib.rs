//! dhp2p: a toolkit for the Dahua P2P protocol (Easy4IPCloud signalling,
//! inverted-STUN hole punching and PTCP, the TCP-like streams carried in UDP).
//!
//! Layers, bottom up (see docs/ARCHITECTURE.md):
//! - [`codec`]: wire formats only. Bytes in, typed values out, and back. No
//!   sockets, no clock, no randomness of its own.
//! - [`session`]: protocol state machines (time passed in, no I/O).
//! - [`net`]: shared I/O helpers (faults, pcap recording, signals, logging).
//! - [`tunnel`] and [`emulator`]: tokio drivers around the state machines.
//! - [`serve`]: many tunnels from one file: supervisor, camera states, HTTP
//!   status and Prometheus metrics.
//! - [`decode`] and [`tui`]: presentation of captured datagrams.
//!
//! The command line (flag parsing) lives in the binary (`src/cmd/`), not here;
//! `tests/layering.rs` checks who may import whom.

pub mod capture;
pub mod codec;
pub mod decode;
pub mod emulator;
pub mod net;
pub mod probe;
pub mod redact;
pub mod serve;
pub mod session;
pub mod tui;
pub mod tunnel;
