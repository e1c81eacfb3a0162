//! The local clients' signed registrations (docs/PROTOCOL.md §8.16: records and directory
//! pages carry them byte for byte), packed in size classes of 16 bytes: each class is a
//! list of 64 KiB chunks cut into equal slots, freed slots reused within the class. A
//! registration costs its length rounded up to 16 and an 8-byte [`Stored`] handle, where
//! one allocation each cost the length plus 8 rounded up to 16, a 24-byte handle, and the
//! holes short-lived allocations left between them in the heap (docs/CAPACITY.md,
//! "Memory per client").

/// Granularity of the size classes, bytes.
const GRAIN: usize = 16;
/// Bytes per chunk (a whole number of slots of its class: at most this).
const CHUNK: usize = 64 * 1024;

/// Where one registration is: its class (from `len`), its slot, and how it splits into
/// signature and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Stored {
    slot: u32,
    /// `signature || payload` length, bytes (at most a datagram).
    len: u16,
    sig_len: u16,
}

/// One size class: slots of `stride` bytes in chunks.
#[derive(Debug, Default)]
struct Class {
    chunks: Vec<Box<[u8]>>,
    /// Slots handed out so far (used or free).
    next: u32,
    free: Vec<u32>,
}

/// The registrations, by size class (class `k` holds lengths `16(k-1)+1 ..= 16k`).
#[derive(Debug, Default)]
pub(super) struct Arena {
    classes: Vec<Class>,
}

impl Arena {
    /// Stores `signature || payload`; `None` when that is empty or longer than 65,535
    /// bytes (a datagram is at most 1,400).
    pub(super) fn store(&mut self, signature: &[u8], payload: &[u8]) -> Option<Stored> {
        let len = u16::try_from(signature.len() + payload.len()).ok()?;
        let sig_len = u16::try_from(signature.len()).ok()?;
        let k = usize::from(len).div_ceil(GRAIN);
        if k == 0 {
            return None;
        }
        if self.classes.len() <= k {
            self.classes.resize_with(k + 1, Class::default);
        }
        let stride = k * GRAIN;
        let per_chunk = (CHUNK / stride).max(1);
        let class = &mut self.classes[k];
        let slot = match class.free.pop() {
            Some(s) => s,
            None => {
                let s = class.next;
                if s as usize % per_chunk == 0 {
                    class
                        .chunks
                        .push(vec![0u8; per_chunk * stride].into_boxed_slice());
                }
                class.next += 1;
                s
            }
        };
        let at = Self::range(slot, stride, per_chunk);
        let bytes = class.chunks.get_mut(at.0)?.get_mut(at.1..at.1 + stride)?;
        bytes[..signature.len()].copy_from_slice(signature);
        bytes[signature.len()..usize::from(len)].copy_from_slice(payload);
        Some(Stored { slot, len, sig_len })
    }

    /// `(chunk, offset)` of `slot` in a class of `stride`-byte slots.
    fn range(slot: u32, stride: usize, per_chunk: usize) -> (usize, usize) {
        let s = slot as usize;
        (s / per_chunk, (s % per_chunk) * stride)
    }

    /// The bytes of `at`: `(signature, payload)` (empty when `at` is not stored here).
    pub(super) fn get(&self, at: Stored) -> (&[u8], &[u8]) {
        let k = usize::from(at.len).div_ceil(GRAIN);
        let stride = k * GRAIN;
        let per_chunk = (CHUNK / stride).max(1);
        let (chunk, off) = Self::range(at.slot, stride, per_chunk);
        let bytes = self
            .classes
            .get(k)
            .and_then(|c| c.chunks.get(chunk))
            .and_then(|c| c.get(off..off + usize::from(at.len)))
            .unwrap_or_default();
        bytes.split_at(usize::from(at.sig_len).min(bytes.len()))
    }

    /// Frees `at` for reuse (its bytes stay until then).
    pub(super) fn free(&mut self, at: Stored) {
        let k = usize::from(at.len).div_ceil(GRAIN);
        if let Some(c) = self.classes.get_mut(k).filter(|_| k > 0) {
            debug_assert!(!c.free.contains(&at.slot), "freed twice");
            c.free.push(at.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_stored_by_size_and_slots_are_reused() {
        let mut a = Arena::default();
        let x = a.store(&[1; 64], &[2; 252]).expect("stored");
        let y = a.store(&[3; 64], &[4; 250]).expect("stored"); // same class: 316 and 314
        let z = a.store(&[5], &[]).expect("stored");
        assert_eq!(a.get(x), (&[1u8; 64][..], &[2u8; 252][..]));
        assert_eq!(a.get(y), (&[3u8; 64][..], &[4u8; 250][..]));
        assert_eq!(a.get(z), (&[5u8][..], &[][..]));
        assert_ne!(x.slot, y.slot);
        a.free(x);
        let w = a.store(&[6; 60], &[7; 250]).expect("stored");
        assert_eq!(w.slot, x.slot, "the freed slot of the class is reused");
        assert_eq!(a.get(w), (&[6u8; 60][..], &[7u8; 250][..]));
        assert_eq!(a.get(y).1, &[4u8; 250][..], "neighbours untouched");
        assert_eq!(a.store(&[], &[]), None);
        // Past one chunk: 64 KiB / 320 = 204 slots a chunk.
        let many: Vec<Stored> = (0..500u16)
            .map(|i| a.store(&i.to_be_bytes(), &[9; 300]).expect("stored"))
            .collect();
        for (i, s) in many.iter().enumerate() {
            assert_eq!(a.get(*s).0, (i as u16).to_be_bytes());
        }
    }
}
