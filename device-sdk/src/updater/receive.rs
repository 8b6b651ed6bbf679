//! Receiving an update: admission ([`Updater::begin`]), streaming and patching the payload
//! into the update slot with durable checkpoints ([`Updater::write`]), the target hash and
//! the trailer ([`Updater::finish`]), giving up ([`Updater::abort`]).

use super::*;

impl<'a, F: NorFlash, P: Profile> Updater<'a, F, P>
where
    F::Error: core::fmt::Debug,
{
    /// Verify a package's header, manifest and signature, and start (or resume) receiving
    /// its payload. Nothing is erased unless every check passes.
    pub fn begin(
        &mut self,
        header: &[u8],
        manifest: &[u8],
        signature: &[u8],
    ) -> Result<Begun, UpdateError<F::Error>> {
        if matches!(
            self.rec.phase,
            Phase::Testing | Phase::Installing | Phase::Reverting
        ) {
            return Err(UpdateError::Busy(self.status().phase));
        }
        let prev = self.session.take();
        let running = self.boot_slot();
        let info = self.image_info(running)?;
        let installed = info.as_ref().map(Installed::from);
        let installed = installed.as_slice();
        let scope = if self.cfg.member {
            Scope::Only(self.cfg.component)
        } else {
            Scope::All
        };
        let capacity = u64::from(self.capacity());
        admit_scoped(
            header,
            manifest,
            signature,
            self.cfg.keys,
            &self.cfg.identity,
            installed,
            &|_| Some(capacity),
            scope,
        )
        .map_err(UpdateError::Rejected)?;
        let unsupported = Rejection {
            reason: Reject::Unsupported,
            component: 0,
        };
        let h = Header::parse(header).map_err(|_| unsupported)?;
        let m = Manifest::parse(manifest, &h).map_err(|_| unsupported)?;
        let c = match m.components().next() {
            _ if self.cfg.member => match m.component(self.cfg.component) {
                Some(c) => c,
                None => return Err(UpdateError::Rejected(unsupported)),
            },
            Some(Ok(c)) if m.component_count == 1 && c.name == self.cfg.component => c,
            _ => return Err(UpdateError::Rejected(unsupported)),
        };
        let new_info = ImageInfo::new(
            c.name,
            c.to_version,
            c.target_size as u32,
            c.security_counter,
            c.target_sha256,
        )
        .ok_or(unsupported)?;
        let mut hasher = Sha256::new();
        hasher.update(header);
        hasher.update(manifest);
        let digest: [u8; 32] = hasher.finalize().into();
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&digest[..8]);

        if let (PayloadKind::Delta, Some(i)) = (c.kind, info) {
            // The trailer matched the delta's base; the bytes must too (damaged flash).
            if self.hash_slot(running, i.size)? != i.sha256 {
                return Err(UpdateError::Rejected(Rejection {
                    reason: Reject::InstalledCorrupt,
                    component: 0,
                }));
            }
        }
        let payload_len = u32::try_from(c.payload_size).map_err(|_| unsupported)?;
        let delta = c.codec == Codec::Bsd3;
        let source = if c.kind == PayloadKind::Delta {
            self.slot(running)
                .sub(0, c.source_size as u32)
                .ok_or(unsupported)?
        } else {
            Region {
                start: self.slot(running).start,
                len: 0,
            }
        };
        let target = self
            .slot(self.update_slot())
            .sub(0, self.capacity())
            .ok_or(UpdateError::Layout("slot"))?;
        let mut s = Session {
            tag,
            info: new_info,
            delta,
            payload_len,
            source,
            target,
            next: 0,
            recorded: 0,
        };
        if let Some(p) = prev.filter(|p| p.tag == tag && self.rec.phase == Phase::Receiving) {
            // The same package while its session is alive (the link dropped, the device
            // did not): continue exactly where the RAM state is.
            self.session = Some(p);
            return Ok(Begun {
                resume_offset: p.next,
                payload_len,
            });
        }
        let same = self.rec.tag == tag;
        if same && self.rec.phase == Phase::Pending {
            // Already received and verified: nothing to send.
            return Ok(Begun {
                resume_offset: payload_len,
                payload_len,
            });
        }
        if same
            && self.rec.phase == Phase::Receiving
            && self.rec.position > 0
            && self.resume_session(&mut s)
        {
            self.session = Some(s);
            return Ok(Begun {
                resume_offset: s.next,
                payload_len,
            });
        }
        let rec = Record {
            phase: Phase::Receiving,
            tag,
            ..self.with_phase(Phase::Receiving)
        };
        self.append(rec)?;
        let (writer, decoder) = self.ws.split();
        decoder.reset(u64::from(source.len));
        writer.reset(0, self.cfg.erased);
        self.session = Some(s);
        Ok(Begun {
            resume_offset: 0,
            payload_len,
        })
    }

    /// Set the workspace up to continue from the journal's checkpoint; false if it does not
    /// fit this package (then the update starts over).
    fn resume_session(&mut self, s: &mut Session) -> bool {
        let r = self.rec;
        let erased = self.cfg.erased;
        if s.delta {
            let [lclp, ptr_ht, block_log2, window_log2] = r.stream_params;
            let (lc, lp) = (lclp & 0x0F, lclp >> 4);
            let (ptr_log2, ht_log2) = (ptr_ht & 0x0F, (ptr_ht >> 4) + 8);
            let h = StreamHeader {
                params: Params {
                    lc,
                    lp,
                    block_log2,
                    window_log2,
                    ptr_log2,
                    ht_log2,
                },
                target_size: s.info.size,
                source_size: s.source.len,
            };
            if h.params.validate().is_err() {
                return false;
            }
            let bs = h.params.block_size();
            let cp = Checkpoint {
                payload_offset: u64::from(r.position),
                target_offset: (u64::from(r.extent) * bs).min(u64::from(s.info.size)),
                block: u64::from(r.extent),
            };
            let Ok(at) = u32::try_from(cp.target_offset) else {
                return false;
            };
            let (writer, decoder) = self.ws.split();
            if decoder
                .reset_resume(&h.to_bytes(), u64::from(s.source.len), cp)
                .is_err()
            {
                return false;
            }
            writer.reset(at, erased);
        } else {
            if r.position != r.extent
                || !r.extent.is_multiple_of(F::ERASE_SIZE as u32)
                || r.extent > s.payload_len
            {
                return false;
            }
            self.ws.split().0.reset(r.extent, erased);
        }
        s.next = r.position;
        s.recorded = r.position;
        true
    }

    /// Take payload bytes at `offset` (bytes before the next expected offset are skipped, so
    /// re-sent data is harmless). Returns the next expected offset.
    pub fn write(&mut self, offset: u32, data: &[u8]) -> Result<u32, UpdateError<F::Error>> {
        let r = self.write_inner(offset, data);
        if matches!(
            r,
            Err(UpdateError::Flash(_)
                | UpdateError::Patch(_)
                | UpdateError::OutOfRange
                | UpdateError::TooLong)
        ) {
            // The RAM state is no longer trustworthy; `begin` resumes from the journal.
            self.session = None;
        }
        r
    }

    fn write_inner(&mut self, offset: u32, data: &[u8]) -> Result<u32, UpdateError<F::Error>> {
        let erase = F::ERASE_SIZE as u64;
        let Some(s) = self.session.as_mut() else {
            return Err(UpdateError::NoSession);
        };
        let (writer, decoder) = self.ws.split();
        if offset > s.next {
            return Err(UpdateError::Gap { expected: s.next });
        }
        let skip = (s.next - offset) as usize;
        let Some(mut rest) = data.get(skip..).filter(|d| !d.is_empty()) else {
            return Ok(s.next);
        };
        if u64::from(s.next) + rest.len() as u64 > u64::from(s.payload_len) {
            return Err(UpdateError::TooLong);
        }
        while !rest.is_empty() {
            let mut record = None;
            {
                let mut io = FlashPatchIo::new(&mut self.flash, &mut *writer, s.source, s.target)?;
                if s.delta {
                    let n = decoder.push(rest, &mut io)?;
                    if n == 0 {
                        return Err(UpdateError::TooLong);
                    }
                    rest = rest.get(n..).unwrap_or(&[]);
                    s.next += n as u32;
                    if let Some(h) = decoder.header() {
                        if h.target_size != s.info.size || h.source_size != s.source.len {
                            return Err(UpdateError::Patch(DeltaError::Unsupported {
                                what: "stream sizes disagree with the manifest",
                            }));
                        }
                    }
                    if let (Some(cp), Some(h)) = (decoder.checkpoint(), decoder.header()) {
                        let durable_point = cp.payload_offset > u64::from(s.recorded)
                            && !decoder.is_done()
                            && cp.target_offset % erase == 0;
                        if durable_point {
                            io.sync()?;
                            if u64::from(io.flushed()) == cp.target_offset {
                                let p = h.params;
                                record = Some((
                                    cp.payload_offset as u32,
                                    cp.block as u32,
                                    [
                                        (p.lc & 0x0F) | (p.lp << 4),
                                        (p.ptr_log2 & 0x0F) | (p.ht_log2.wrapping_sub(8) << 4),
                                        p.block_log2,
                                        p.window_log2,
                                    ],
                                ));
                            }
                        }
                    }
                } else {
                    let n = rest.len();
                    io.write_target(rest)?;
                    rest = &[];
                    s.next += n as u32;
                    let durable = io.flushed() / F::ERASE_SIZE as u32 * F::ERASE_SIZE as u32;
                    if durable >= s.recorded + STORED_CHECKPOINT && s.next < s.payload_len {
                        record = Some((durable, durable, [0; 4]));
                    }
                }
            }
            if let Some((position, extent, stream_params)) = record {
                s.recorded = position;
                let rec = Record {
                    phase: Phase::Receiving,
                    active: self.rec.active,
                    step: 0,
                    position,
                    extent,
                    stream_params,
                    tag: s.tag,
                };
                self.journal
                    .append(&mut self.flash, &rec)
                    .map_err(UpdateError::Flash)?;
                self.rec = rec;
            }
        }
        Ok(s.next)
    }

    /// All payload received: check the new image's SHA-256, record its trailer and mark it
    /// pending (the next [`Updater::boot`] installs it).
    pub fn finish(&mut self) -> Result<(), UpdateError<F::Error>> {
        if self.session.is_none() && self.rec.phase == Phase::Pending {
            return Ok(());
        }
        let Some(s) = self.session.take() else {
            return Err(UpdateError::NoSession);
        };
        if s.next != s.payload_len {
            let e = UpdateError::Incomplete {
                received: s.next,
                expected: s.payload_len,
            };
            self.session = Some(s);
            return Err(e);
        }
        if s.delta {
            self.ws.split().1.finish().map_err(UpdateError::Patch)?;
        }
        FlashPatchIo::new(&mut self.flash, self.ws.split().0, s.source, s.target)?.finish()?;
        let slot = self.update_slot();
        let hash = self.hash_slot(slot, s.info.size)?;
        if hash != s.info.sha256 {
            let idle = self.with_phase(Phase::Idle);
            self.append(idle)?;
            return Err(UpdateError::TargetHash);
        }
        let at = self.trailer_at(slot);
        self.flash
            .erase(at, at + F::ERASE_SIZE as u32)
            .map_err(UpdateError::Flash)?;
        self.write_padded(at, &s.info.encode())?;
        let rec = Record {
            tag: s.tag,
            ..self.with_phase(Phase::Pending)
        };
        self.append(rec)
    }

    pub(super) fn write_padded(
        &mut self,
        at: u32,
        data: &[u8],
    ) -> Result<(), UpdateError<F::Error>> {
        let mut buf = [self.cfg.erased; CHUNK];
        let n = data.len().div_ceil(F::WRITE_SIZE) * F::WRITE_SIZE;
        let dst = buf
            .get_mut(..data.len())
            .ok_or(UpdateError::Layout("write size"))?;
        dst.copy_from_slice(data);
        let src = buf.get(..n).ok_or(UpdateError::Layout("write size"))?;
        self.flash.write(at, src).map_err(UpdateError::Flash)
    }

    /// Give up the update in progress (receiving or pending); the running image stays.
    pub fn abort(&mut self) -> Result<(), UpdateError<F::Error>> {
        self.session = None;
        match self.rec.phase {
            Phase::Receiving | Phase::Pending => {
                let idle = self.with_phase(Phase::Idle);
                self.append(idle)
            }
            Phase::Installing | Phase::Testing | Phase::Reverting => {
                Err(UpdateError::Busy(self.status().phase))
            }
            _ => Ok(()),
        }
    }
}
