//! The boot side: the boot step's state machine (install, finish an interrupted swap, revert
//! an unconfirmed image, validate the image to run and fall back), the swap itself, confirm
//! and revert requests.

use super::*;

impl<'a, F: NorFlash, P: Profile> Updater<'a, F, P>
where
    F::Error: core::fmt::Debug,
{
    /// The new image confirms itself (call from the application once it works).
    pub fn confirm(&mut self) -> Result<(), UpdateError<F::Error>> {
        match self.rec.phase {
            Phase::Testing => {
                let active = self.boot_slot();
                let rec = Record {
                    active,
                    ..self.with_phase(Phase::Confirmed)
                };
                self.append(rec)
            }
            Phase::Confirmed => Ok(()),
            _ => Err(UpdateError::Busy(self.status().phase)),
        }
    }

    /// Ask for the old image back while the new one is on trial; the next boot reverts.
    /// Also after the new image confirmed, as long as the other slot still holds the
    /// previous image (a machine whose other member failed to commit takes every member
    /// back: `crate::machine`).
    pub fn request_revert(&mut self) -> Result<(), UpdateError<F::Error>> {
        let confirmed = self.rec.phase == Phase::Confirmed;
        if !(self.rec.phase == Phase::Testing || confirmed) {
            return Err(UpdateError::Busy(self.status().phase));
        }
        if confirmed && !self.slot_valid(1 - self.boot_slot())? {
            return Err(UpdateError::NoValidImage);
        }
        match self.cfg.layout.mode {
            SlotMode::AB => {
                let back = if confirmed {
                    1 - self.boot_slot()
                } else {
                    self.rec.active
                };
                let rec = Record {
                    active: back,
                    ..self.with_phase(Phase::Reverted)
                };
                self.append(rec)
            }
            SlotMode::Swap { .. } => self.record_swap(Phase::Reverting),
        }
    }

    /// The boot step (call first thing at every start): installs a pending update, finishes
    /// an interrupted swap, reverts an image that did not confirm, then validates the image
    /// to run (size and SHA-256 against its trailer). If that image is damaged and the other
    /// slot's is valid, the device falls back to it (A/B: one record; swap: swaps it in) and
    /// [`Status::fell_back_from`] says so. Returns the slot to run, or
    /// [`UpdateError::NoValidImage`].
    pub fn boot(&mut self) -> Result<u8, UpdateError<F::Error>> {
        self.fell_back_from = None;
        self.step_state_machine()?;
        let slot = self.boot_slot();
        if self.slot_valid(slot)? {
            return Ok(slot);
        }
        let other = 1 - slot;
        if !self.slot_valid(other)? {
            return Err(UpdateError::NoValidImage);
        }
        match self.cfg.layout.mode {
            SlotMode::AB => {
                let rec = Record {
                    active: other,
                    ..self.with_phase(Phase::Reverted)
                };
                self.append(rec)?;
            }
            SlotMode::Swap { .. } => {
                self.record_swap(Phase::Reverting)?;
                self.run_swap()?;
            }
        }
        self.fell_back_from = Some(slot);
        Ok(self.boot_slot())
    }

    /// Record that a swap (install or revert) starts: `phase` with the sectors to swap.
    fn record_swap(&mut self, phase: Phase) -> Result<(), UpdateError<F::Error>> {
        let rec = Record {
            extent: self.swap_count()?,
            ..self.with_phase(phase)
        };
        self.append(rec)
    }

    fn step_state_machine(&mut self) -> Result<(), UpdateError<F::Error>> {
        self.session = None;
        let swap = matches!(self.cfg.layout.mode, SlotMode::Swap { .. });
        match self.rec.phase {
            Phase::Pending if !swap => {
                let rec = self.with_phase(Phase::Testing);
                self.append(rec)?;
            }
            Phase::Pending => {
                self.record_swap(Phase::Installing)?;
                self.run_swap()?;
            }
            Phase::Installing | Phase::Reverting => self.run_swap()?,
            Phase::Testing if !swap => {
                let rec = self.with_phase(Phase::Reverted);
                self.append(rec)?;
            }
            Phase::Testing => {
                self.record_swap(Phase::Reverting)?;
                self.run_swap()?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Sectors to swap: those holding either image, plus the trailer sector.
    fn swap_count(&mut self) -> Result<u32, UpdateError<F::Error>> {
        let cap = self.capacity();
        let a = self.image_info(0)?.map_or(cap, |i| i.size);
        let b = self.image_info(1)?.map_or(cap, |i| i.size);
        Ok(a.max(b).div_ceil(F::ERASE_SIZE as u32) + 1)
    }

    fn run_swap(&mut self) -> Result<(), UpdateError<F::Error>> {
        let SlotMode::Swap { scratch } = self.cfg.layout.mode else {
            return Err(UpdateError::Layout("swap in A/B mode"));
        };
        let e = F::ERASE_SIZE as u32;
        let n = self.rec.extent;
        let last = self.slot(0).len / e - 1;
        let (mut i, mut step) = (self.rec.position, self.rec.step);
        while i < n {
            let sector = if i + 1 == n { last } else { i };
            let s0 = self.slot(0).start + sector * e;
            let s1 = self.slot(1).start + sector * e;
            match step {
                0 => self.copy_sector(s1, scratch.start)?,
                1 => self.copy_sector(s0, s1)?,
                _ => self.copy_sector(scratch.start, s0)?,
            }
            let done_step = step + 1;
            if done_step == 3 {
                i += 1;
                step = 0;
            } else {
                step = done_step;
            }
            let rec = Record {
                position: i,
                step,
                ..self.rec
            };
            #[cfg(test)]
            if self.skip_record == Some((i, step)) {
                self.rec = rec;
                continue;
            }
            self.append(rec)?;
        }
        let done = if self.rec.phase == Phase::Installing {
            Phase::Testing
        } else {
            Phase::Reverted
        };
        let rec = self.with_phase(done);
        self.append(rec)
    }

    fn copy_sector(&mut self, from: u32, to: u32) -> Result<(), UpdateError<F::Error>> {
        let e = F::ERASE_SIZE as u32;
        self.flash.erase(to, to + e).map_err(UpdateError::Flash)?;
        let mut buf = [0u8; CHUNK];
        let mut off = 0;
        while off < e {
            let n = (e - off).min(CHUNK as u32);
            let b = buf.get_mut(..n as usize).unwrap_or(&mut []);
            self.flash.read(from + off, b).map_err(UpdateError::Flash)?;
            // Skip chunks that are already erased: fewer writes, same content.
            if b.iter().any(|&x| x != self.cfg.erased) {
                self.flash.write(to + off, b).map_err(UpdateError::Flash)?;
            }
            off += n;
        }
        Ok(())
    }
}
