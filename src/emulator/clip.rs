//! The H.264 clip the emulated camera plays: an Annex-B byte stream split into
//! NAL units and access units (frames), with the parameter sets the SDP needs.
//!
//! The clip is our own file (`assets/clip.h264`, made by `tools/make-clip`),
//! but the parser treats it as untrusted: it never panics, bounds every
//! allocation by the input size, and says what is wrong and where.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;

/// The clip embedded in the binary: `tools/make-clip` output, 640x360,
/// 25 fps, 50 frames, IDR every 25 frames, baseline profile.
pub const BUILTIN_CLIP: &[u8] = include_bytes!("../../assets/clip.h264");

/// Frame rate the clip is paced at. Our clips carry no timing the server
/// trusts; `tools/make-clip` encodes at this rate.
pub const FRAME_RATE: u32 = 25;

/// Largest clip file [`Clip::load`] accepts, so a wrong path (a disk image,
/// /dev/zero) fails instead of filling memory.
pub const MAX_CLIP_BYTES: u64 = 64 * 1024 * 1024;

/// H.264 NAL unit types the parser and packetizer care about (ITU-T H.264
/// Table 7-1).
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// Why a byte stream is not a playable clip.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("cannot read clip {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("clip {path} is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error(
        "no Annex-B start code (00 00 01) in the first {scanned} bytes: not a raw .h264 stream"
    )]
    NoStartCode { scanned: usize },
    #[error("NAL unit at offset {offset}: forbidden_zero_bit is set (header byte {header:#04x})")]
    ForbiddenBit { offset: usize, header: u8 },
    #[error("the clip has no sequence parameter set (NAL type 7)")]
    MissingSps,
    #[error("the clip has no picture parameter set (NAL type 8)")]
    MissingPps,
    #[error("the clip has no IDR slice (NAL type 5): a client could never start decoding")]
    MissingIdr,
    #[error("SPS at offset {offset} is {len} bytes, too short for profile_idc/constraints/level_idc (needs 4)")]
    SpsTooShort { offset: usize, len: usize },
    #[error("the first frame (NAL at offset {offset}) is not an IDR: playback must start on a key frame")]
    FirstFrameNotIdr { offset: usize },
}

/// One NAL unit: its bytes (header byte first, no start code) and where it
/// started in the clip, for error messages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NalUnit {
    /// Offset of the NAL header byte in the Annex-B stream.
    pub offset: usize,
    /// The NAL unit, header byte included, trailing zero bytes removed.
    pub data: Vec<u8>,
}

impl NalUnit {
    /// `nal_unit_type`, the low 5 bits of the header byte.
    pub fn nal_type(&self) -> u8 {
        self.data.first().map_or(0, |b| b & 0x1f)
    }

    /// Whether this NAL carries slice data of a picture (types 1..=5).
    pub fn is_vcl(&self) -> bool {
        (1..=5).contains(&self.nal_type())
    }
}

/// One access unit: the NAL units of one picture, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub nals: Vec<NalUnit>,
    /// The picture is an IDR (a client can start decoding here).
    pub is_idr: bool,
}

impl AccessUnit {
    /// Whether the access unit already carries an SPS and a PPS, so the
    /// packetizer need not repeat them in-band.
    pub fn has_parameter_sets(&self) -> bool {
        let has = |t| self.nals.iter().any(|n| n.nal_type() == t);
        has(nal_type::SPS) && has(nal_type::PPS)
    }
}

/// A validated clip: at least one frame, the first an IDR, with an SPS and a
/// PPS for the SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    frames: Vec<AccessUnit>,
    sps: NalUnit,
    pps: NalUnit,
}

impl Clip {
    /// The embedded clip ([`BUILTIN_CLIP`]), parsed once.
    ///
    /// Panics only if the committed asset is broken, which
    /// `tests/emulator_rtsp.rs` checks on every test run.
    pub fn builtin() -> Arc<Clip> {
        static CLIP: OnceLock<Arc<Clip>> = OnceLock::new();
        CLIP.get_or_init(|| {
            Arc::new(
                Clip::parse(BUILTIN_CLIP)
                    .expect("assets/clip.h264 is a valid clip (checked by tests/emulator_rtsp.rs)"),
            )
        })
        .clone()
    }

