//! `dhp2p serve`: many cameras from one file. [`config`] reads and checks
//! the file; [`supervisor`] runs one tunnel driver per camera and applies
//! reloads; [`state`] is what each camera publishes (HTTP, metrics, MQTT
//! subscribe to it); [`http`] and [`metrics`] serve it.

pub mod config;
pub mod http;
pub mod metrics;
pub mod mqtt;
pub mod service;
pub mod state;
pub mod supervisor;

pub use config::{ServeConfig, ServeConfigError};
pub use state::{CameraCommand, CameraHandle, CameraSnapshot, CameraState, CameraStatus, PathKind};
pub use supervisor::{ApplySummary, Supervisor};
