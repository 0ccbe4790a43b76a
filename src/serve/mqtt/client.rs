//! The MQTT driver: one rumqttc connection, reconnected with backoff; the
//! cameras' state changes, the running set and a timer turned into
//! [`Publisher`] calls whose messages go out with `try_publish`, so a slow
//! or absent broker never waits anyone. While the broker is away messages
//! are dropped (counted): everything is republished on reconnect.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::config::{hostname, parse_broker, Broker, MqttConfig};
use super::messages::{camera_view, CameraView, Message, Publisher};
use crate::serve::state::{CameraHandle, CameraStatus};
use crate::tunnel::config::CameraConfig;

/// Requests rumqttc holds for the connection before `try_publish` fails.
const QUEUE: usize = 512;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// How long a clean stop may spend publishing `offline`.
const STOP_GRACE: Duration = Duration::from_millis(800);

/// The running publisher.
pub struct MqttTask {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl MqttTask {
    /// Publishes `offline` and disconnects (call before the cameras stop,
    /// so their removal is not taken for a reload).
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for the stop to finish, at most [`STOP_GRACE`].
    pub async fn finish(mut self) {
        self.begin_stop();
        if tokio::time::timeout(STOP_GRACE, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Starts publishing `cameras` (the running set) to the broker of
/// `config`; `configs` gives each camera's ports (for its URLs).
pub fn spawn(
    config: MqttConfig,
    cameras: watch::Receiver<Vec<Arc<CameraHandle>>>,
    configs: watch::Receiver<Vec<CameraConfig>>,
) -> MqttTask {
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        match connect(&config) {
            Ok((broker, options)) => run(config, broker, options, cameras, configs, stop_rx).await,
            Err(e) => tracing::error!("MQTT is off: {e}"),
        }
    });
    MqttTask {
        stop: Some(stop_tx),
        task,
    }
}

/// The connection options: broker, client id, credentials, will, TLS.
fn connect(config: &MqttConfig) -> Result<(Broker, MqttOptions), String> {
    let broker = parse_broker(&config.broker)?;
    let mut options = MqttOptions::new(config.effective_client_id(), &broker.host, broker.port);
    options.set_keep_alive(KEEP_ALIVE);
    options.set_clean_session(true);
    let will = Publisher::new(&config.topic_prefix, "").will();
    options.set_last_will(LastWill::new(
        will.topic,
        will.payload,
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(user) = &config.username {
        let password = match config.credential_source() {
            Some(source) => source
                .read(|k| std::env::var(k).ok())
                .map_err(|e| format!("MQTT password: {e}"))?
                .unwrap_or_default(),
            None => String::new(),
        };
        options.set_credentials(user, password);
    }
    if broker.tls {
        options.set_transport(rumqttc::Transport::tls_with_config(tls_config(config)?));
    }
    Ok((broker, options))
}

/// rustls with ring: the `ca_file`'s certificates, else the system roots.
fn tls_config(config: &MqttConfig) -> Result<rumqttc::TlsConfiguration, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<_, _>>())
                .map_err(|e| format!("MQTT ca_file {}: {e}", path.display()))?;
            roots.add_parsable_certificates(certs);
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        return Err("MQTT over TLS: no CA certificate to trust (set ca_file)".to_owned());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("MQTT TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(rumqttc::TlsConfiguration::Rustls(Arc::new(tls)))
}

/// What the connection task tells the publisher.
enum Link {
    Up,
    Down,
    Incoming(String, Vec<u8>),
}

/// Polls the connection forever: reconnects with backoff (logged once per
/// outage) and forwards connects and incoming publishes.
async fn drive(mut eventloop: EventLoop, broker: Broker, links: mpsc::Sender<Link>) {
    let mut backoff = FIRST_BACKOFF;
    let mut warned = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!("MQTT connected to {broker}");
                backoff = FIRST_BACKOFF;
                warned = false;
                if links.send(Link::Up).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = links.try_send(Link::Incoming(p.topic, p.payload.to_vec()));
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                if warned {
                    tracing::debug!("MQTT broker {broker}: {e}");
                } else {
                    tracing::warn!(
                        "MQTT broker {broker} unreachable ({e}); the cameras go on, reconnecting"
                    );
                    warned = true;
                }
                if links.send(Link::Down).await.is_err() {
                    return;
                }
                let wait = backoff.mul_f64(rand::thread_rng().gen_range(0.8..1.2));
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The publisher's side of the connection.
struct Outbox {
    client: AsyncClient,
    connected: bool,
    /// Messages not handed to the connection (broker away or queue full).
    dropped: u64,
    /// A message was lost while connected: republish everything.
    resync: bool,
}

impl Outbox {
    fn send(&mut self, messages: Vec<Message>) {
        if !self.connected {
            self.dropped += messages.len() as u64;
            return;
        }
        for m in messages {
            if self
                .client
                .try_publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
                .is_err()
            {
                self.dropped += 1;
                self.resync = true;
            }
        }
    }
}

/// Cameras with their URLs, as the publisher sees them now.
fn views(
    cameras: &[Arc<CameraHandle>],
    configs: &watch::Receiver<Vec<CameraConfig>>,
    host: &str,
) -> Vec<CameraView> {
    let configs = configs.borrow();
    let ports: BTreeMap<&str, &CameraConfig> = configs
        .iter()
        .filter_map(|c| Some((c.name.as_deref()?, c)))
        .collect();
    cameras
        .iter()
        .map(|h| {
            let listening = h.status.borrow().listening.clone();
            let spec = ports.get(h.name.as_str()).map(|c| c.ports.as_slice());
            camera_view(h.snapshot(), spec.unwrap_or(&[]), &listening, host)
        })
        .collect()
}

/// One task per camera waiting for its next state change.
fn watch_states(cameras: &[Arc<CameraHandle>]) -> JoinSet<Option<String>> {
    let mut waits = JoinSet::new();
    for h in cameras {
        watch_one(&mut waits, h.name.clone(), h.subscribe());
    }
    waits
}

fn watch_one(
    waits: &mut JoinSet<Option<String>>,
    name: String,
    mut rx: watch::Receiver<CameraStatus>,
) {
    rx.mark_unchanged();
    waits.spawn(async move { rx.changed().await.ok().map(|()| name) });
}

async fn run(
    config: MqttConfig,
    broker: Broker,
    options: MqttOptions,
    mut cameras: watch::Receiver<Vec<Arc<CameraHandle>>>,
    configs: watch::Receiver<Vec<CameraConfig>>,
    mut stop: oneshot::Receiver<()>,
) {
    let (client, eventloop) = AsyncClient::new(options, QUEUE);
    let (link_tx, mut links) = mpsc::channel(64);
    let connection = tokio::spawn(drive(eventloop, broker, link_tx));
    let host = hostname();
    let mut publisher = Publisher::new(&config.topic_prefix, &config.discovery_prefix);
    let mut outbox = Outbox {
        client,
        connected: false,
        dropped: 0,
        resync: false,
    };
    let mut waits = watch_states(&cameras.borrow_and_update());
    let period = Duration::from_secs(config.state_interval);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            link = links.recv() => match link {
                Some(Link::Up) => {
                    outbox.connected = true;
                    if outbox.dropped > 0 {
                        tracing::info!("MQTT: {} updates missed while away; republishing", outbox.dropped);
                        outbox.dropped = 0;
                    }
                    if config.commands {
                        let _ = outbox.client.try_subscribe(publisher.command_filter(), QoS::AtLeastOnce);
                    }
                    let all = views(&cameras.borrow(), &configs, &host);
                    outbox.send(publisher.connected(&all));
                }
                Some(Link::Down) => outbox.connected = false,
                Some(Link::Incoming(topic, payload)) => command(&publisher, &cameras.borrow(), &topic, &payload),
                None => break,
            },
            Ok(()) = cameras.changed() => {
                let set = cameras.borrow_and_update().clone();
                waits = watch_states(&set);
                outbox.send(publisher.cameras_changed(&views(&set, &configs, &host)));
            }
            Some(Ok(changed)) = waits.join_next() => {
                let set = cameras.borrow().clone();
                if let Some(h) = changed.and_then(|name| set.iter().find(|h| h.name == name)) {
                    watch_one(&mut waits, h.name.clone(), h.subscribe());
                    if let Some(view) = views(std::slice::from_ref(h), &configs, &host).pop() {
                        outbox.send(publisher.camera_changed(&view));
                    }
                }
            }
            _ = tick.tick() => {
                let all = views(&cameras.borrow(), &configs, &host);
                let mut messages = publisher.tick(&all, std::time::Instant::now());
                if std::mem::take(&mut outbox.resync) {
                    messages = publisher.connected(&all);
                }
                outbox.send(messages);
            }
        }
    }
    if outbox.connected {
        outbox.send(publisher.stopping());
        let _ = outbox.client.try_disconnect();
        let _ = tokio::time::timeout(STOP_GRACE, connection).await;
    } else {
        connection.abort();
    }
}

/// `PREFIX/CAMERA/set`: handed to the camera's supervisor.
fn command(publisher: &Publisher, cameras: &[Arc<CameraHandle>], topic: &str, payload: &[u8]) {
    match publisher.parse_command(topic, payload) {
        Ok((name, cmd)) => match cameras.iter().find(|h| h.name == name) {
            Some(h) => {
                tracing::info!(camera = %name, "MQTT command {cmd:?}");
                h.command(cmd);
            }
            None => tracing::warn!("MQTT command for unknown camera {name:?}"),
        },
        Err(e) => tracing::warn!("MQTT: {e}"),
    }
}
