//! Simulated NOR flash for tests (feature `std`): the flash every power-cut test runs on.
//!
//! | property | how |
//! |---|---|
//! | geometry | `W`-byte write unit, `E`-byte sectors (const generics, as `NorFlash` wants), any number of sectors |
//! | erased value | `0xFF` or `0x00` (or any byte), chosen at construction |
//! | writes | must be `W`-aligned and land on erased bytes only (stricter than "only clear bits": it models ECC flash where a word is programmed once) |
//! | erases | whole sectors, aligned |
//! | counters | erases, writes (operations and bytes), reads |
//! | power cut | after operation `n` completes every later erase, write or read fails with [`SimError::PowerCut`] |
//! | torn operation | operation `n` lands partly: a write's prefix lands and the next word gets a random subset of its bits programmed; an erase resets a prefix of the sector and leaves random bits of the next word erased |
//!
//! Operations are erases and writes; reads are not counted as operations.

extern crate std;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use std::vec;
use std::vec::Vec;

/// Why a simulated operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// Power is off (the cut point was reached).
    PowerCut,
    /// Offset or length not aligned to the write or erase unit.
    NotAligned,
    /// Outside the flash.
    OutOfBounds,
    /// A write over bytes that are not erased, at this offset.
    NotErased(u32),
}

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SimError::NotAligned => NorFlashErrorKind::NotAligned,
            SimError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// How the cut-off operation behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Operation `n` (0-based) does not happen at all.
    Before(u64),
    /// Operation `n` lands partly (a torn write or erase), then power is off.
    Tear(u64),
}

/// Counters of what the flash was asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Sector erases (one per sector).
    pub erases: u64,
    /// Write operations.
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Read operations.
    pub reads: u64,
}

/// A NOR flash in memory. See the module documentation.
#[derive(Debug, Clone)]
pub struct SimFlash<const W: usize, const E: usize> {
    mem: Vec<u8>,
    erased: u8,
    ops: u64,
    cut: Option<Cut>,
    dead: bool,
    rng: u64,
    /// What happened so far.
    pub counters: Counters,
    /// Erase count per sector (wear).
    pub wear: Vec<u32>,
}

impl<const W: usize, const E: usize> SimFlash<W, E> {
    /// `sectors` erased sectors of `E` bytes.
    pub fn new(sectors: usize, erased: u8) -> Self {
        Self {
            mem: vec![erased; sectors * E],
            erased,
            ops: 0,
            cut: None,
            dead: false,
            rng: 0x9E37_79B9_7F4A_7C15,
            counters: Counters::default(),
            wear: vec![0; sectors],
        }
    }

    /// The erased value.
    pub fn erased(&self) -> u8 {
        self.erased
    }

    /// The raw contents.
    pub fn mem(&self) -> &[u8] {
        &self.mem
    }

    /// Raw access for test set-up (bypasses every rule and counter).
    pub fn mem_mut(&mut self) -> &mut [u8] {
        &mut self.mem
    }

    /// Operations (erases + writes) done so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Arrange a power cut; `seed` drives what a torn operation leaves.
    pub fn set_cut(&mut self, cut: Option<Cut>, seed: u64) {
        self.cut = cut;
        self.rng = seed | 1;
    }

