pub mod clip;
pub mod rtsp;
