//! RTP packetization of H.264 (RFC 3550 header, RFC 6184 payload): single NAL
//! unit packets when a NAL fits, FU-A fragments otherwise, marker bit on the
//! last packet of each access unit. Pure: the caller picks ssrc, first
//! sequence number and first timestamp (random per session).

use crate::emulator::clip::{nal_type, AccessUnit, Clip, FRAME_RATE};

/// Dynamic payload type of the video track, as Dahua uses for H.264.
pub const PAYLOAD_TYPE_H264: u8 = 96;
/// RTP clock of video (RFC 6184 §8.2.1).
pub const CLOCK_RATE: u32 = 90_000;
/// RTP timestamp step between frames: 3600 at 25 fps.
pub const TICKS_PER_FRAME: u32 = CLOCK_RATE / FRAME_RATE;
/// Largest RTP payload we emit: keeps each interleaved frame well under a
/// 1500-byte path and a PTCP data packet.
pub const MAX_RTP_PAYLOAD: usize = 1400;
/// Fixed RTP header size (no CSRC, no extension).
pub const RTP_HEADER_LEN: usize = 12;
/// FU-A NAL unit type (RFC 6184 §5.8).
pub const FU_A: u8 = 28;

/// Turns access units into RTP packets for one session; sequence numbers
/// keep rising (wrapping) across clip loops, never reset.
#[derive(Debug, Clone)]
pub struct H264Packetizer {
    ssrc: u32,
    next_seq: u16,
    first_timestamp: u32,
    max_payload: usize,
}

impl H264Packetizer {
    pub fn new(ssrc: u32, first_seq: u16, first_timestamp: u32) -> Self {
        H264Packetizer {
            ssrc,
            next_seq: first_seq,
            first_timestamp,
            max_payload: MAX_RTP_PAYLOAD,
        }
    }

    /// Sets the largest payload (tests use small values to force FU-A).
    /// Values under 3 are raised to 3: an FU-A needs 2 header bytes and 1
    /// byte of NAL data.
    pub fn with_max_payload(mut self, max_payload: usize) -> Self {
        self.max_payload = max_payload.max(3);
        self
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sequence number the next packet will carry (RTP-Info `seq`).
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// RTP timestamp of the `frame_number`-th frame sent in this session
    /// (counting across loops), wrapping at 2^32 as RFC 3550 expects.
    pub fn timestamp_for(&self, frame_number: u64) -> u32 {
        // 3600 * n mod 2^32 only depends on n mod 2^32: truncating is exact.
        let n = frame_number as u32;
        self.first_timestamp
            .wrapping_add(n.wrapping_mul(TICKS_PER_FRAME))
    }

    /// RTP packets for one access unit made of `nals` (each with its header
    /// byte, no start code), all stamped `timestamp`; the last one has the
    /// marker bit. Empty NALs are skipped.
    pub fn packetize(&mut self, nals: &[&[u8]], timestamp: u32) -> Vec<Vec<u8>> {
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        for nal in nals {
            let Some((&header, body)) = nal.split_first() else {
                continue;
            };
            if nal.len() <= self.max_payload {
                payloads.push(nal.to_vec());
                continue;
            }
            let indicator = (header & 0xe0) | FU_A;
            let kind = header & 0x1f;
            let chunk = self.max_payload - 2;
            let count = body.chunks(chunk).count();
            for (i, piece) in body.chunks(chunk).enumerate() {
                let mut fu_header = kind;
                if i == 0 {
                    fu_header |= 0x80;
                }
                if i + 1 == count {
                    fu_header |= 0x40;
                }
                let mut payload = Vec::with_capacity(piece.len() + 2);
                payload.extend_from_slice(&[indicator, fu_header]);
                payload.extend_from_slice(piece);
                payloads.push(payload);
            }
        }
        let last = payloads.len().saturating_sub(1);
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| self.packet(&payload, timestamp, i == last))
            .collect()
    }

    fn packet(&mut self, payload: &[u8], timestamp: u32, marker: bool) -> Vec<u8> {
        let mut packet = Vec::with_capacity(RTP_HEADER_LEN + payload.len());
        packet.push(0x80); // V=2, no padding, no extension, no CSRC
        packet.push(PAYLOAD_TYPE_H264 | if marker { 0x80 } else { 0 });
        packet.extend_from_slice(&self.next_seq.to_be_bytes());
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&self.ssrc.to_be_bytes());
        packet.extend_from_slice(payload);
        self.next_seq = self.next_seq.wrapping_add(1);
        packet
    }
}

/// The NALs to send for `frame`: the frame's own, with the clip's SPS and PPS
/// inserted (after a leading AUD) before an IDR that lacks them, so a client
/// can start decoding at any IDR.
pub fn nals_to_send<'a>(frame: &'a AccessUnit, clip: &'a Clip) -> Vec<&'a [u8]> {
    let mut nals: Vec<&[u8]> = frame.nals.iter().map(|n| n.data.as_slice()).collect();
    if frame.is_idr && !frame.has_parameter_sets() {
        let at = usize::from(
            frame
                .nals
                .first()
                .is_some_and(|n| n.nal_type() == nal_type::AUD),
        );
        nals.splice(
            at..at,
            [clip.sps().data.as_slice(), clip.pps().data.as_slice()],
        );
    }
    nals
}

/// Wraps a packet in RTSP interleaved framing (RFC 2326 §10.12):
/// `$`, channel, 16-bit big-endian length, packet. `None` if the packet is
/// longer than 65535 bytes (never the case for our packets).
pub fn interleave(channel: u8, packet: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(packet.len()).ok()?;
    let mut framed = Vec::with_capacity(4 + packet.len());
    framed.push(b'$');
    framed.push(channel);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(packet);
    Some(framed)
}
