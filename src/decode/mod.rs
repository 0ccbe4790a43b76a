//! Presentation of captured or pasted datagrams: field trees, one-line
//! summaries, JSON and hex dumps.
//!
//! This layer never parses bytes itself. [`describe`] walks the values that
//! [`crate::codec::classify`] decoded and derives byte ranges from the known
//! layouts and the encoded lengths of the decoded parts, so every command that
//! shows a datagram (`dissect` now, `decode` and `inspect` later) shows the
//! same fields under the same names. No sockets and no terminal code here:
//! [`dissect::run`] takes its input and output streams as parameters.

pub mod describe;
pub mod dissect;
pub mod filter;
pub mod follow;
pub mod model;
pub mod pcap;
pub mod record;
pub mod run;
pub mod stats;

pub use describe::{
    describe, describe_with, hex_dump, render_tree, Description, Field, Options, REDACTED,
};
