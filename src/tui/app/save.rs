//! What `w` and `e` save, built as bytes from the retained packets through
//! the decode layer (its pcap writer and follower). The files are written by
//! [`crate::tui::driver::write_outputs`], so the app state does no I/O.

use super::*;

impl App {
    // ------------------------------------------------------------------
    // Saving: the bytes are built here, the files written by the driver

    /// The packets currently shown (after the filter) as a pcap file.
    /// IPv6 datagrams cannot go in the writer's IPv4 frames and are skipped.
    pub fn shown_pcap(&self) -> io::Result<PcapBytes> {
        udp_pcap_bytes(
            self.shown
                .iter()
                .filter_map(|&seq| self.packet(seq))
                .map(|p| &p.record),
        )
    }

    /// The realm `e` exports: the selected one in the realms view, else the
    /// selected packet's.
    pub fn export_target(&self) -> Option<(SessionKey, u32)> {
        match self.view {
            View::Realms => self
                .model
                .realms()
                .get(self.realm_cursor)
                .map(|r| (r.session, r.realm)),
            _ => {
                let packet = self.selected()?;
                Some((packet.record.session(), packet.realm?))
            }
        }
    }

    /// The export target's stream like `decode --follow` (the decode layer's
    /// [`Follower`], fed with the retained packets of the realm's session),
    /// each direction for its own file: `BASE-to-device.bin`,
    /// `BASE-from-device.bin`.
    pub fn export_realm(&self, base: &str) -> Option<RealmExport> {
        let (session, realm) = self.export_target()?;
        let mut follower = Follower::new(realm);
        for packet in self
            .packets
            .iter()
            .filter(|p| p.record.session() == session)
        {
            follower.add(&packet.record);
        }
        let followed = follower.finish();
        Some(RealmExport {
            realm,
            gaps: followed.gaps().len(),
            to_device: OutputFile {
                path: format!("{base}-to-device.bin"),
                bytes: followed.to_device().to_vec(),
            },
            from_device: OutputFile {
                path: format!("{base}-from-device.bin"),
                bytes: followed.from_device().to_vec(),
            },
        })
    }

    /// Saves the app asked for since the last call, for the driver to write.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Tells the user how writing `output` went.
    pub fn output_written(&mut self, output: &Output, result: io::Result<()>) {
        match result {
            Ok(()) => self.say(&output.done),
            Err(e) => self.say_error(&format!("{}: {e}", output.failed)),
        }
    }
}

/// What `e` saves: the realm's two streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmExport {
    pub realm: u32,
    /// Holes in either direction (bytes the capture or the ring lacks).
    pub gaps: usize,
    pub to_device: OutputFile,
    pub from_device: OutputFile,
}

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// A save the user asked for: the files, what to say once they are written,
/// and what a failure is prefixed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub files: Vec<OutputFile>,
    pub done: String,
    pub failed: String,
}
