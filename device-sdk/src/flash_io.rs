//! [`PatchIo`] over NOR flash.
//!
//! | slot | role | access |
//! |---|---|---|
//! | source region | the running (old) image | read at random |
//! | target region | the update slot | each sector erased when the first byte for it is flushed, then written in order through an `S`-byte buffer; read back for target-history matches |
//!
//! The buffer state lives in a [`TargetWriter`] (owned by the caller, so it survives between
//! calls that borrow the flash); a [`FlashPatchIo`] is a short-lived view joining it with the
//! flash and the two regions. After a power cut the target holds every byte below
//! [`TargetWriter::flushed`]; a decoder can restart at any checkpoint on a sector boundary at
//! or below it ([`TargetWriter::resume`]). Reads of target bytes not yet flushed are served
//! from the buffer. `S` only has to be a multiple of the write size: a full sector buffer is
//! not needed. The flash's `READ_SIZE` must be 1 (internal MCU flash, memory-mapped NOR).

use bluesphere_core::delta::PatchIo;
use embedded_storage::nor_flash::NorFlash;

/// A byte range of the flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub start: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Region {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        u64::from(self.start) + u64::from(self.len)
    }

    /// The sub-range `[off, off + len)`, if inside.
    pub fn sub(&self, off: u32, len: u32) -> Option<Region> {
        let end = off.checked_add(len)?;
        (end <= self.len).then_some(Region {
            start: self.start.checked_add(off)?,
            len,
        })
    }
}

/// What went wrong reading or writing the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashIoError<E> {
    /// The flash driver failed.
    Flash(E),
    /// A read or write outside its region (the patch does not fit the slot).
    OutOfRange,
    /// The buffer size or region alignment does not suit the flash geometry.
    Geometry(&'static str),
}

impl<E: core::fmt::Debug> core::fmt::Display for FlashIoError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FlashIoError::Flash(e) => write!(f, "flash error: {e:?}"),
            FlashIoError::OutOfRange => write!(f, "access outside the slot"),
            FlashIoError::Geometry(what) => write!(f, "flash geometry: {what}"),
        }
    }
}

/// The state of writing one target region: a buffer and how far the flash is written and
/// erased. A device owns a `TargetWriter<[u8; S]>` (an `S`-byte buffer); the code that
/// writes through it sees the unsized `TargetWriter` (`&mut TargetWriter<[u8; S]>` coerces),
/// so the buffer size is not a type parameter of everything that writes.
#[derive(Debug, Clone)]
pub struct TargetWriter<B: ?Sized = [u8]> {
    fill: usize,
    flushed: u32,
    erased_to: u32,
    erased: u8,
    buf: B,
}

impl<const S: usize> TargetWriter<[u8; S]> {
    /// Start at the first byte of the target; `erased` is the flash's erased value.
    pub const fn new(erased: u8) -> Self {
        Self::resume(0, erased)
    }

    /// Continue at `at` (a sector boundary that was durable before the power cut); the
    /// sector at `at` is erased again before it is written.
    pub const fn resume(at: u32, erased: u8) -> Self {
        Self {
            buf: [erased; S],
            fill: 0,
            flushed: at,
            erased_to: at,
            erased,
        }
    }
}

impl TargetWriter {
    /// [`TargetWriter::resume`] in place.
    pub fn reset(&mut self, at: u32, erased: u8) {
        self.fill = 0;
        self.flushed = at;
        self.erased_to = at;
        self.erased = erased;
    }

    /// Target bytes durable in flash.
    pub fn flushed(&self) -> u32 {
        self.flushed
    }

    /// Target bytes written so far (durable or buffered).
    pub fn written(&self) -> u64 {
        u64::from(self.flushed) + self.fill as u64
    }
}

/// Source slot reads, target slot writes through a [`TargetWriter`].
#[derive(Debug)]
pub struct FlashPatchIo<'f, F: NorFlash> {
    flash: &'f mut F,
    w: &'f mut TargetWriter,
    source: Region,
    target: Region,
}

