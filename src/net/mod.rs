//! Shared I/O helpers under both tokio drivers (the tunnel in
//! [`crate::tunnel`], the emulator in [`crate::emulator::driver`]) and the
//! commands: fault injection, pcap recording and the live tap, socket
//! buffers, listen addresses, signals and logging set-up. No protocol
//! decisions live here.

pub mod faults;
pub mod listen;
pub mod logging;
pub mod record;
pub mod signal;
pub mod udp;

pub use listen::ListenAddr;
pub use signal::wait_for_signal;

/// Asks for large UDP socket buffers (4 MiB): a burst of datagrams released
/// at once must not overflow the kernel's queue (DF sizes its receive
/// buffer the same way because device resend timers collapse throughput
/// when the kernel drops bursts, FIELD-NOTES §4.2). The kernel may grant
/// less (net.core.rmem_max); that is logged, not fatal.
pub fn enlarge_buffers(socket: &tokio::net::UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    const WANT: usize = 4 * 1024 * 1024;
    if let Err(e) = sock.set_recv_buffer_size(WANT) {
        tracing::debug!("cannot enlarge the UDP receive buffer: {e}");
    }
    if let Err(e) = sock.set_send_buffer_size(WANT) {
        tracing::debug!("cannot enlarge the UDP send buffer: {e}");
    }
}
