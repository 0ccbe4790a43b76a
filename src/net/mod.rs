//! tokio drivers: thin loops around the sans-IO state machines.
//! They move datagrams between sockets and `session`/`emulator` types and
//! sleep until the next timeout; no protocol decisions live here.

pub mod faults;
pub mod record;
pub mod tunnel;
pub mod tunnel_command;