impl<'f, F: NorFlash> FlashPatchIo<'f, F> {
    /// Join `flash`, the writer state and the regions; checks the geometry.
    pub fn new(
        flash: &'f mut F,
        w: &'f mut TargetWriter,
        source: Region,
        target: Region,
    ) -> Result<Self, FlashIoError<F::Error>> {
        if F::READ_SIZE != 1 {
            return Err(FlashIoError::Geometry("READ_SIZE must be 1"));
        }
        let size = w.buf.len();
        if size == 0 || !size.is_multiple_of(F::WRITE_SIZE) {
            return Err(FlashIoError::Geometry(
                "the buffer must be a multiple of the write size",
            ));
        }
        if !(target.start as usize).is_multiple_of(F::ERASE_SIZE)
            || !(target.len as usize).is_multiple_of(F::ERASE_SIZE)
        {
            return Err(FlashIoError::Geometry(
                "the target slot must start and end on a sector boundary",
            ));
        }
        if !(w.flushed as usize).is_multiple_of(F::WRITE_SIZE)
            || w.flushed > target.len
            || (w.erased_to == w.flushed && !(w.flushed as usize).is_multiple_of(F::ERASE_SIZE))
        {
            return Err(FlashIoError::Geometry(
                "resume point is not a written sector boundary",
            ));
        }
        let cap = flash.capacity() as u64;
        if source.end() > cap || target.end() > cap {
            return Err(FlashIoError::OutOfRange);
        }
        Ok(Self {
            flash,
            w,
            source,
            target,
        })
    }

    /// Target bytes durable in flash.
    pub fn flushed(&self) -> u32 {
        self.w.flushed
    }

    /// Write `len` bytes of the buffer (padded with the erased value to the write size),
    /// erasing each sector when it is first reached.
    fn flush_buf(&mut self, len: usize) -> Result<(), FlashIoError<F::Error>> {
        let write_len = len.div_ceil(F::WRITE_SIZE) * F::WRITE_SIZE;
        let end = u64::from(self.w.flushed) + write_len as u64;
        if end > u64::from(self.target.len) || write_len > self.w.buf.len() {
            return Err(FlashIoError::OutOfRange);
        }
        let erased = self.w.erased;
        for b in self.w.buf.get_mut(len..write_len).unwrap_or(&mut []) {
            *b = erased;
        }
        // `erased_to` stays on sector boundaries (the target starts on one and resume points
        // are sector boundaries), so each step erases exactly the next sector.
        let e = F::ERASE_SIZE as u32;
        while u64::from(self.w.erased_to) < end {
            let at = self.target.start + self.w.erased_to;
            self.flash.erase(at, at + e).map_err(FlashIoError::Flash)?;
            self.w.erased_to += e;
        }
        let at = self.target.start + self.w.flushed;
        let data = self
            .w
            .buf
            .get(..write_len)
            .ok_or(FlashIoError::OutOfRange)?;
        self.flash.write(at, data).map_err(FlashIoError::Flash)?;
        self.w.flushed += write_len as u32;
        // Keep a non-aligned remainder (only at finish is `len` not aligned).
        self.w.fill -= len.min(self.w.fill);
        if self.w.fill > 0 {
            self.w.buf.copy_within(len..len + self.w.fill, 0);
        }
        Ok(())
    }

    /// Write out the buffered bytes that fill whole write units (a checkpoint wants them
    /// durable); any remainder stays buffered.
    pub fn sync(&mut self) -> Result<(), FlashIoError<F::Error>> {
        let n = self.w.fill / F::WRITE_SIZE * F::WRITE_SIZE;
        if n > 0 {
            self.flush_buf(n)?;
        }
        Ok(())
    }

    /// Write out the last bytes (the tail of the last write unit stays erased). Call once
    /// after the decoder finished.
    pub fn finish(&mut self) -> Result<(), FlashIoError<F::Error>> {
        if self.w.fill > 0 {
            let n = self.w.fill;
            self.flush_buf(n)?;
            self.w.fill = 0;
        }
        Ok(())
    }
}

