//! Batched UDP I/O for both drivers, through `quinn-udp`: a burst of
//! equal-sized datagrams to one peer leaves in one `sendmsg` with GSO
//! (`UDP_SEGMENT`), and one receive call returns up to [`RECV_SLOTS`]
//! messages (`recvmmsg`), each possibly several datagrams coalesced by GRO.
//! Where the system has neither, quinn-udp falls back to one datagram per
//! call and this module behaves like plain `send_to`/`recv_from`.
//!
//! Every datagram is still handed over on its own: batching is an I/O
//! matter and the state machines never see it.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Messages one receive call may return. Each is up to 64 KiB (a GRO
/// train of up to 64 datagrams of one sender), so a call returns up to a
/// few hundred datagrams.
pub const RECV_SLOTS: usize = 8;

/// The largest UDP payload of one send (IPv4: 65535 − 20 − 8); a GSO train
/// must fit in it.
const MAX_TRAIN: usize = 65_507;

/// A receive slot: room for a whole GRO train.
const SLOT_SIZE: usize = 65_536;

/// A UDP socket with quinn-udp's batched send and receive.
#[derive(Debug)]
pub struct BatchSocket {
    socket: Arc<UdpSocket>,
    state: UdpSocketState,
}

impl BatchSocket {
    /// Takes a bound socket; turns on what the system offers (GRO, packet
    /// info). Fails only when the socket cannot be queried at all.
    pub fn new(socket: UdpSocket) -> io::Result<BatchSocket> {
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        if let Err(e) = allow_fragmentation(&socket) {
            tracing::debug!("cannot restore IP fragmentation on a UDP socket: {e}");
        }
        Ok(BatchSocket {
            socket: Arc::new(socket),
            state,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The plain socket, for senders that go one datagram at a time (the
    /// fault injector). Receiving must go through [`BatchSocket::recv_batch`]:
    /// with GRO on, a plain `recv_from` would see a train as one datagram.
    pub fn socket(&self) -> &Arc<UdpSocket> {
        &self.socket
    }

    /// How many datagrams one send may carry (1 without GSO).
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Sends one datagram.
    pub async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        self.transmit(datagram, None, to).await
    }

    /// Sends `datagrams` to `to`, in order: runs of equal size (the last of
    /// a run may be shorter) go out as one GSO train each, straight from
    /// where they lie. Returns how many were sent; on an error the rest are
    /// not sent (UDP: the peer's retransmission covers them, as for a drop
    /// on the wire).
    pub async fn send_all(&self, datagrams: &Datagrams, to: SocketAddr) -> io::Result<usize> {
        let mut sent = 0;
        while sent < datagrams.len() {
            let first = datagrams.get(sent);
            let run = self.train_length(datagrams, sent);
            if run == 1 {
                self.send_to(first, to).await?;
                sent += 1;
                continue;
            }
            let train = datagrams.span(sent..sent + run);
            match self.transmit(train, Some(first.len()), to).await {
                Ok(()) => {}
                // The kernel or driver refused segmentation (EIO/EINVAL):
                // quinn-udp has turned GSO off; this run goes one by one.
                Err(_) if self.max_segments() == 1 => {
                    for i in sent..sent + run {
                        self.send_to(datagrams.get(i), to).await?;
                    }
                }
                Err(e) => return Err(e),
            }
            sent += run;
        }
        Ok(sent)
    }

    /// How many of `datagrams`, from `from` on, fit in one GSO train.
    fn train_length(&self, datagrams: &Datagrams, from: usize) -> usize {
        let size = datagrams.get(from).len();
        if size == 0 {
            return 1;
        }
        let most = self.max_segments().min(MAX_TRAIN / size).max(1);
        let left = datagrams.len() - from;
        let mut n = 1;
        while n < most.min(left) {
            let len = datagrams.get(from + n).len();
            if len > size || len == 0 {
                break;
            }
            n += 1;
            // A shorter datagram ends a train.
            if len < size {
                break;
            }
        }
        n
    }

    async fn transmit(
        &self,
        contents: &[u8],
        segment_size: Option<usize>,
        to: SocketAddr,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        loop {
            self.socket.writable().await?;
            match self.socket.try_io(Interest::WRITABLE, || {
                self.state
                    .try_send(UdpSockRef::from(&*self.socket), &transmit)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// Waits for datagrams and appends every one received by a single
    /// receive call to `out`, each as its own [`Bytes`] (views of one copy
    /// per message out of `bufs`). Errors are the socket's (an ICMP error
    /// from an earlier send surfaces here; callers treat it as not fatal).
    pub async fn recv_batch(
        &self,
        bufs: &mut RecvBuffers,
        out: &mut Vec<(SocketAddr, Bytes)>,
    ) -> io::Result<usize> {
        let mut meta = [RecvMeta::default(); RECV_SLOTS];
        let messages = loop {
            self.socket.readable().await?;
            let mut slices: Vec<IoSliceMut<'_>> = bufs
                .slots
                .chunks_mut(SLOT_SIZE)
                .map(IoSliceMut::new)
                .collect();
            match self.socket.try_io(Interest::READABLE, || {
                self.state
                    .recv(UdpSockRef::from(&*self.socket), &mut slices, &mut meta)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => break other?,
            }
        };
        let before = out.len();
        for (m, slot) in meta.iter().zip(bufs.slots.chunks(SLOT_SIZE)).take(messages) {
            let len = m.len.min(slot.len());
            let message = Bytes::copy_from_slice(&slot[..len]);
            let stride = if m.stride == 0 { len.max(1) } else { m.stride };
            let mut at = 0;
            while at < len {
                let end = (at + stride).min(len);
                out.push((m.addr, message.slice(at..end)));
                at = end;
            }
            if len == 0 {
                // An empty datagram is still a datagram.
                out.push((m.addr, Bytes::new()));
            }
        }
        Ok(out.len() - before)
    }
}

/// Gives the socket back the system's default for datagrams larger than
/// the path MTU (fragment them), which quinn-udp turns off for QUIC's own
/// path MTU discovery. A 1324-byte PTCP datagram must still leave on a
/// route with a smaller MTU (a VPN at 1280); GSO trains larger than the
/// MTU are then refused by the kernel, quinn-udp turns GSO off, and
/// [`BatchSocket::send_all`] sends the train one datagram at a time.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn allow_fragmentation(socket: &UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name, value) = if socket.local_addr()?.is_ipv4() {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_WANT,
        )
    } else {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_WANT,
        )
    };
    // SAFETY: a valid open socket descriptor (borrowed for the call), and a
    // pointer to a c_int that lives across the call with its true size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn allow_fragmentation(_socket: &UdpSocket) -> io::Result<()> {
    Ok(())
}

/// Datagrams of one flush to one peer, end to end in one buffer: a run of
/// equal sizes is a GSO train where it lies, so sending copies nothing
/// more. Kept by the sender between flushes (cleared, not freed).
#[derive(Debug, Default)]
pub struct Datagrams {
    buf: Vec<u8>,
    /// Where each datagram ends in `buf`.
    ends: Vec<usize>,
}

impl Datagrams {
    pub fn new() -> Datagrams {
        Datagrams::default()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Appends a copy of `datagram`.
    pub fn push(&mut self, datagram: &[u8]) {
        self.buf.extend_from_slice(datagram);
        self.ends.push(self.buf.len());
    }

    /// Appends the datagram `write` appends to the buffer, when it says
    /// it wrote one (a sans-IO `poll_transmit_into`); returns that.
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        let start = self.buf.len();
        if write(&mut self.buf) {
            self.ends.push(self.buf.len());
            true
        } else {
            self.buf.truncate(start);
            false
        }
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    /// Datagram `i` (panics past the end, like a slice).
    pub fn get(&self, i: usize) -> &[u8] {
        &self.buf[self.start(i)..self.ends[i]]
    }

    /// Datagrams `range`, end to end.
    fn span(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[self.start(range.start)..self.ends[range.end - 1]]
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// The receive side's buffers, kept by the receiving task between calls.
pub struct RecvBuffers {
    slots: Vec<u8>,
}

impl RecvBuffers {
    pub fn new() -> RecvBuffers {
        RecvBuffers {
            slots: vec![0u8; SLOT_SIZE * RECV_SLOTS],
        }
    }
}

impl Default for RecvBuffers {
    fn default() -> Self {
        RecvBuffers::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (BatchSocket, BatchSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        (
            BatchSocket::new(a).expect("state"),
            BatchSocket::new(b).expect("state"),
        )
    }

    async fn receive(sock: &BatchSocket, want: usize) -> Vec<Bytes> {
        let mut bufs = RecvBuffers::new();
        let mut got = Vec::new();
        while got.len() < want {
            let mut out = Vec::new();
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                sock.recv_batch(&mut bufs, &mut out),
            )
            .await
            .expect("datagrams in time")
            .expect("recv");
            got.extend(out.into_iter().map(|(_, b)| b));
        }
        got
    }

    #[tokio::test]
    async fn a_burst_arrives_as_the_same_datagrams_in_order() {
        let (tx, rx) = pair().await;
        let to = rx.local_addr().expect("addr");
        // Equal sizes with a shorter last, then odd sizes: trains and singles.
        let mut datagrams: Vec<Vec<u8>> = (0..150u32)
            .map(|i| {
                let mut d = vec![(i % 251) as u8; 1296];
                d[..4].copy_from_slice(&i.to_be_bytes());
                d
            })
            .collect();
        datagrams.push(vec![7; 100]);
        datagrams.push(vec![8; 1500]);
        datagrams.push(vec![9; 20]);
        let packed = packed(&datagrams);
        let gso = tx.max_segments();
        let sent = tx.send_all(&packed, to).await.expect("send");
        assert_eq!(sent, datagrams.len());
        assert_eq!(tx.max_segments(), gso, "the kernel refused a train");
        let got = receive(&rx, datagrams.len()).await;
        assert_eq!(got.len(), datagrams.len());
        for (i, (g, d)) in got.iter().zip(&datagrams).enumerate() {
            assert_eq!(&g[..], &d[..], "datagram {i}");
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_datagram_larger_than_the_mtu_may_still_be_fragmented() {
        use std::os::fd::AsRawFd;
        let (tx, _rx) = pair().await;
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid descriptor; value and len live across the call.
        let rc = unsafe {
            libc::getsockopt(
                tx.socket().as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(
            value,
            libc::IP_PMTUDISC_WANT,
            "quinn-udp's PROBE left in place"
        );
    }

    #[tokio::test]
    async fn trains_stop_at_a_longer_datagram_and_at_the_size_limit() {
        let (tx, _rx) = pair().await;
        if tx.max_segments() == 1 {
            return; // no GSO here: every datagram is its own send
        }
        let big = packed(&vec![vec![0u8; 1296]; 200]);
        assert_eq!(
            tx.train_length(&big, 0),
            tx.max_segments().min(MAX_TRAIN / 1296)
        );
        let mixed = packed(&[vec![0u8; 500], vec![0u8; 500], vec![0u8; 600]]);
        assert_eq!(tx.train_length(&mixed, 0), 2);
        assert_eq!(tx.train_length(&mixed, 2), 1);
        let shorter_last = packed(&[vec![0u8; 500], vec![0u8; 400], vec![0u8; 500]]);
        assert_eq!(tx.train_length(&shorter_last, 0), 2);
    }

    fn packed(datagrams: &[Vec<u8>]) -> Datagrams {
        let mut packed = Datagrams::new();
        for d in datagrams {
            packed.push(d);
        }
        packed
    }

    #[test]
    fn packed_datagrams_keep_their_bounds_and_a_refused_write_leaves_nothing() {
        let mut d = Datagrams::new();
        d.push(b"one");
        assert!(d.push_with(|b| {
            b.extend_from_slice(b"two!");
            true
        }));
        assert!(!d.push_with(|b| {
            b.extend_from_slice(b"half-written");
            false
        }));
        d.push(b"");
        d.push(b"3");
        let all: Vec<&[u8]> = d.iter().collect();
        assert_eq!(all, [&b"one"[..], b"two!", b"", b"3"]);
        assert_eq!(d.span(0..2), b"onetwo!");
        d.clear();
        assert!(d.is_empty());
    }
}
