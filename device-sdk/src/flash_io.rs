//! [`PatchIo`] over NOR flash.
//!
//! | slot | role | access |
//! |---|---|---|
//! | source region | the running (old) image | read at random |
//! | target region | the update slot | erased and written one sector at a time, in order; read back for target-history matches |
//!
//! The target is written through one `S`-byte buffer (`S` a multiple of the flash's erase
//! and write sizes): a sector is erased just before it is written, so after a power cut the
//! flash holds whole written sectors up to [`FlashPatchIo::flushed`] and the decoder can
//! resume at a checkpoint at or below it ([`FlashPatchIo::resume`]). Reads of target bytes
//! not yet flushed are served from the buffer. The flash's `READ_SIZE` must be 1 (as on
//! internal MCU flash and memory-mapped NOR).

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
    fn end(&self) -> u64 {
        u64::from(self.start) + u64::from(self.len)
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

/// Source slot reads, target slot writes through one `S`-byte sector buffer.
#[derive(Debug)]
pub struct FlashPatchIo<'f, F: NorFlash, const S: usize> {
    flash: &'f mut F,
    source: Region,
    target: Region,
    buf: [u8; S],
    fill: usize,
    flushed: u32,
}

impl<'f, F: NorFlash, const S: usize> FlashPatchIo<'f, F, S> {
    /// Start writing the target region from its first byte.
    pub fn new(
        flash: &'f mut F,
        source: Region,
        target: Region,
    ) -> Result<Self, FlashIoError<F::Error>> {
        Self::resume(flash, source, target, 0)
    }

    /// Continue writing the target at `flushed` (a multiple of `S` that was durable before the
    /// power cut, e.g. a decoder checkpoint's target offset).
    pub fn resume(
        flash: &'f mut F,
        source: Region,
        target: Region,
        flushed: u32,
    ) -> Result<Self, FlashIoError<F::Error>> {
        if F::READ_SIZE != 1 {
            return Err(FlashIoError::Geometry("READ_SIZE must be 1"));
        }
        if S == 0 || S % F::ERASE_SIZE != 0 || S % F::WRITE_SIZE != 0 {
            return Err(FlashIoError::Geometry(
                "the buffer must be a multiple of the erase and write sizes",
            ));
        }
        if target.start as usize % F::ERASE_SIZE != 0 {
            return Err(FlashIoError::Geometry(
                "the target slot must start on a sector",
            ));
        }
        if flushed as usize % S != 0 || flushed > target.len {
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
            source,
            target,
            buf: [0xFF; S],
            fill: 0,
            flushed,
        })
    }

    /// Target bytes durable in flash.
    pub fn flushed(&self) -> u32 {
        self.flushed
    }

    /// Target bytes written so far (durable or buffered).
    pub fn written(&self) -> u64 {
        u64::from(self.flushed) + self.fill as u64
    }

    fn flush_sector(&mut self, len: usize) -> Result<(), FlashIoError<F::Error>> {
        let at = u64::from(self.target.start) + u64::from(self.flushed);
        let write_len = len.div_ceil(F::WRITE_SIZE) * F::WRITE_SIZE;
        let erase_len = len.div_ceil(F::ERASE_SIZE) * F::ERASE_SIZE;
        if u64::from(self.flushed) + erase_len as u64 > u64::from(self.target.len) {
            return Err(FlashIoError::OutOfRange);
        }
        let at = u32::try_from(at).map_err(|_| FlashIoError::OutOfRange)?;
        // The unused tail of a partial sector stays erased.
        for b in self.buf.get_mut(len..).unwrap_or(&mut []) {
            *b = 0xFF;
        }
        self.flash
            .erase(at, at + erase_len as u32)
            .map_err(FlashIoError::Flash)?;
        let data = self.buf.get(..write_len).ok_or(FlashIoError::OutOfRange)?;
        self.flash.write(at, data).map_err(FlashIoError::Flash)?;
        self.flushed += erase_len as u32;
        self.fill = 0;
        Ok(())
    }

    /// Write out the last partial sector (its tail stays erased). Call once after the
    /// decoder finished.
    pub fn finish(&mut self) -> Result<(), FlashIoError<F::Error>> {
        if self.fill > 0 {
            self.flush_sector(self.fill)?;
        }
        Ok(())
    }
}