impl<F: NorFlash> PatchIo for FlashPatchIo<'_, F> {
    type Error = FlashIoError<F::Error>;

    fn read_source(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        let end = offset.saturating_add(buf.len() as u64);
        if end > u64::from(self.source.len) {
            return Err(FlashIoError::OutOfRange);
        }
        let at = u32::try_from(u64::from(self.source.start) + offset)
            .map_err(|_| FlashIoError::OutOfRange)?;
        self.flash.read(at, buf).map_err(FlashIoError::Flash)
    }

    fn write_target(&mut self, mut data: &[u8]) -> Result<(), Self::Error> {
        while !data.is_empty() {
            if self.w.written() + data.len() as u64 > u64::from(self.target.len) {
                return Err(FlashIoError::OutOfRange);
            }
            let size = self.w.buf.len();
            let room = size - self.w.fill;
            let n = room.min(data.len());
            let (head, rest) = data.split_at(n);
            if let Some(dst) = self.w.buf.get_mut(self.w.fill..self.w.fill + n) {
                dst.copy_from_slice(head);
            }
            self.w.fill += n;
            data = rest;
            if self.w.fill == size {
                self.flush_buf(size)?;
            }
        }
        Ok(())
    }

    fn read_target(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        let end = offset.saturating_add(buf.len() as u64);
        if end > self.w.written() {
            return Err(FlashIoError::OutOfRange);
        }
        let flushed = u64::from(self.w.flushed);
        // The part already in flash...
        let in_flash = flushed.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (a, b) = buf.split_at_mut(in_flash);
        if !a.is_empty() {
            let at = u32::try_from(u64::from(self.target.start) + offset)
                .map_err(|_| FlashIoError::OutOfRange)?;
            self.flash.read(at, a).map_err(FlashIoError::Flash)?;
        }
        // ...and the part still in the buffer.
        if !b.is_empty() {
            let from = (offset + in_flash as u64 - flushed) as usize;
            let src = self
                .w
                .buf
                .get(from..from + b.len())
                .ok_or(FlashIoError::OutOfRange)?;
            b.copy_from_slice(src);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::sim::SimFlash;
    use bluesphere_core::delta::{DeltaDecoder, Params, SmallDeltaDecoder};
    use bluesphere_core::diff::make_delta;
    use bluesphere_core::testkit::{evolve, firmware};
    use std::vec;
    use std::vec::Vec;

    const ERASE: usize = 4096;
    type Nor = SimFlash<8, ERASE>;
    const SLOT: u32 = 256 * 1024;

    fn flash_with(old: &[u8]) -> Nor {
        let mut f = Nor::new(2 * SLOT as usize / ERASE, 0xFF);
        f.mem_mut()[..old.len()].copy_from_slice(old);
        f
    }

    fn regions(old_len: usize) -> (Region, Region) {
        (
            Region {
                start: 0,
                len: old_len as u32,
            },
            Region {
                start: SLOT,
                len: SLOT,
            },
        )
    }

    fn apply<const S: usize>(params: Params, old: &[u8], patch: &[u8]) -> Nor {
        let mut flash = flash_with(old);
        let (src, dst) = regions(old.len());
        let mut w = TargetWriter::<[u8; S]>::new(0xFF);
        let mut io = FlashPatchIo::new(&mut flash, &mut w, src, dst).unwrap();
        if params == Params::SMALL {
            let mut d: SmallDeltaDecoder = DeltaDecoder::new(old.len() as u64);
            for c in patch.chunks(100) {
                d.push_all(c, &mut io).unwrap();
            }
            d.finish().unwrap();
        } else {
            let mut d: DeltaDecoder = DeltaDecoder::new(old.len() as u64);
            for c in patch.chunks(100) {
                d.push_all(c, &mut io).unwrap();
            }
            d.finish().unwrap();
        }
        io.finish().unwrap();
        flash
    }

    #[test]
    fn applies_a_delta_into_the_update_slot() {
        for params in [Params::BEST, Params::SMALL] {
            let old = firmware(5, 150_000);
            let new = evolve(&old, 5);
            let patch = make_delta(&old, &new, params).unwrap();
            // A full sector buffer and a small 256-byte one give the same flash.
            for flash in [
                apply::<4096>(params, &old, &patch),
                apply::<256>(params, &old, &patch),
            ] {
                let s = SLOT as usize;
                assert_eq!(&flash.mem()[s..s + new.len()], &new[..]);
                assert!(flash.mem()[s + new.len()..].iter().all(|&b| b == 0xFF));
                assert_eq!(
                    &flash.mem()[..old.len()],
                    &old[..],
                    "the running slot is untouched"
                );
                // Exactly one erase per target sector: no wear from the read-back design.
                assert_eq!(flash.counters.erases, new.len().div_ceil(ERASE) as u64);
            }
        }
    }

    /// Cut power at every checkpoint, then resume from flash contents and the checkpoint.
    #[test]
    fn resumes_after_power_loss_at_each_checkpoint() {
        let old = firmware(6, 200_000);
        let new = evolve(&old, 6);
        let params = Params {
            block_log2: 14,
            ..Params::SMALL
        };
        let patch = make_delta(&old, &new, params).unwrap();
        let (src, dst) = regions(old.len());
        // Run once, recording checkpoints.
        let mut cps = Vec::new();
        {
            let mut flash = flash_with(&old);
            let mut w = TargetWriter::<[u8; 512]>::new(0xFF);
            let mut io = FlashPatchIo::new(&mut flash, &mut w, src, dst).unwrap();
            let mut d: SmallDeltaDecoder = DeltaDecoder::new(old.len() as u64);
            let mut rest = &patch[..];
            while !rest.is_empty() {
                let n = d.push(rest, &mut io).unwrap();
                rest = &rest[n..];
                if let Some(cp) = d.checkpoint() {
                    if cps.last() != Some(&cp) && !d.is_done() {
                        io.sync().unwrap();
                        assert_eq!(u64::from(io.flushed()), cp.target_offset, "synced");
                        cps.push(cp);
                    }
                }
            }
        }
        assert!(cps.len() >= 5, "{} checkpoints", cps.len());
        for cp in cps {
            let mut flash = flash_with(&old);
            // First attempt, interrupted right after the checkpoint: later sectors hold junk.
            {
                let mut w = TargetWriter::<[u8; 512]>::new(0xFF);
                let mut io = FlashPatchIo::new(&mut flash, &mut w, src, dst).unwrap();
                let mut d: SmallDeltaDecoder = DeltaDecoder::new(old.len() as u64);
                let mut rest = &patch[..cp.payload_offset as usize];
                while !rest.is_empty() {
                    let n = d.push(rest, &mut io).unwrap();
                    rest = &rest[n..];
                }
                io.sync().unwrap();
            }
            let junk_at = (SLOT as u64 + cp.target_offset) as usize;
            for b in flash.mem_mut()[junk_at..junk_at + 1000].iter_mut() {
                *b &= 0x5A;
            }
            // Resume from the checkpoint alone.
            {
                let mut w = TargetWriter::<[u8; 512]>::resume(cp.target_offset as u32, 0xFF);
                let mut io = FlashPatchIo::new(&mut flash, &mut w, src, dst).unwrap();
                let mut d: SmallDeltaDecoder =
                    DeltaDecoder::resume(&patch[..16], old.len() as u64, cp).unwrap();
                d.push_all(&patch[cp.payload_offset as usize..], &mut io)
                    .unwrap();
                d.finish().unwrap();
                io.finish().unwrap();
            }
            let s = SLOT as usize;
            assert_eq!(&flash.mem()[s..s + new.len()], &new[..], "resume at {cp:?}");
        }
    }

    #[test]
    fn hashes_the_running_slot() {
        let old = firmware(8, 50_000);
        let mut flash = flash_with(&old);
        let mut buf = [0u8; 1000];
        let region = Region {
            start: 0,
            len: old.len() as u32,
        };
        let h = crate::hash_region(&mut flash, region, &mut buf).unwrap();
        assert_eq!(h, bluesphere_core::package::sha2_digest(&old));
    }

    #[test]
    fn refuses_bad_geometry_and_overflow() {
        let old = firmware(7, 10_000);
        let mut flash = flash_with(&old);
        let (src, dst) = regions(old.len());
        let mut w = TargetWriter::<[u8; 1001]>::new(0xFF);
        let r = FlashPatchIo::new(&mut flash, &mut w, src, dst);
        assert!(matches!(r, Err(FlashIoError::Geometry(_))));
        let bad = Region {
            start: 100,
            len: SLOT,
        };
        let mut w = TargetWriter::<[u8; 4096]>::new(0xFF);
        let r = FlashPatchIo::new(&mut flash, &mut w, src, bad);
        assert!(matches!(r, Err(FlashIoError::Geometry(_))));
        let mut w = TargetWriter::<[u8; 4096]>::resume(100, 0xFF);
        let r = FlashPatchIo::new(&mut flash, &mut w, src, dst);
        assert!(matches!(r, Err(FlashIoError::Geometry(_))));
        // A target larger than the slot is refused before it would overflow.
        let tiny = Region {
            start: SLOT,
            len: 8192,
        };
        let mut w = TargetWriter::<[u8; 4096]>::new(0xFF);
        let mut io = FlashPatchIo::new(&mut flash, &mut w, src, tiny).unwrap();
        let big = vec![0u8; 20_000];
        assert_eq!(io.write_target(&big), Err(FlashIoError::OutOfRange));
        assert!(flash.mem()[(SLOT + 8192) as usize..]
            .iter()
            .all(|&b| b == 0xFF));
    }
}
