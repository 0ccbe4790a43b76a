//! Device sessions: starting them, flushing their state machines, the
//! handshake's outcome, session loss, idle close, unbind and shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Semaphore};

use rand::Rng;

use super::{
    sock_index, unix_now, ClientState, Driver, Msg, Session, SessionId, SessionState, Status,
    TunnelError, WriteMsg, IDLE_SESSION_GRACE, MAX_QUEUED_RECEIVES,
};
use crate::net::udp::{BatchSocket, RecvBuffers};
use crate::session::handshake::{
    next_cloud, unbind_request, Established, EstablishedPath, Handshake, HandshakeError,
    HandshakeEvent, Sock,
};
use crate::session::ptcp::DeadReason;
use crate::session::tunnel::{ClientId, TunnelEvent, TunnelSession};

impl Driver {
    /// Closes ready sessions that have carried no realm for
    /// [`IDLE_SESSION_GRACE`], keeping one warm: clients that came and went
    /// must not leave device sessions (and their fds) behind.
    pub(super) async fn close_idle_sessions(&mut self, now: Instant) {
        let binding: Vec<SessionId> = self
            .clients
            .values()
            .filter_map(|c| match c.state {
                ClientState::Binding(sid) | ClientState::Open(sid) => Some(sid),
                ClientState::Held => None,
            })
            .collect();
        let mut ready = 0;
        let mut idle = Vec::new();
        for (sid, s) in self.sessions.iter_mut() {
            let SessionState::Ready { tunnel, .. } = &s.state else {
                continue;
            };
            ready += 1;
            if tunnel.realms() > 0 || binding.contains(sid) {
                s.idle_since = None;
                continue;
            }
            let since = *s.idle_since.get_or_insert(now);
            if now >= since + IDLE_SESSION_GRACE {
                idle.push(*sid);
            }
        }
        let held = self.clients.values().any(|c| c.state == ClientState::Held);
        if held || idle.is_empty() {
            return;
        }
        // The oldest idle session stays when it would be the last one.
        if self.opts.keep_warm && idle.len() >= ready {
            idle.remove(0);
        }
        for sid in idle {
            let Some(s) = self.sessions.remove(&sid) else {
                continue;
            };
            self.rearm(sid);
            self.changed = true;
            tracing::info!(
                "session {sid}: no client for {} s; closing it ({} device sessions left)",
                IDLE_SESSION_GRACE.as_secs(),
                self.sessions.len()
            );
            for t in &s.recv_tasks {
                t.abort();
            }
            self.unbind(&s).await;
        }
    }