impl<F: NorFlash, const S: usize> PatchIo for FlashPatchIo<'_, F, S> {
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
            let room = S - self.fill;
            let n = room.min(data.len());
            let (head, rest) = data.split_at(n);
            if let Some(dst) = self.buf.get_mut(self.fill..self.fill + n) {
                dst.copy_from_slice(head);
            }
            self.fill += n;
            data = rest;
            if self.fill == S {
                self.flush_sector(S)?;
            }
        }
        Ok(())
    }

    fn read_target(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        let end = offset.saturating_add(buf.len() as u64);
        if end > self.written() {
            return Err(FlashIoError::OutOfRange);
        }
        let flushed = u64::from(self.flushed);
        // The part already in flash...
        let in_flash = flushed.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (a, b) = buf.split_at_mut(in_flash);
        if !a.is_empty() {
            let at = u32::try_from(u64::from(self.target.start) + offset)
                .map_err(|_| FlashIoError::OutOfRange)?;
            self.flash.read(at, a).map_err(FlashIoError::Flash)?;
        }
        // ...and the part still in the sector buffer.
        if !b.is_empty() {
            let from = (offset + in_flash as u64 - flushed) as usize;
            let src = self
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
    use bluesphere_core::delta::{DeltaDecoder, Params, SmallDeltaDecoder};
    use bluesphere_core::diff::make_delta;
    use bluesphere_core::testkit::{evolve, firmware};
    use embedded_storage::nor_flash::{ErrorType, NorFlashErrorKind, ReadNorFlash};
    use std::vec;
    use std::vec::Vec;

    /// Strict NOR: writes may only clear bits, must be aligned; erases are whole sectors.
    struct Nor {
        mem: Vec<u8>,
        erases: usize,
        writes: usize,
    }

    const ERASE: usize = 4096;
    const WRITE: usize = 8;

    impl ErrorType for Nor {
        type Error = NorFlashErrorKind;
    }
    impl ReadNorFlash for Nor {
        const READ_SIZE: usize = 1;
        fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
            let o = offset as usize;
            let src = self
                .mem
                .get(o..o + bytes.len())
                .ok_or(NorFlashErrorKind::OutOfBounds)?;
            bytes.copy_from_slice(src);
            Ok(())
        }
        fn capacity(&self) -> usize {
            self.mem.len()
        }
    }
    impl NorFlash for Nor {
        const WRITE_SIZE: usize = WRITE;
        const ERASE_SIZE: usize = ERASE;
        fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
            let (f, t) = (from as usize, to as usize);
            if f % ERASE != 0 || t % ERASE != 0 || f > t {
                return Err(NorFlashErrorKind::NotAligned);
            }
            self.mem
                .get_mut(f..t)
                .ok_or(NorFlashErrorKind::OutOfBounds)?
                .fill(0xFF);
            self.erases += (t - f) / ERASE;
            Ok(())
        }
        fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
            let o = offset as usize;
            if o % WRITE != 0 || bytes.len() % WRITE != 0 {
                return Err(NorFlashErrorKind::NotAligned);
            }
            let dst = self
                .mem
                .get_mut(o..o + bytes.len())
                .ok_or(NorFlashErrorKind::OutOfBounds)?;
            for (d, s) in dst.iter_mut().zip(bytes) {
                if *s & !*d != 0 {
                    return Err(NorFlashErrorKind::Other); // would set bits: not erased
                }
                *d &= *s;
            }
            self.writes += 1;
            Ok(())
        }
    }

    const SLOT: u32 = 256 * 1024;

    fn flash_with(old: &[u8]) -> Nor {
        let mut mem = vec![0xFFu8; 2 * SLOT as usize];
        mem[..old.len()].copy_from_slice(old);
        Nor {
            mem,
            erases: 0,
            writes: 0,
        }
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

    #[test]
    fn applies_a_delta_into_the_update_slot() {
        for params in [Params::BEST, Params::SMALL] {
            let old = firmware(5, 150_000);
            let new = evolve(&old, 5);
            let patch = make_delta(&old, &new, params).unwrap();
            let mut flash = flash_with(&old);
            let (src, dst) = regions(old.len());
            {
                let mut io: FlashPatchIo<'_, Nor, 4096> =
                    FlashPatchIo::new(&mut flash, src, dst).unwrap();
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
            }
            let s = SLOT as usize;
            assert_eq!(&flash.mem[s..s + new.len()], &new[..]);
            assert!(flash.mem[s + new.len()..].iter().all(|&b| b == 0xFF));
            assert_eq!(
                &flash.mem[..old.len()],
                &old[..],
                "the running slot is untouched"
            );
            // Exactly one erase per target sector: no wear from the read-back design.
            assert_eq!(flash.erases, new.len().div_ceil(ERASE));
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
            let mut io: FlashPatchIo<'_, Nor, 4096> =
                FlashPatchIo::new(&mut flash, src, dst).unwrap();
            let mut d: SmallDeltaDecoder = DeltaDecoder::new(old.len() as u64);
            let mut rest = &patch[..];
            while !rest.is_empty() {
                let n = d.push(rest, &mut io).unwrap();
                rest = &rest[n..];
                if let Some(cp) = d.checkpoint() {
                    if cps.last() != Some(&cp) && !d.is_done() {
                        assert_eq!(
                            u64::from(io.flushed()),
                            cp.target_offset,
                            "checkpoints are durable"
                        );
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
                let mut io: FlashPatchIo<'_, Nor, 4096> =
                    FlashPatchIo::new(&mut flash, src, dst).unwrap();
                let mut d: SmallDeltaDecoder = DeltaDecoder::new(old.len() as u64);
                let mut rest = &patch[..cp.payload_offset as usize];
                while !rest.is_empty() {
                    let n = d.push(rest, &mut io).unwrap();
                    rest = &rest[n..];
                }
            }
            let junk_at = (SLOT as u64 + cp.target_offset) as usize;
            for b in flash.mem[junk_at..junk_at + 1000].iter_mut() {
                *b &= 0x5A;
            }
            // Resume from the checkpoint alone.
            {
                let mut io: FlashPatchIo<'_, Nor, 4096> =
                    FlashPatchIo::resume(&mut flash, src, dst, cp.target_offset as u32).unwrap();
                let mut d: SmallDeltaDecoder =
                    DeltaDecoder::resume(&patch[..16], old.len() as u64, cp).unwrap();
                d.push_all(&patch[cp.payload_offset as usize..], &mut io)
                    .unwrap();
                d.finish().unwrap();
                io.finish().unwrap();
            }
            let s = SLOT as usize;
            assert_eq!(&flash.mem[s..s + new.len()], &new[..], "resume at {cp:?}");
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
        let r: Result<FlashPatchIo<'_, Nor, 1000>, _> = FlashPatchIo::new(&mut flash, src, dst);
        assert!(matches!(r, Err(FlashIoError::Geometry(_))));
        let bad = Region {
            start: 100,
            len: SLOT,
        };
        let r: Result<FlashPatchIo<'_, Nor, 4096>, _> = FlashPatchIo::new(&mut flash, src, bad);
        assert!(matches!(r, Err(FlashIoError::Geometry(_))));
        // A target larger than the slot is refused when it would overflow, not written past.
        let tiny = Region {
            start: SLOT,
            len: 8192,
        };
        let mut io: FlashPatchIo<'_, Nor, 4096> = FlashPatchIo::new(&mut flash, src, tiny).unwrap();
        let big = vec![0u8; 20_000];
        assert_eq!(io.write_target(&big), Err(FlashIoError::OutOfRange));
        assert!(flash.mem[(SLOT + 8192) as usize..]
            .iter()
            .all(|&b| b == 0xFF));
    }
}