    /// Reads and parses an Annex-B `.h264` file.
    pub fn load(path: &Path) -> Result<Clip, ClipError> {
        let shown = path.display().to_string();
        let io = |source| ClipError::Io {
            path: shown.clone(),
            source,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_CLIP_BYTES {
            return Err(ClipError::TooLarge {
                path: shown,
                size,
                limit: MAX_CLIP_BYTES,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Clip::parse(&bytes)
    }

    /// Parses an Annex-B byte stream into frames and validates it.
    pub fn parse(stream: &[u8]) -> Result<Clip, ClipError> {
        let nals = split_annex_b(stream)?;
        let sps = nals
            .iter()
            .find(|n| n.nal_type() == nal_type::SPS)
            .cloned()
            .ok_or(ClipError::MissingSps)?;
        if sps.data.len() < 4 {
            return Err(ClipError::SpsTooShort {
                offset: sps.offset,
                len: sps.data.len(),
            });
        }
        let pps = nals
            .iter()
            .find(|n| n.nal_type() == nal_type::PPS)
            .cloned()
            .ok_or(ClipError::MissingPps)?;
        let frames = group_access_units(nals);
        if !frames.iter().any(|f| f.is_idr) {
            return Err(ClipError::MissingIdr);
        }
        match frames.first() {
            Some(first) if first.is_idr => {}
            Some(first) => {
                return Err(ClipError::FirstFrameNotIdr {
                    offset: first.nals.first().map_or(0, |n| n.offset),
                })
            }
            None => return Err(ClipError::MissingIdr),
        }
        Ok(Clip { frames, sps, pps })
    }

    /// The access units, in decode order.
    pub fn frames(&self) -> &[AccessUnit] {
        &self.frames
    }

    /// The first sequence parameter set of the clip.
    pub fn sps(&self) -> &NalUnit {
        &self.sps
    }

    /// The first picture parameter set of the clip.
    pub fn pps(&self) -> &NalUnit {
        &self.pps
    }

    /// SDP `sprop-parameter-sets` (RFC 6184 §8.1): base64 SPS, comma, base64 PPS.
    pub fn sprop_parameter_sets(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        format!(
            "{},{}",
            b64.encode(&self.sps.data),
            b64.encode(&self.pps.data)
        )
    }

    /// SDP `profile-level-id`: SPS bytes 1..4 (profile_idc, constraint flags,
    /// level_idc) in upper-case hex, as Dahua writes it.
    pub fn profile_level_id(&self) -> String {
        // `parse` guarantees at least 4 bytes.
        let bytes = self.sps.data.get(1..4).unwrap_or(&[0, 0, 0]);
        hex::encode_upper(bytes)
    }
}

/// Splits an Annex-B byte stream at its start codes (`00 00 01`, or
/// `00 00 00 01`). Empty NAL units (two start codes in a row) are skipped;
/// trailing zero bytes before the next start code are not part of a NAL.
pub fn split_annex_b(stream: &[u8]) -> Result<Vec<NalUnit>, ClipError> {
    let starts = start_code_ends(stream);
    if starts.is_empty() {
        return Err(ClipError::NoStartCode {
            scanned: stream.len(),
        });
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (i, &begin) in starts.iter().enumerate() {
        // The NAL ends where the next start code (its 3 bytes) begins.
        let end = match starts.get(i + 1) {
            Some(&next_payload) => next_payload.saturating_sub(3),
            None => stream.len(),
        };
        let Some(raw) = stream.get(begin..end) else {
            continue;
        };
        let trimmed_len = raw.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        let Some(data) = raw.get(..trimmed_len) else {
            continue;
        };
        let Some(&header) = data.first() else {
            continue;
        };
        if header & 0x80 != 0 {
            return Err(ClipError::ForbiddenBit {
                offset: begin,
                header,
            });
        }
        nals.push(NalUnit {
            offset: begin,
            data: data.to_vec(),
        });
    }
    Ok(nals)
}

/// Offsets just past each `00 00 01` in the stream (the NAL header bytes).
fn start_code_ends(stream: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut zeros = 0usize;
    for (i, &b) in stream.iter().enumerate() {
        if b == 1 && zeros >= 2 {
            ends.push(i + 1);
        }
        zeros = if b == 0 { zeros.saturating_add(1) } else { 0 };
    }
    ends
}

/// Groups NAL units into access units (H.264 §7.4.1.2.3): a new access unit
/// starts at an AUD, at an SPS/PPS/SEI after the current unit's first slice,
/// or at a slice with `first_mb_in_slice == 0` after one. This works whether
/// or not the stream has AUDs.
fn group_access_units(nals: Vec<NalUnit>) -> Vec<AccessUnit> {
    let mut frames: Vec<AccessUnit> = Vec::new();
    let mut current: Vec<NalUnit> = Vec::new();
    let mut current_has_vcl = false;
    for nal in nals {
        let t = nal.nal_type();
        let starts_new = match t {
            nal_type::AUD => true,
            nal_type::SEI | nal_type::SPS | nal_type::PPS | 14..=18 => current_has_vcl,
            1..=5 => current_has_vcl && first_mb_is_zero(&nal),
            _ => false,
        };
        if starts_new && !current.is_empty() {
            frames.push(finish_access_unit(std::mem::take(&mut current)));
            current_has_vcl = false;
        }
        current_has_vcl |= nal.is_vcl();
        current.push(nal);
    }
    if !current.is_empty() {
        frames.push(finish_access_unit(current));
    }
    // Parameter sets or SEI alone at the end make no picture; fold them away.
    frames.retain(|f| f.nals.iter().any(NalUnit::is_vcl));
    frames
}

fn finish_access_unit(nals: Vec<NalUnit>) -> AccessUnit {
    let is_idr = nals.iter().any(|n| n.nal_type() == nal_type::IDR);
    AccessUnit { nals, is_idr }
}

/// `first_mb_in_slice` is the first ue(v) of the slice header; it is 0 exactly
/// when the first bit after the NAL header byte is 1.
fn first_mb_is_zero(nal: &NalUnit) -> bool {
    nal.data.get(1).is_some_and(|b| b & 0x80 != 0)
}
