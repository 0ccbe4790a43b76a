//! Which cloud to try next: session logic, so that the driver only follows
//! the answer (issue 9 item 3).

use super::types::HandshakeError;

/// The index of the cloud to try after `error` at cloud `current` of
/// `count` (tried in order), or `None` to report `error`.
///
/// Only a 404 (the cloud does not know the serial) sends the handshake to
/// the next cloud: other clouds may hold the device. Once a cloud has
/// worked (`worked`), it is the one that knows the device, and the
/// handshake stays with it.
pub fn next_cloud(
    error: &HandshakeError,
    current: usize,
    count: usize,
    worked: bool,
) -> Option<usize> {
    let unknown_here = matches!(error, HandshakeError::NotFound { .. });
    (unknown_here && !worked && current + 1 < count).then_some(current + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::handshake::Stage;
    use std::time::Duration;

    fn not_found() -> HandshakeError {
        HandshakeError::NotFound {
            serial: "X".into(),
            stage: Stage::DeviceProbe,
        }
    }

    #[test]
    fn only_a_404_before_anything_worked_moves_to_the_next_cloud() {
        assert_eq!(next_cloud(&not_found(), 0, 3, false), Some(1));
        assert_eq!(next_cloud(&not_found(), 2, 3, false), None);
        assert_eq!(next_cloud(&not_found(), 0, 3, true), None);
        let timeout = HandshakeError::Timeout {
            stage: Stage::Warmup,
            after: Duration::from_secs(10),
        };
        assert_eq!(next_cloud(&timeout, 0, 3, false), None);
    }
}
