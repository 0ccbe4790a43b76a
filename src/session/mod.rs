//! Protocol state machines: plain values that take events and `now` in and
//! give datagrams and events out. No sockets, no tasks, no clock of their own;
//! tokio drivers around them stay thin, and tests drive them with simulated
//! time and lossy simulated links.

pub mod handshake;
pub mod probe;
pub mod ptcp;
pub mod tunnel;
