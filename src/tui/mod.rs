//! `dhp2p inspect`: a live terminal inspector (ratatui).
//!
//! Layered like trippy's TUI: [`app::App`] holds the state and reacts to
//! keys, mouse and records; [`ui::render`] draws it into any ratatui
//! backend; [`driver`] owns the terminal; [`source`] turns a pcap file,
//! stdin or a `--tap` stream into records on a channel. Decoding is the
//! decode layer's ([`crate::decode::describe`]), so the inspector shows
//! exactly the fields `dissect -V` and `decode -V` print.

pub mod app;
pub mod driver;
pub mod filter;
pub mod source;
pub mod tree;
pub mod ui;

use crate::decode::record::Record;

pub use app::{App, Config, SourceState};

/// What a source sends the inspector.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    Record(Record),
    State(SourceState),
}
