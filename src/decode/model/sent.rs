//! Where a PTCP body sits in its direction's byte stream: the `sent`
//! counter tracker shared by the conversation model and `--follow`.
//!
//! Loss accounting follows FIELD-NOTES §4.2 and docs/PROTOCOL.md §6: `sent` is
//! the position of a body in its direction's body stream (wrapping u32), so a
//! body below the highest end already seen is a resend (or a duplicate when
//! the whole datagram is identical), and a jump past it is a gap. Memory stays
//! bounded: only covered ranges and a window of recent fingerprints are kept.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

use crate::decode::record::SessionKey;

/// Recent bodies whose fingerprints are kept per direction to tell a
/// duplicate from a resend; older positions only count as "already seen".
const RECENT_BODIES: usize = 8192;
/// Most disjoint covered ranges kept per direction (one per open hole).
const MAX_RANGES: usize = 65_536;
/// Copies of one body whose datagram fingerprints are remembered.
const MAX_COPIES: usize = 4;

// ---------------------------------------------------------------------------
// Direction inside a session

/// Which way a datagram went in a session: from `a` to `b` or back, with
/// `a` and `b` as in [`SessionKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Way {
    AtoB,
    BtoA,
}

impl Way {
    pub fn of(key: &SessionKey, src: SocketAddr) -> Way {
        if src == key.a {
            Way::AtoB
        } else {
            Way::BtoA
        }
    }

    pub fn reverse(self) -> Way {
        match self {
            Way::AtoB => Way::BtoA,
            Way::BtoA => Way::AtoB,
        }
    }

    pub fn index(self) -> usize {
        match self {
            Way::AtoB => 0,
            Way::BtoA => 1,
        }
    }

    /// The sending address.
    pub fn from_addr(self, key: &SessionKey) -> SocketAddr {
        match self {
            Way::AtoB => key.a,
            Way::BtoA => key.b,
        }
    }

    /// The receiving address.
    pub fn to_addr(self, key: &SessionKey) -> SocketAddr {
        self.reverse().from_addr(key)
    }
}

// ---------------------------------------------------------------------------
// The byte-counter tracker (shared with `--follow`)

/// How a body relates to what was already seen in its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Continues the stream at its highest end (or is the first body seen).
    InOrder,
    /// Starts beyond the highest end: `missing` bytes before it are not (yet)
    /// in the capture.
    AfterGap { missing: u64 },
    /// Below the highest end, into bytes never seen: reordered, or resent
    /// after a loss upstream of the capture point.
    Late,
    /// Bytes already seen, sent again under a fresh header.
    Retransmission,
    /// A byte-identical copy of a datagram already seen.
    Duplicate,
    /// Partly seen, partly new (different body boundaries).
    Overlap,
    /// Same position and length as a body already seen, different bytes.
    Conflict,
}

impl Arrival {
    /// Whether the body brought bytes the capture had not shown yet.
    pub fn is_new(self) -> bool {
        matches!(
            self,
            Arrival::InOrder | Arrival::AfterGap { .. } | Arrival::Late | Arrival::Overlap
        )
    }
}

#[derive(Debug, Clone)]
struct SeenBody {
    len: i64,
    body_hash: u64,
    datagram_hashes: Vec<u64>,
}

/// One direction of a PTCP session: unwraps the u32 `sent` counter into a
/// monotonic position (wrapping arithmetic, signed 32-bit differences as in
/// docs/PROTOCOL.md §5.7) and remembers which byte ranges were seen.
#[derive(Debug, Clone, Default)]
pub struct SentTracker {
    high: Option<i64>,
    /// Disjoint, merged `[start, end)` ranges of body bytes seen.
    covered: BTreeMap<i64, i64>,
    recent: HashMap<i64, SeenBody>,
    recent_order: VecDeque<i64>,
}

impl SentTracker {
    pub fn new() -> SentTracker {
        SentTracker::default()
    }

    /// The highest end seen (position just past the furthest body).
    pub fn high(&self) -> Option<i64> {
        self.high
    }

    /// The unwrapped position of a `sent` (or `recv`) value of this stream:
    /// the one nearest to the highest end seen.
    pub fn position(&self, counter: u32) -> i64 {
        match self.high {
            None => i64::from(counter),
            Some(high) => {
                let reference = high.rem_euclid(1 << 32) as u32;
                let diff = i64::from(counter.wrapping_sub(reference) as i32);
                high.saturating_add(diff)
            }
        }
    }