    pub(super) async fn start_session(&mut self, now: Instant) {
        let bind = self.opts.udp_bind;
        let mut socks = Vec::new();
        for _ in 0..2 {
            let bound = UdpSocket::bind(SocketAddr::new(bind, 0))
                .await
                .and_then(|s| {
                    crate::net::enlarge_buffers(&s);
                    BatchSocket::new(s)
                });
            match bound {
                Ok(s) => socks.push(Arc::new(s)),
                Err(source) => {
                    self.fatal = Some(TunnelError::Udp { addr: bind, source });
                    return;
                }
            }
        }
        let local = [
            socks[0].local_addr().unwrap_or(SocketAddr::new(bind, 0)),
            socks[1].local_addr().unwrap_or(SocketAddr::new(bind, 0)),
        ];
        let sid = self.next_session;
        self.next_session += 1;
        let Some(cloud) = self.opts.clouds.get(self.cloud).cloned() else {
            return;
        };
        let config = self.opts.target.handshake(&cloud);
        let handshake = Handshake::new(
            config,
            local[0].port(),
            local[1].port(),
            now,
            unix_now(),
            self.rng.gen(),
        );
        // One permit per receive message waiting for the loop (released
        // when the message is dropped): when the loop is behind (a flood, a
        // stalled host) the sockets stop being read, so the kernel's buffer
        // bounds what waits and drops the rest, not this process's memory.
        let room = Arc::new(Semaphore::new(MAX_QUEUED_RECEIVES));
        let spawn_recv = |sock: Sock, s: Arc<BatchSocket>, tx: mpsc::UnboundedSender<Msg>| {
            let room = room.clone();
            tokio::spawn(async move {
                let mut bufs = RecvBuffers::new();
                loop {
                    let Ok(permit) = room.clone().acquire_owned().await else {
                        return;
                    };
                    let mut datagrams = Vec::new();
                    match s.recv_batch(&mut bufs, &mut datagrams).await {
                        Ok(_) => {
                            if tx.send(Msg::Udp(sid, sock, datagrams, permit)).is_err() {
                                return;
                            }
                        }
                        // An ICMP error from an earlier send: not fatal (FIELD-NOTES §4.4).
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            })
        };
        let recv_tasks = [
            spawn_recv(Sock::Device, socks[0].clone(), self.tx.clone()),
            spawn_recv(Sock::Relay, socks[1].clone(), self.tx.clone()),
        ];
        tracing::info!(
            "session {sid}: connecting to {} through the {} cloud ({})",
            self.opts.target.serial,
            cloud.profile.name,
            cloud.addr
        );
        self.sessions.insert(
            sid,
            Session {
                socks: [socks[0].clone(), socks[1].clone()],
                local,
                state: SessionState::Handshaking(Box::new(handshake)),
                lease: None,
                started: now,
                cloud: self.cloud,
                recv_tasks,
                idle_since: None,
                retransmits_counted: 0,
            },
        );
        self.dirty_sessions.insert(sid);
        self.changed = true;
    }

    pub(super) async fn flush_session(&mut self, now: Instant, sid: SessionId) {
        let Some(mut s) = self.sessions.remove(&sid) else {
            return;
        };
        let mut keep = true;
        match &mut s.state {
            SessionState::Handshaking(h) => {
                while let Some(t) = h.poll_transmit(now) {
                    let i = sock_index(t.sock);
                    if s.socks[i].send_to(&t.payload, t.to).await.is_ok() {
                        self.opts.recorder.record_any(s.local[i], t.to, &t.payload);
                    }
                }
                let mut established = None;
                let mut failed = None;
                while let Some(ev) = h.poll_event() {
                    match ev {
                        HandshakeEvent::Stage {
                            stage,
                            elapsed,
                            detail,
                        } => {
                            tracing::info!(
                                "session {sid}: {} after {} ms: {detail}",
                                stage.name(),
                                elapsed.as_millis()
                            );
                        }
                        HandshakeEvent::Established(e) => {
                            self.changed = true;
                            established = Some(*e)
                        }
                        HandshakeEvent::Failed(err) => {
                            keep = false;
                            failed = Some(err);
                        }
                    }
                }
                if let Some(err) = failed {
                    self.handshake_failed(now, sid, s.cloud, err);
                } else if let Some(e) = established {
                    self.established(now, sid, &mut s, e);
                }
            }
            SessionState::Ready { tunnel, sock, peer } => {
                let i = sock_index(*sock);
                // Events first (they queue data: an opened realm's early
                // bytes), then everything they queued goes out now.
                while let Some(ev) = tunnel.poll_event() {
                    // Anything but data changes who is where.
                    self.changed |= !matches!(ev, TunnelEvent::Data { .. });
                    match ev {
                        TunnelEvent::Opened { client, realm } => {
                            let early = self.clients.get_mut(&client).map(|c| {
                                c.state = ClientState::Open(sid);
                                std::mem::take(&mut c.early)
                            });
                            if let Some(early) = early {
                                tracing::info!(
                                    "session {sid}: realm 0x{realm:08x} open for client {client}"
                                );
                                tunnel.client_data(client, early);
                                if self.clients.get(&client).is_some_and(|c| c.eof) {
                                    tunnel.client_closed(now, client);
                                }
                            } else {
                                tunnel.client_closed(now, client);
                            }
                        }
                        TunnelEvent::BindFailed { client, reason } => {
                            self.bind_failed(now, sid, client, reason);
                        }
                        TunnelEvent::Data { client, bytes } => {
                            self.deliver(now, sid, tunnel, client, bytes);
                        }
                        TunnelEvent::Closed {
                            client,
                            bytes_in,
                            bytes_out,
                        } => {
                            tracing::info!(
                                "session {sid}: realm of client {client} closed by the device ({bytes_in} B sent, {bytes_out} B received)"
                            );
                            self.drop_client(client, false);
                        }
                        TunnelEvent::Retired => {
                            tracing::warn!("session {sid}: the device stopped granting realms; retiring this session");
                        }
                        TunnelEvent::Dead(reason) => {
                            keep = false;
                            self.session_died(now, sid, reason, tunnel);
                        }
                    }
                }
                // One flush's datagrams go out together: a burst of DATA
                // leaves as GSO trains.
                let outgoing = &mut self.outgoing;
                outgoing.clear();
                while outgoing.push_with(|buf| tunnel.poll_transmit_into(now, buf)) {}
                for d in outgoing.iter() {
                    self.opts.recorder.record_any(s.local[i], *peer, d);
                }
                if !outgoing.is_empty() {
                    if let Err(e) = s.socks[i].send_all(outgoing, *peer).await {
                        tracing::trace!("session {sid}: send to {peer}: {e}");
                    }
                }
                // Its queues moved: its clients may read more.
                self.dirty_clients.extend(tunnel.clients());
                let resent = tunnel.ptcp_stats().retransmits;
                self.opts.counters.retransmissions.fetch_add(
                    resent.saturating_sub(s.retransmits_counted),
                    Ordering::Relaxed,
                );
                s.retransmits_counted = s.retransmits_counted.max(resent);
                // A retired session without realms has nothing left to do.
                if tunnel.is_retired() && tunnel.realms() == 0 {
                    keep = false;
                }
            }
        }
        if keep {
            self.sessions.insert(sid, s);
        } else {
            self.changed = true;
            for t in &s.recv_tasks {
                t.abort();
            }
            self.unbind(&s).await;
        }
    }

    /// Device bytes for a client: to its writer, or the client goes (it
    /// left, or it stopped reading and would stall the others).
    fn deliver(
        &mut self,
        now: Instant,
        sid: SessionId,
        tunnel: &mut TunnelSession,
        client: ClientId,
        bytes: bytes::Bytes,
    ) {
        let Some(c) = self.clients.get(&client) else {
            return;
        };
        self.opts
            .counters
            .bytes_from_device
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        match c.writer.try_send(WriteMsg::Bytes(bytes)) {
            Ok(()) => {}
            // Its writer ended: the client left (ClientGone follows).
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tunnel.client_closed(now, client);
                self.drop_client(client, true);
            }
            // A client that already closed its side is stopping, not stuck.
            Err(mpsc::error::TrySendError::Full(_)) if c.eof => {
                tracing::info!(
                    "session {sid}: client {client} closed; dropping what it did not read"
                );
                tunnel.client_closed(now, client);
                self.drop_client(client, true);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                // One slow client must not stall the others (FIELD-NOTES §4.5).
                tracing::warn!("session {sid}: client {client} is not reading; closing its realm");
                tunnel.client_closed(now, client);
                self.drop_client(client, true);
            }
        }
    }

    pub(super) fn established(
        &mut self,
        now: Instant,
        sid: SessionId,
        s: &mut Session,
        e: Established,
    ) {
        let peer = e.peer;
        let path = match e.path {
            EstablishedPath::Direct { device, via } => format!("direct {device} ({via})"),
            EstablishedPath::Relay { agent } => format!("relay {agent}"),
        };
        if let Some(port) = e.device_info.as_ref().and_then(|i| i.rtspport) {
            self.remote_rtsp = port;
        }
        let took = now.saturating_duration_since(s.started);
        tracing::info!("session {sid}: ready, {path}, in {} ms", took.as_millis());
        self.opts
            .counters
            .last_handshake_ms
            .store(took.as_millis() as u64, Ordering::Relaxed);
        if !self.ever_ready {
            let cloud = &self.opts.clouds[s.cloud];
            if s.cloud != 0 {
                tracing::info!(
                    "the {} cloud knows {}",
                    cloud.profile.name,
                    self.opts.target.serial
                );
            }
        }
        self.ever_ready = true;
        self.last_failure = None;
        self.last_loss = None;
        self.backoff = Duration::from_secs(1);
        s.lease = e.lease;
        let tunnel = TunnelSession::new(self.opts.tunnel.clone(), e.session, self.rng.gen());
        s.state = SessionState::Ready {
            tunnel: Box::new(tunnel),
            sock: e.sock,
            peer,
        };
        let _ = self.status.send(Status::Ready {
            path,
            remote_rtsp: self.remote_rtsp,
        });
    }

    pub(super) fn handshake_failed(
        &mut self,
        now: Instant,
        sid: SessionId,
        cloud: usize,
        err: HandshakeError,
    ) {
        if let Some(next) = next_cloud(&err, cloud, self.opts.clouds.len(), self.ever_ready) {
            self.cloud = next;
            tracing::warn!(
                "session {sid}: {err}; trying the {} cloud",
                self.opts.clouds[self.cloud].profile.name
            );
            self.next_attempt = now;
            return;
        }
        if !self.ever_ready {
            // Before the tunnel ever worked, say why at once and stop: the
            // user is watching, and retrying cannot fix a wrong serial,
            // missing credentials or an unreachable cloud.
            self.fatal = Some(TunnelError::Handshake(err));
            return;
        }
        tracing::warn!(
            "session {sid}: {err}; retrying in {} s",
            self.backoff.as_secs()
        );
        self.last_failure = Some(err.to_string());
        self.next_attempt = now + self.backoff;
        self.backoff = (self.backoff * 2).min(self.opts.max_backoff);
        let _ = sid;
    }

    pub(super) fn session_died(
        &mut self,
        now: Instant,
        sid: SessionId,
        reason: DeadReason,
        tunnel: &TunnelSession,
    ) {
        let stats = tunnel.ptcp_stats();
        tracing::warn!(
            "session {sid}: lost the device ({reason:?}; {} datagrams in, {} out, {} resent); reconnecting",
            stats.datagrams_in,
            stats.datagrams_out,
            stats.retransmits
        );
        self.last_loss = Some(format!("{reason:?}"));
        let _ = self.status.send(Status::Lost {
            reason: format!("{reason:?}"),
        });
        // Its clients are closed cleanly: their device side is gone.
        let orphaned: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| matches!(c.state, ClientState::Open(s) if s == sid))
            .map(|(id, _)| *id)
            .collect();
        for id in orphaned {
            self.drop_client(id, false);
        }
        // After a silent death the device still holds the old session;
        // give it a moment before competing with it (FIELD-NOTES §4.6).
        self.next_attempt = now + self.backoff;
        self.backoff = (self.backoff * 2).min(self.opts.max_backoff);
    }