    /// True once power was cut.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Power back on: the contents stay, the cut is cleared, operation counting restarts at 0.
    pub fn power_on(&mut self) {
        self.dead = false;
        self.cut = None;
        self.ops = 0;
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Decide the fate of the next operation: Ok(true) = do it, Ok(false) = tear it.
    fn next_op(&mut self) -> Result<bool, SimError> {
        if self.dead {
            return Err(SimError::PowerCut);
        }
        let n = self.ops;
        self.ops += 1;
        match self.cut {
            Some(Cut::Before(c)) if n >= c => {
                self.dead = true;
                Err(SimError::PowerCut)
            }
            Some(Cut::Tear(c)) if n >= c => {
                self.dead = true;
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    fn range(&self, offset: u32, len: usize) -> Result<core::ops::Range<usize>, SimError> {
        let o = offset as usize;
        let end = o.checked_add(len).ok_or(SimError::OutOfBounds)?;
        if end > self.mem.len() {
            return Err(SimError::OutOfBounds);
        }
        Ok(o..end)
    }
}

impl<const W: usize, const E: usize> ErrorType for SimFlash<W, E> {
    type Error = SimError;
}

impl<const W: usize, const E: usize> ReadNorFlash for SimFlash<W, E> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        if self.dead {
            return Err(SimError::PowerCut);
        }
        let r = self.range(offset, bytes.len())?;
        bytes.copy_from_slice(&self.mem[r]);
        self.counters.reads += 1;
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl<const W: usize, const E: usize> NorFlash for SimFlash<W, E> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        let (f, t) = (from as usize, to as usize);
        if f % E != 0 || t % E != 0 || f > t {
            return Err(SimError::NotAligned);
        }
        let r = self.range(from, t - f)?;
        for s in f / E..t / E {
            let whole = self.next_op()?;
            let sector = s * E..(s + 1) * E;
            self.counters.erases += 1;
            if let Some(w) = self.wear.get_mut(s) {
                *w += 1;
            }
            if whole {
                self.mem[sector].fill(self.erased);
            } else {
                // Torn: a prefix is erased, then random bits of the next word.
                let cut = (self.rand() % E as u64) as usize;
                let erased = self.erased;
                self.mem[sector.start..sector.start + cut].fill(erased);
                let mask = self.rand().to_le_bytes();
                for (i, m) in mask.iter().enumerate() {
                    if let Some(b) = self.mem.get_mut(sector.start + cut + i) {
                        if sector.contains(&(sector.start + cut + i)) {
                            *b = (*b & !m) | (erased & m);
                        }
                    }
                }
                return Err(SimError::PowerCut);
            }
        }
        debug_assert!(r.end == t);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        if !(offset as usize).is_multiple_of(W) || !bytes.len().is_multiple_of(W) {
            return Err(SimError::NotAligned);
        }
        let r = self.range(offset, bytes.len())?;
        if let Some(i) = self.mem[r.clone()].iter().position(|&b| b != self.erased) {
            return Err(SimError::NotErased(offset + i as u32));
        }
        let whole = self.next_op()?;
        self.counters.writes += 1;
        self.counters.bytes_written += bytes.len() as u64;
        if whole {
            self.mem[r].copy_from_slice(bytes);
            return Ok(());
        }
        // Torn: whole words of a prefix land, then a random subset of the next word's bits.
        let words = bytes.len() / W;
        let landed = (self.rand() % (words as u64 + 1)) as usize * W;
        self.mem[r.start..r.start + landed].copy_from_slice(&bytes[..landed]);
        let end = (landed + W).min(bytes.len());
        for (i, &want) in bytes.iter().enumerate().take(end).skip(landed) {
            let m = self.rand() as u8;
            let b = &mut self.mem[r.start + i];
            *b = (want & m) | (*b & !m);
        }
        Err(SimError::PowerCut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_nor_rules() {
        let mut f: SimFlash<4, 256> = SimFlash::new(4, 0xFF);
        assert_eq!(f.write(1, &[0; 4]), Err(SimError::NotAligned));
        assert_eq!(f.write(0, &[0; 3]), Err(SimError::NotAligned));
        f.write(0, &[1, 2, 3, 4]).unwrap();
        assert_eq!(f.write(0, &[0; 4]), Err(SimError::NotErased(0)));
        assert_eq!(f.erase(0, 100), Err(SimError::NotAligned));
        assert_eq!(f.write(1024, &[0; 4]), Err(SimError::OutOfBounds));
        f.erase(0, 256).unwrap();
        f.write(0, &[0; 4]).unwrap();
        assert_eq!(f.counters.erases, 1);
        assert_eq!(f.counters.writes, 2);
        assert_eq!(f.ops(), 3);
    }

    #[test]
    fn erased_zero_flash() {
        let mut f: SimFlash<8, 512> = SimFlash::new(2, 0x00);
        assert!(f.mem().iter().all(|&b| b == 0));
        f.write(8, &[0xFF; 8]).unwrap();
        assert_eq!(f.write(8, &[0; 8]), Err(SimError::NotErased(8)));
        f.erase(0, 512).unwrap();
        assert!(f.mem()[..512].iter().all(|&b| b == 0));
    }

    #[test]
    fn power_cut_and_tear() {
        let mut f: SimFlash<4, 64> = SimFlash::new(2, 0xFF);
        f.set_cut(Some(Cut::Before(1)), 1);
        f.write(0, &[0; 8]).unwrap();
        assert_eq!(f.write(8, &[0; 8]), Err(SimError::PowerCut));
        assert_eq!(f.mem()[8], 0xFF, "the cut operation does not happen");
        let mut r = [0u8; 4];
        assert_eq!(f.read(0, &mut r), Err(SimError::PowerCut));
        f.power_on();
        f.read(0, &mut r).unwrap();
        // A torn write never lands beyond its prefix + one word, and only programs bits.
        let mut seen_partial = false;
        for seed in 0..200 {
            let mut f: SimFlash<4, 64> = SimFlash::new(1, 0xFF);
            f.set_cut(Some(Cut::Tear(0)), seed);
            assert_eq!(f.write(0, &[0x5A; 16]), Err(SimError::PowerCut));
            let landed = f.mem()[..16].iter().take_while(|&&b| b == 0x5A).count();
            seen_partial |= landed < 16;
            assert!(f.mem()[..16].iter().all(|&b| b & 0x5A == 0x5A));
            assert!(f.mem()[(landed / 4 + 1) * 4..].iter().all(|&b| b == 0xFF));
            // A torn erase leaves the sector neither all old nor necessarily erased.
            let mut g: SimFlash<4, 64> = SimFlash::new(1, 0xFF);
            g.mem_mut().fill(0);
            g.set_cut(Some(Cut::Tear(0)), seed);
            assert_eq!(g.erase(0, 64), Err(SimError::PowerCut));
        }
        assert!(seen_partial);
    }
}