    /// Records a non-empty body sent at `sent`. `datagram` is the whole UDP
    /// payload, which tells a duplicate from a resend.
    pub fn observe(&mut self, sent: u32, body: &[u8], datagram: &[u8]) -> (i64, Arrival) {
        let pos = self.position(sent);
        let len = i64::try_from(body.len()).unwrap_or(i64::MAX);
        let end = pos.saturating_add(len);
        let body_hash = fingerprint(body);
        let datagram_hash = fingerprint(datagram);
        let arrival = match self.high {
            None => Arrival::InOrder,
            Some(high) if pos == high => Arrival::InOrder,
            Some(high) if pos > high => Arrival::AfterGap {
                missing: u64::try_from(pos.saturating_sub(high)).unwrap_or(0),
            },
            Some(_) => {
                let unseen = self.uncovered(pos, end);
                if unseen == u64::try_from(len).unwrap_or(0) {
                    Arrival::Late
                } else if unseen > 0 {
                    Arrival::Overlap
                } else {
                    match self.recent.get(&pos) {
                        Some(seen) if seen.len == len && seen.body_hash == body_hash => {
                            if seen.datagram_hashes.contains(&datagram_hash) {
                                Arrival::Duplicate
                            } else {
                                Arrival::Retransmission
                            }
                        }
                        Some(seen) if seen.len == len => Arrival::Conflict,
                        Some(_) => Arrival::Overlap,
                        None => Arrival::Retransmission,
                    }
                }
            }
        };
        self.cover(pos, end);
        self.high = Some(self.high.map_or(end, |h| h.max(end)));
        self.remember(pos, len, body_hash, datagram_hash);
        (pos, arrival)
    }

    /// Records a body of `len` bytes at `sent` by position only (no
    /// fingerprints): what `--follow` needs to find holes. Returns the
    /// unwrapped position.
    pub fn observe_range(&mut self, sent: u32, len: usize) -> i64 {
        let pos = self.position(sent);
        let end = pos.saturating_add(i64::try_from(len).unwrap_or(i64::MAX));
        self.cover(pos, end);
        self.high = Some(self.high.map_or(end, |h| h.max(end)));
        pos
    }

    fn remember(&mut self, pos: i64, len: i64, body_hash: u64, datagram_hash: u64) {
        match self.recent.get_mut(&pos) {
            Some(seen) => {
                if seen.len == len
                    && seen.body_hash == body_hash
                    && !seen.datagram_hashes.contains(&datagram_hash)
                    && seen.datagram_hashes.len() < MAX_COPIES
                {
                    seen.datagram_hashes.push(datagram_hash);
                }
            }
            None => {
                self.recent.insert(
                    pos,
                    SeenBody {
                        len,
                        body_hash,
                        datagram_hashes: vec![datagram_hash],
                    },
                );
                self.recent_order.push_back(pos);
                while self.recent_order.len() > RECENT_BODIES {
                    if let Some(old) = self.recent_order.pop_front() {
                        self.recent.remove(&old);
                    }
                }
            }
        }
    }

    /// Marks `[start, end)` as seen, merging touching ranges.
    fn cover(&mut self, start: i64, end: i64) {
        if end <= start {
            return;
        }
        let mut new_start = start;
        let mut new_end = end;
        let touching: Vec<(i64, i64)> = self
            .covered
            .range(..=end)
            .rev()
            .take_while(|(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            new_start = new_start.min(s);
            new_end = new_end.max(e);
            self.covered.remove(&s);
        }
        self.covered.insert(new_start, new_end);
        while self.covered.len() > MAX_RANGES {
            // Forget the oldest hole: treat everything below as seen.
            let mut first_two = self.covered.iter().take(2).map(|(&s, &e)| (s, e));
            let (Some((s0, _)), Some((s1, e1))) = (first_two.next(), first_two.next()) else {
                break;
            };
            self.covered.remove(&s0);
            self.covered.remove(&s1);
            self.covered.insert(s0, e1);
        }
    }

    /// Bytes in `[from, to)` never seen in this direction.
    pub fn uncovered(&self, from: i64, to: i64) -> u64 {
        if to <= from {
            return 0;
        }
        let mut seen = 0i64;
        for (&s, &e) in self.covered.range(..to).rev() {
            if e <= from {
                break;
            }
            seen = seen.saturating_add(e.min(to).saturating_sub(s.max(from)));
        }
        u64::try_from(to.saturating_sub(from).saturating_sub(seen)).unwrap_or(0)
    }

    /// The holes still open: `[start, end)` ranges between the lowest and the
    /// highest position seen that no body covered.
    pub fn holes(&self) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut previous_end: Option<i64> = None;
        for (&s, &e) in &self.covered {
            if let Some(pe) = previous_end {
                if s > pe {
                    out.push((pe, s));
                }
            }
            previous_end = Some(e);
        }
        out
    }
}

fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}
