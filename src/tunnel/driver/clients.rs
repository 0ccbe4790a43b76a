//! Clients: accepting TCP connections, their reader and writer tasks,
//! read permits, BIND failures, and the messages held clients get.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytes_utils::SegmentedBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

use super::{
    Client, ClientState, Driver, Msg, SessionId, SessionState, WriteMsg, CLIENT_READ,
    MAX_CLIENT_WRITE,
};
use crate::session::tunnel::{BindFailure, ClientId};

impl Driver {
    pub(super) fn accept(
        &mut self,
        now: Instant,
        listener: usize,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        let id = self.next_client;
        self.next_client += 1;
        let (mut read, mut write) = stream.into_split();
        let (writer, mut writes) = mpsc::channel::<WriteMsg>(4096);
        let credits = Arc::new(Semaphore::new(0));
        let tx = self.tx.clone();
        let write_task = tokio::spawn(async move {
            // Bodies queued meanwhile go out in one vectored write, each
            // from the datagram it arrived in (no copy here).
            let mut pending = SegmentedBuf::<Bytes>::new();
            let mut open = true;
            while open {
                let Some(WriteMsg::Bytes(first)) = writes.recv().await else {
                    break;
                };
                pending.push(first);
                while pending.remaining() < MAX_CLIENT_WRITE {
                    match writes.try_recv() {
                        Ok(WriteMsg::Bytes(b)) => pending.push(b),
                        Ok(WriteMsg::Close) => {
                            open = false;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let n = pending.remaining();
                if write.write_all_buf(&mut pending).await.is_err() {
                    let _ = tx.send(Msg::ClientGone(id));
                    return;
                }
                let _ = tx.send(Msg::ClientWritten(id, n));
            }
            let _ = write.shutdown().await;
        });
        let tx = self.tx.clone();
        let sem = credits.clone();
        let read_task = tokio::spawn(async move {
            // Each read lands in its own part of this buffer and travels on
            // as it is: to the realm's queue, then as slices into bodies.
            let mut buf = BytesMut::new();
            loop {
                // Read only what the realm can take (per-realm flow control).
                let Ok(permit) = sem.acquire_many(1).await else {
                    return;
                };
                permit.forget();
                let allowed = 1 + sem.available_permits().min(CLIENT_READ - 1);
                if let Ok(p) = sem.acquire_many((allowed - 1) as u32).await {
                    p.forget();
                }
                buf.reserve(allowed);
                match read.read_buf(&mut (&mut buf).limit(allowed)).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Msg::ClientEof(id));
                        return;
                    }
                    Ok(n) => {
                        sem.add_permits(allowed - n);
                        if tx.send(Msg::ClientBytes(id, buf.split().freeze())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        tracing::info!("client {id} connected from {peer}");
        self.opts
            .counters
            .clients_accepted
            .fetch_add(1, Ordering::Relaxed);
        self.clients.insert(
            id,
            Client {
                listener,
                state: ClientState::Held,
                accepted: now,
                early: Vec::new(),
                avoid: Vec::new(),
                eof: false,
                given: 0,
                consumed: 0,
                credits,
                writer,
                tasks: [read_task, write_task],
            },
        );
        self.regrant(id);
    }

    /// Hands the client's reader as many permits as its realm has room.
    pub(super) fn regrant(&mut self, id: ClientId) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let room = match c.state {
            ClientState::Open(sid) => match self.sessions.get(&sid).map(|s| &s.state) {
                Some(SessionState::Ready { tunnel, .. }) => tunnel.client_capacity(id),
                _ => 0,
            },
            _ => self.opts.tunnel.realm_queue.saturating_sub(c.early.len()),
        };
        let in_flight = c.given.saturating_sub(c.consumed);
        let want = room as u64;
        if want > in_flight {
            let add = (want - in_flight) as usize;
            c.credits.add_permits(add);
            if let Some(c) = self.clients.get_mut(&id) {
                c.given += add as u64;
            }
        }
    }

    pub(super) fn client_finished(&mut self, now: Instant, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.eof = true;
        match c.state {
            ClientState::Open(sid) | ClientState::Binding(sid) => {
                if let Some(SessionState::Ready { tunnel, .. }) =
                    self.sessions.get_mut(&sid).map(|s| &mut s.state)
                {
                    tunnel.client_closed(now, id);
                    // Its DISC (after the queued bytes) goes at this flush.
                    self.dirty_sessions.insert(sid);
                }
                self.drop_client(id, false);
            }
            ClientState::Held => {
                if c.early.is_empty() {
                    // Closed before sending anything: no realm, nothing left behind.
                    self.drop_client(id, false);
                }
            }
        }
    }

    /// A client's BIND did not give it a realm on session `sid`.
    pub(super) fn bind_failed(
        &mut self,
        now: Instant,
        sid: SessionId,
        id: ClientId,
        reason: BindFailure,
    ) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let port = self.remote_port(c.listener);
        let within_hold = now < c.accepted + self.opts.hold_timeout;
        match reason {
            BindFailure::Refused => {
                // The device's answer for that port: retrying elsewhere
                // would get the same answer. The session stays up.
                tracing::warn!(
                    "session {sid}: client {id}: device port {port} refused the connection (DISC); closing the client"
                );
                self.drop_client(id, true);
            }
            BindFailure::TimedOut | BindFailure::SessionEnded if within_hold => {
                // Another session (or a new one) gets a try within the
                // client's hold time; this one is not asked again.
                tracing::info!(
                    "session {sid}: client {id}: no realm for port {port} ({reason:?}); trying another session"
                );
                if let Some(c) = self.clients.get_mut(&id) {
                    c.state = ClientState::Held;
                    c.avoid.push(sid);
                }
                self.changed = true;
            }
            _ => {
                tracing::warn!(
                    "session {sid}: client {id}: the device did not open a realm for port {port} ({reason:?}) within {:?}; closing the client",
                    self.opts.hold_timeout
                );
                self.drop_client(id, true);
            }
        }
    }

    pub(super) fn drop_client(&mut self, id: ClientId, abort: bool) {
        if let Some(c) = self.clients.remove(&id) {
            self.changed = true;
            let _ = c.writer.try_send(WriteMsg::Close);
            c.tasks[0].abort();
            if abort {
                c.tasks[1].abort();
            }
        }
    }

    /// Why a held client found no realm within its hold time, as the
    /// case is: every slot busy, the device lost, or no session came up.
    pub(super) fn why_no_room(&self) -> String {
        let hold = self.opts.hold_timeout;
        let ready = self
            .sessions
            .values()
            .filter(|s| matches!(s.state, SessionState::Ready { .. }))
            .count();
        let full = self.sessions.values().all(|s| match &s.state {
            SessionState::Ready { tunnel, .. } => !tunnel.can_open(),
            SessionState::Handshaking(_) => false,
        });
        if ready > 0 && full && self.sessions.len() >= self.opts.max_sessions {
            return format!(
                "all {} sessions × {} realms are busy (raise --max-sessions or --max-realms)",
                self.opts.max_sessions, self.opts.tunnel.max_realms
            );
        }
        if ready == 0 {
            if let Some(reason) = &self.last_loss {
                return format!(
                    "the device was lost ({reason}) and no new session came up within {hold:?}"
                );
            }
            if let Some(failure) = &self.last_failure {
                return format!("no device session within {hold:?} (last attempt: {failure})");
            }
        }
        format!("no device session within {hold:?}")
    }
}
