//! serve on MQTT: the process's and each camera's availability, its state
//! as JSON, Home Assistant discovery, optional `restart` commands.
//! [`config`] is `[mqtt]`, [`messages`] decides what to publish (no I/O),
//! [`client`] carries it to the broker (rumqttc).

pub mod client;
pub mod config;
pub mod messages;

pub use client::{spawn, MqttTask};
pub use config::MqttConfig;
