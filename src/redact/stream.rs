//! PTCP DATA put back into realm streams, so a secret split across
//! fragments is found, and the edits for each fragment.
//!
//! While observing, every body is kept by (direction, session generation,
//! `sent`): the first copy wins, retransmissions are the same bytes at the
//! same `sent`. [`Streams::finish`] walks each direction in `sent` order,
//! joins the DATA of each realm into contiguous segments (a gap in `sent`
//! ends a segment), scans them and turns the findings into per-fragment
//! edits. Rewriting then looks fragments up by the same key, so a
//! retransmitted fragment is rewritten exactly like its first copy.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use crate::codec::ptcp::{Body, Header};

use super::names::Names;
use super::rtsp::{self, Finding};
use super::{Counts, RedactError};

/// Identifies one PTCP body: direction, generation (a SYN after data starts
/// a new one), `sent`.
pub type PieceKey = (SocketAddr, SocketAddr, u32, u32);

#[derive(Default)]
struct Direction {
    generation: u32,
    has_data: bool,
}

struct Piece {
    body_len: u32,
    /// Realm and payload of a DATA body.
    data: Option<(u32, Vec<u8>)>,
}

/// A run of one realm's bytes without gaps, and where each fragment sits.
#[derive(Default)]
struct Segment {
    bytes: Vec<u8>,
    /// (key, offset in `bytes`, length)
    pieces: Vec<(PieceKey, usize, usize)>,
}

#[derive(Default)]
pub struct Streams {
    directions: HashMap<(SocketAddr, SocketAddr), Direction>,
    pieces: BTreeMap<PieceKey, Piece>,
    edits: HashMap<PieceKey, Vec<(usize, Vec<u8>)>>,
}

impl Streams {
    /// Notes a PTCP body and returns its key. `keep` stores it (observing).
    pub fn note(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        header: &Header,
        body: &Body,
        keep: bool,
    ) -> PieceKey {
        let direction = self.directions.entry((src, dst)).or_default();
        match body {
            Body::Syn if direction.has_data => {
                direction.generation += 1;
                direction.has_data = false;
            }
            Body::Empty | Body::Syn => {}
            _ => direction.has_data = true,
        }
        let key = (src, dst, direction.generation, header.sent);
        if keep && !matches!(body, Body::Empty) && !self.pieces.contains_key(&key) {
            let data = match body {
                Body::Data { realm, payload } => Some((*realm, payload.to_vec())),
                _ => None,
            };
            let body_len = u32::try_from(body.encoded_len()).unwrap_or(u32::MAX);
            self.pieces.insert(key, Piece { body_len, data });
        }
        key
    }

    /// The edits (offset in the DATA payload, bytes) for one fragment.
    pub fn edits(&self, key: &PieceKey) -> &[(usize, Vec<u8>)] {
        self.edits.get(key).map_or(&[], Vec::as_slice)
    }

    /// Scans every realm stream, lets `names` see the addresses in them,
    /// allocates the address stand-ins and computes the edits.
    pub fn finish(
        &mut self,
        names: &mut Names,
        drop_media: bool,
        counts: &mut Counts,
    ) -> Result<(), RedactError> {
        let segments = self.segments();
        let mut scanned = Vec::with_capacity(segments.len());
        for segment in segments {
            let findings = rtsp::scan(&segment.bytes, drop_media);
            for finding in &findings {
                if let Finding::Text { start, end } = finding {
                    let mut copy = segment.bytes[*start..*end].to_vec();
                    names.text_ips_in_place(&mut copy)?;
                }
            }
            scanned.push((segment, findings));
        }
        names.allocate()?;
        for (segment, findings) in scanned {
            let mut replacements = Vec::new();
            for finding in findings
                .iter()
                .filter(|f| matches!(f, Finding::Text { .. }))
            {
                if let Finding::Text { start, end } = finding {
                    let mut copy = segment.bytes[*start..*end].to_vec();
                    let changed = names.text_ips_in_place(&mut copy)?;
                    if changed > 0 {
                        counts.add("address in stream", changed);
                        replacements.push((*start, copy));
                    }
                }
            }
            for finding in findings {
                if let Finding::Replace { start, bytes, kind } = finding {
                    counts.add(kind, 1);
                    replacements.push((start, bytes));
                }
            }
            self.split(&segment, replacements);
        }
        self.pieces.clear();
        // The rewrite pass counts generations again from the start.
        self.directions.clear();
        Ok(())
    }

    /// Every realm's contiguous runs, over all directions and generations.
    fn segments(&mut self) -> Vec<Segment> {
        let mut done = Vec::new();
        let mut open: HashMap<u32, Segment> = HashMap::new();
        let mut previous: Option<(SocketAddr, SocketAddr, u32)> = None;
        let mut expected: Option<u32> = None;
        for (key, piece) in std::mem::take(&mut self.pieces) {
            let (src, dst, generation, sent) = key;
            let same_run = previous == Some((src, dst, generation)) && expected == Some(sent);
            if !same_run {
                done.extend(open.drain().map(|(_, s)| s));
            }
            previous = Some((src, dst, generation));
            expected = Some(sent.wrapping_add(piece.body_len));
            if let Some((realm, payload)) = piece.data {
                let segment = open.entry(realm).or_default();
                segment
                    .pieces
                    .push((key, segment.bytes.len(), payload.len()));
                segment.bytes.extend_from_slice(&payload);
            }
        }
        done.extend(open.into_values());
        done
    }

    /// Cuts stream replacements into per-fragment edits.
    fn split(&mut self, segment: &Segment, replacements: Vec<(usize, Vec<u8>)>) {
        for (start, bytes) in replacements {
            let end = start + bytes.len();
            let first = segment
                .pieces
                .partition_point(|(_, offset, len)| offset + len <= start);
            for (key, offset, len) in &segment.pieces[first..] {
                let (piece_start, piece_end) = (*offset, offset + len);
                if piece_start >= end {
                    break;
                }
                let (from, to) = (start.max(piece_start), end.min(piece_end));
                if from >= to {
                    continue;
                }
                self.edits
                    .entry(*key)
                    .or_default()
                    .push((from - piece_start, bytes[from - start..to - start].to_vec()));
            }
        }
    }
}
