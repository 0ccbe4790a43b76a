//! IPv4 and IPv6 fragment reassembly, bounded in datagrams, bytes,
//! fragments and age so a hostile capture cannot grow it.

use std::collections::HashMap;
use std::net::IpAddr;

/// Datagrams being reassembled at once; the oldest goes first beyond this.
pub(super) const MAX_PENDING_DATAGRAMS: usize = 256;
/// Bytes held for reassembly at once, over all datagrams.
pub(super) const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;
/// Frames after which an incomplete datagram is given up.
pub(super) const FRAGMENT_TIMEOUT_FRAMES: u64 = 20_000;
/// Fragments a single datagram may be built from (8-byte fragments of a
/// 64 KiB datagram would need 8192; real ones need a handful).
pub(super) const MAX_FRAGMENTS: usize = 1024;
/// An IP datagram's payload never exceeds this.
pub(super) const MAX_DATAGRAM: u32 = 65_535;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct FragmentKey {
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    pub(super) id: u32,
    pub(super) proto: u8,
}

#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) data: Vec<u8>,
    /// Byte ranges received, sorted and merged.
    pub(super) have: Vec<(u32, u32)>,
    /// Length of the whole payload, known once the last fragment came.
    pub(super) end: Option<u32>,
    pub(super) fragments: usize,
    pub(super) last_frame: u64,
}

#[derive(Debug, Default)]
pub(super) struct Reassembler {
    pub(super) pending: HashMap<FragmentKey, Pending>,
    pub(super) bytes: usize,
    pub(super) spare: Vec<Vec<u8>>,
    pub(super) last_sweep: u64,
}

pub(super) struct AddOutcome {
    pub(super) complete: Option<Vec<u8>>,
    pub(super) dropped: u64,
}

impl Reassembler {
    pub(super) fn add(
        &mut self,
        frame: u64,
        key: FragmentKey,
        offset: u32,
        more: bool,
        data: &[u8],
    ) -> AddOutcome {
        let mut dropped = self.sweep(frame);
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let end = offset.saturating_add(len);
        let inconsistent = end > MAX_DATAGRAM || (more && len % 8 != 0);
        if inconsistent {
            self.remove(&key);
            return AddOutcome {
                complete: None,
                dropped: dropped + 1,
            };
        }
        if !self.pending.contains_key(&key) {
            while self.pending.len() >= MAX_PENDING_DATAGRAMS
                || self.bytes.saturating_add(end as usize) > MAX_PENDING_BYTES
            {
                if !self.evict_oldest() {
                    break;
                }
                dropped += 1;
            }
            let data = self.spare.pop().unwrap_or_default();
            self.pending.insert(
                key,
                Pending {
                    data,
                    ..Pending::default()
                },
            );
        }
        let Some(entry) = self.pending.get_mut(&key) else {
            return AddOutcome {
                complete: None,
                dropped,
            };
        };
        entry.last_frame = frame;
        entry.fragments += 1;
        let conflicting_end = match entry.end {
            Some(known) => end > known || (!more && end != known),
            None => false,
        };
        if conflicting_end || entry.fragments > MAX_FRAGMENTS {
            self.remove(&key);
            return AddOutcome {
                complete: None,
                dropped: dropped + 1,
            };
        }
        let (start, stop) = (offset as usize, end as usize);
        if entry.data.len() < stop {
            self.bytes += stop - entry.data.len();
            entry.data.resize(stop, 0);
        }
        if let Some(target) = entry.data.get_mut(start..stop) {
            target.copy_from_slice(data);
        }
        if !more {
            entry.end = Some(end);
        }
        insert_range(&mut entry.have, (offset, end));
        let complete = matches!(entry.end, Some(total) if entry.have == [(0, total)]);
        if !complete {
            return AddOutcome {
                complete: None,
                dropped,
            };
        }
        let entry = self.pending.remove(&key);
        let datagram = entry.map(|e| e.data).unwrap_or_default();
        self.bytes = self.bytes.saturating_sub(datagram.len());
        AddOutcome {
            complete: Some(datagram),
            dropped,
        }
    }

    /// Keeps a finished buffer for the next datagram.
    pub(super) fn recycle(&mut self, mut buffer: Vec<u8>) {
        if self.spare.len() < 16 {
            buffer.clear();
            self.spare.push(buffer);
        }
    }

    pub(super) fn remove(&mut self, key: &FragmentKey) -> bool {
        match self.pending.remove(key) {
            Some(entry) => {
                self.bytes = self.bytes.saturating_sub(entry.data.len());
                true
            }
            None => false,
        }
    }

    pub(super) fn evict_oldest(&mut self) -> bool {
        let oldest = self
            .pending
            .iter()
            .min_by_key(|(_, p)| p.last_frame)
            .map(|(k, _)| *k);
        match oldest {
            Some(key) => self.remove(&key),
            None => false,
        }
    }

    /// Gives up datagrams idle for too long; checked every 1024 frames.
    pub(super) fn sweep(&mut self, frame: u64) -> u64 {
        if frame < self.last_sweep.saturating_add(1024) {
            return 0;
        }
        self.last_sweep = frame;
        let before = self.pending.len();
        let mut freed = 0usize;
        self.pending.retain(|_, p| {
            let keep = p.last_frame.saturating_add(FRAGMENT_TIMEOUT_FRAMES) >= frame;
            if !keep {
                freed += p.data.len();
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
        (before - self.pending.len()) as u64
    }

    /// Drops everything; returns how many datagrams were incomplete.
    pub(super) fn clear(&mut self) -> u64 {
        let n = self.pending.len() as u64;
        self.pending.clear();
        self.bytes = 0;
        n
    }
}

/// Adds `range` to a sorted list of disjoint ranges, merging what touches.
pub(super) fn insert_range(ranges: &mut Vec<(u32, u32)>, range: (u32, u32)) {
    if range.0 >= range.1 {
        return;
    }
    let at = ranges.partition_point(|r| r.0 < range.0);
    ranges.insert(at, range);
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for &(start, stop) in ranges.iter() {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(stop),
            _ => merged.push((start, stop)),
        }
    }
    *ranges = merged;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_when_they_touch() {
        let mut ranges = Vec::new();
        insert_range(&mut ranges, (16, 24));
        insert_range(&mut ranges, (0, 8));
        assert_eq!(ranges, [(0, 8), (16, 24)]);
        insert_range(&mut ranges, (8, 16));
        assert_eq!(ranges, [(0, 24)]);
    }
}