    /// Releases the session's relay lease, if any (FIELD-NOTES C12); the
    /// request is built by the session layer.
    pub(super) async fn unbind(&mut self, s: &Session) {
        let (Some(lease), Some(cloud)) = (&s.lease, self.opts.clouds.get(s.cloud)) else {
            return;
        };
        let t = unbind_request(&cloud.profile, lease, unix_now(), self.rng.gen());
        let i = sock_index(t.sock);
        if s.socks[i].send_to(&t.payload, t.to).await.is_ok() {
            self.opts.recorder.record_any(s.local[i], t.to, &t.payload);
        }
    }

    /// DISC every realm, wait briefly for the acknowledgements, unbind.
    pub(super) async fn shutdown(&mut self) {
        tracing::info!("stopping: closing every realm");
        let now = Instant::now();
        for s in self.sessions.values_mut() {
            if let SessionState::Ready { tunnel, .. } = &mut s.state {
                tunnel.close_all(now);
            }
        }
        let deadline = Instant::now() + Duration::from_millis(800);
        loop {
            self.dirty_sessions.extend(self.sessions.keys().copied());
            self.flush(Instant::now()).await;
            let quiet = self.sessions.values().all(|s| match &s.state {
                SessionState::Ready { tunnel, .. } => tunnel.is_quiet(),
                _ => true,
            });
            if quiet || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let sessions = std::mem::take(&mut self.sessions);
        for (sid, s) in sessions {
            if let SessionState::Ready { tunnel, .. } = &s.state {
                let st = tunnel.ptcp_stats();
                tracing::info!(
                    "session {sid}: {} datagrams in, {} out, {} bodies in, {} out, {} resent, {} duplicates, {} out of order",
                    st.datagrams_in, st.datagrams_out, st.bodies_in, st.bodies_out, st.retransmits, st.duplicates_in, st.out_of_order_in
                );
            }
            self.unbind(&s).await;
            for t in &s.recv_tasks {
                t.abort();
            }
        }
        let ids: Vec<ClientId> = self.clients.keys().copied().collect();
        for id in ids {
            self.drop_client(id, false);
        }
    }
}
