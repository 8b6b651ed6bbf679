//! Whole-machine update: one package for the main MCU and its modules, all old or all new.
//!
//! A [`Machine`] runs on the main MCU. It holds a list of [`Member`]s, one per component
//! name: the main MCU's own slot sets ([`Local`]: an [`Updater`] over its flash, with
//! [`Config::member`](crate::Config) set) and modules on a local link ([`Module`]: the same
//! near-field protocol, each module running the device SDK's [`Server`](crate::serve::Server)
//! as any device does). The machine takes a whole-machine package through the same calls a
//! device takes one ([`Machine::begin`], [`Machine::write`], [`Machine::finish`]), hands each
//! component's payload to its member, and keeps its own journal (a second [`Journal`] of
//! [`MachineRecord`]s) so that after a power cut of the main MCU or of any module, at any
//! flash operation, [`Machine::boot`] ends with every member on its old image or every
//! member on its new one.
//!
//! ## Transaction
//!
//! | phase | entered | members | what [`Machine::boot`] does |
//! |---|---|---|---|
//! | idle / committed / rolled back | | all old, or all new and confirmed | settles any member left mid-way (a module that restarted on its own) back to what it runs |
//! | staging | [`Machine::begin`] admitted the whole package and stored its header, manifest and signature | receiving or pending; running the old image | settles strays; a `begin` with the same package resumes |
//! | staged | [`Machine::finish`]: every member verified its image (pending) | pending | installs (as a device installs a pending image at reset) |
//! | installing | boot | each restarted into its new image, on trial | continues |
//! | trial | every member runs its new image, unconfirmed | testing | the trial was cut short: rolls back |
//! | committing | [`Machine::confirm`] after the self-test passed | confirming one by one | confirms the rest; if one already went back, rolls back |
//! | rolling back | a member failed, the self-test failed, or a trial was cut short | going back one by one | continues |
//!
//! Admission ([`Machine::begin`]) checks the whole package against the whole machine before
//! any member starts: signature, product and hardware, every component's place (a
//! component for a member this machine does not have is refused), size, anti-rollback
//! counter and base image against the member's running image (a module is asked over its
//! link: one the package touches or depends on that does not answer fails the `begin`), and
//! every dependency against the versions the machine will have (the package's new ones, else
//! the running ones). Then each member checks the signature and its own component again.
//!
//! A member is judged by its phase and by whether its running image's SHA-256 is the
//! package's target for it (the package's header and manifest are kept in flash for that, so
//! the judgement survives a restart of the main MCU).

use bluesphere_core::package::{Header, Manifest, HEADER_LEN, SIGNATURE_LEN};
use bluesphere_core::proto::{Phase as UpdatePhase, Status as WireStatus};
use embedded_storage::nor_flash::NorFlash;
use p256::ecdsa::VerifyingKey;
use sha2::{Digest, Sha256};

use crate::journal::{le32, seal, sealed, Entry, Journal, JournalError, RECORD_LEN};

mod member;
mod serve;

use crate::{admit_scoped, Identity, ImageInfo, Installed, Region, Reject, Rejection, Scope};
pub use member::{IoLink, Local, Member, MemberError, MemberState, Module, ModuleLink};
pub use serve::MachineServer;

/// Most members a machine has (the package format's component limit).
pub const MAX_MEMBERS: usize = 16;

/// The machine's durable phase (journal codes: never renumber).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MachinePhase {
    /// Nothing in progress.
    Idle = 0,
    /// Members receive their components.
    Staging = 1,
    /// Every member holds its verified image, pending.
    Staged = 2,
    /// Members restart into their new images.
    Installing = 3,
    /// Every member runs its new image, unconfirmed.
    Trial = 4,
    /// Members are being confirmed.
    Committing = 5,
    /// Every member runs its new image, confirmed.
    Committed = 6,
    /// Members are going back to their old images.
    RollingBack = 7,
    /// Every member runs its old image again.
    RolledBack = 8,
}

impl MachinePhase {
    /// Short lower-case name.
    pub fn name(self) -> &'static str {
        bluesphere_core::proto::MACHINE_PHASES
            .get(self as usize)
            .copied()
            .unwrap_or("?")
    }

    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => MachinePhase::Idle,
            1 => MachinePhase::Staging,
            2 => MachinePhase::Staged,
            3 => MachinePhase::Installing,
            4 => MachinePhase::Trial,
            5 => MachinePhase::Committing,
            6 => MachinePhase::Committed,
            7 => MachinePhase::RollingBack,
            8 => MachinePhase::RolledBack,
            _ => return None,
        })
    }
}

/// One machine journal record.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | magic `0xB7` |
/// | 1 | 1 | phase ([`MachinePhase`]) |
/// | 2 | 1 | component the phase is at (install order) |
/// | 3 | 1 | zero |
/// | 4 | 4 | length of the stored header ‖ manifest ‖ signature |
/// | 8 | 8 | tag: first 8 bytes of SHA-256(header ‖ manifest) |
/// | 16 | 12 | zero |
/// | 28 | 4 | CRC-32 of bytes 0..28 |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineRecord {
    /// Phase.
    pub phase: MachinePhase,
    /// Component index the phase is at.
    pub component: u8,
    /// Bytes of the stored envelope.
    pub envelope_len: u32,
    /// Package tag.
    pub tag: [u8; 8],
}

const MACHINE_MAGIC: u8 = 0xB7;

impl MachineRecord {
    /// A fresh machine.
    pub const IDLE: MachineRecord = MachineRecord {
        phase: MachinePhase::Idle,
        component: 0,
        envelope_len: 0,
        tag: [0; 8],
    };
}

impl Entry for MachineRecord {
    fn encode(&self) -> [u8; RECORD_LEN] {
        let mut r = [0u8; RECORD_LEN];
        r[0] = MACHINE_MAGIC;
        r[1] = self.phase as u8;
        r[2] = self.component;
        r[4..8].copy_from_slice(&self.envelope_len.to_le_bytes());
        r[8..16].copy_from_slice(&self.tag);
        seal(&mut r);
        r
    }
    fn decode(r: &[u8; RECORD_LEN]) -> Option<Self> {
        if r[0] != MACHINE_MAGIC || !sealed(r) {
            return None;
        }
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&r[8..16]);
        Some(Self {
            phase: MachinePhase::from_u8(r[1])?,
            component: r[2],
            envelope_len: le32(&r[4..8]),
            tag,
        })
    }
}

/// Where the machine keeps its state on the main MCU's flash, and whom it trusts.
#[derive(Debug, Clone, Copy)]
pub struct MachineConfig<'a> {
    /// The machine journal (two or more whole sectors, apart from every member's regions).
    pub journal: Region,
    /// Where the package's header, manifest and signature are kept during an update (whole
    /// sectors, at least as large as the envelope buffer).
    pub envelope: Region,
    /// Value of an erased byte.
    pub erased: u8,
    /// Keys whose signatures the machine accepts.
    pub keys: &'a [VerifyingKey],
    /// Product and hardware id of the machine (every member is configured with the same).
    pub identity: Identity<'a>,
    /// Called with `true` when cutting a module's power would interrupt an update (a
    /// transaction started) and with `false` when it is over (committed, rolled back,
    /// given up); also once at [`Machine::open`]. Wire it to the modules' power switch.
    pub keep_powered: Option<fn(bool)>,
}

/// Why a machine operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MachineError<E: core::fmt::Debug> {
    /// The main MCU's flash failed (the state in flash is consistent: reopen after a reset).
    #[error("flash error: {0:?}")]
    Flash(E),
    /// The layout does not suit the flash.
    #[error("machine layout: {0}")]
    Layout(&'static str),
    /// The package was refused before any member changed anything.
    #[error("package refused: {0}")]
    Rejected(Rejection),
    /// A member failed; `component` is its index in the package (or in the machine's
    /// member list when no package is known).
    #[error("component {component}: {error}")]
    Member {
        /// Component index.
        component: u8,
        /// What it said.
        error: MemberError,
    },
    /// A member failed while the machine installed or committed; every member went back to
    /// its old image.
    #[error("component {component} failed ({error}); every component went back to its old image")]
    RolledBack {
        /// Component index.
        component: u8,
        /// What it said (or [`MemberError::Unreachable`] when it simply did not run the new image).
        error: MemberError,
    },
    /// The self-test failed; every member went back to its old image.
    #[error("the machine's self-test failed; every component went back to its old image")]
    SelfTest,
    /// Not possible in this phase.
    #[error("not possible while the machine is {}", .0.name())]
    Busy(MachinePhase),
    /// `write`/`finish` without `begin`.
    #[error("no update in progress: begin first")]
    NoSession,
    /// `finish` before every component's payload arrived.
    #[error("payload incomplete: {received} of {expected} bytes")]
    Incomplete {
        /// Received (contiguous from 0).
        received: u32,
        /// Declared.
        expected: u32,
    },
    /// Header, manifest and signature are larger than the machine's buffer.
    #[error("the package's header and manifest are larger than the machine's buffer ({0} bytes)")]
    TooLarge(u32),
}

impl<E: core::fmt::Debug> From<JournalError<E>> for MachineError<E> {
    fn from(e: JournalError<E>) -> Self {
        match e {
            JournalError::Flash(e) => MachineError::Flash(e),
            JournalError::Geometry(g) => MachineError::Layout(g),
        }
    }
}

/// One component of the package in progress (RAM only; rebuilt by `begin`).
#[derive(Debug, Clone, Copy, Default)]
struct Part {
    member: usize,
    offset: u32,
    len: u32,
    next: u32,
}

/// What [`Machine::status`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineStatus {
    /// Phase.
    pub phase: MachinePhase,
    /// The component the phase is at.
    pub component: u8,
    /// Payload bytes taken (staging), of `total`.
    pub done: u32,
    /// Payload bytes of the package (0 when unknown).
    pub total: u32,
}

/// The whole-machine coordinator (see the module documentation).
pub struct Machine<'m, 'd, F: NorFlash> {
    flash: F,
    cfg: MachineConfig<'m>,
    journal: Journal,
    rec: MachineRecord,
    members: &'m mut [&'d mut dyn Member],
    env: &'m mut [u8],
    parts: [Part; MAX_MEMBERS],
    count: usize,
    session: bool,
    /// Test-only planted bug: a rollback leaves members that confirmed on their new image.
    #[cfg(test)]
    pub(crate) plant_skip_confirmed: bool,
}

impl<F: NorFlash> core::fmt::Debug for Machine<'_, '_, F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Machine")
            .field("rec", &self.rec)
            .field("members", &self.members.len())
            .finish()
    }
}

type R<T, F> = Result<T, MachineError<<F as embedded_storage::nor_flash::ErrorType>::Error>>;

impl<'m, 'd, F: NorFlash> Machine<'m, 'd, F>
where
    F::Error: core::fmt::Debug,
{
    /// Open the machine over the main MCU's `flash` (journal and envelope regions) with its
    /// `members` and a buffer for header ‖ manifest ‖ signature. Call [`Machine::boot`]
    /// next, first thing at every start: it is the boot step of every member.
    pub fn open(
        mut flash: F,
        cfg: MachineConfig<'m>,
        members: &'m mut [&'d mut dyn Member],
        env: &'m mut [u8],
    ) -> R<Self, F> {
        let e = F::ERASE_SIZE as u32;
        let r = cfg.envelope;
        if !r.start.is_multiple_of(e)
            || !r.len.is_multiple_of(e)
            || (r.len as usize) < env.len()
            || r.len == 0
        {
            return Err(MachineError::Layout(
                "the envelope region must be whole sectors, as large as the buffer",
            ));
        }
        if u64::from(r.start) < cfg.journal.end() && u64::from(cfg.journal.start) < r.end() {
            return Err(MachineError::Layout(
                "the envelope region overlaps the journal",
            ));
        }
        if members.len() > MAX_MEMBERS {
            return Err(MachineError::Layout("more than 16 members"));
        }
        let (journal, last) =
            Journal::open::<F, MachineRecord>(&mut flash, cfg.journal, cfg.erased)?;
        let rec = last.unwrap_or(MachineRecord::IDLE);
        if let Some(f) = cfg.keep_powered {
            f(!matches!(
                rec.phase,
                MachinePhase::Idle | MachinePhase::Committed | MachinePhase::RolledBack
            ));
        }
        Ok(Self {
            flash,
            cfg,
            journal,
            rec: last.unwrap_or(MachineRecord::IDLE),
            members,
            env,
            parts: [Part::default(); MAX_MEMBERS],
            count: 0,
            session: false,
            #[cfg(test)]
            plant_skip_confirmed: false,
        })
    }

    /// The flash back.
    pub fn into_flash(self) -> F {
        self.flash
    }

    /// The machine's product and hardware id.
    pub fn identity(&self) -> Identity<'m> {
        self.cfg.identity
    }

    /// The durable record.
    pub fn record(&self) -> MachineRecord {
        self.rec
    }

    /// The members.
    pub fn members(&mut self) -> &mut [&'d mut dyn Member] {
        self.members
    }

    /// Where the machine is.
    pub fn status(&self) -> MachineStatus {
        let (done, total) = if self.session {
            let total = self.payload_total();
            (self.next_offset(), total)
        } else {
            (0, 0)
        };
        MachineStatus {
            phase: self.rec.phase,
            component: self.rec.component,
            done,
            total,
        }
    }

    fn append(&mut self, phase: MachinePhase, component: u8) -> R<(), F> {
        let rec = MachineRecord {
            phase,
            component,
            ..self.rec
        };
        self.commit_record(rec)
    }

    fn commit_record(&mut self, rec: MachineRecord) -> R<(), F> {
        let was = self.keep_powered();
        self.journal
            .append(&mut self.flash, &rec)
            .map_err(MachineError::Flash)?;
        self.rec = rec;
        let now = self.keep_powered();
        if was != now {
            if let Some(f) = self.cfg.keep_powered {
                f(now);
            }
        }
        for m in self.members.iter_mut() {
            m.note(rec.phase as u8, rec.component);
        }
        Ok(())
    }

    /// Whether cutting a module's power now would interrupt an update (a transaction is in
    /// progress: anything but idle, committed and rolled back).
    pub fn keep_powered(&self) -> bool {
        !matches!(
            self.rec.phase,
            MachinePhase::Idle | MachinePhase::Committed | MachinePhase::RolledBack
        )
    }

    fn member_index(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.name() == name)
    }

    fn payload_total(&self) -> u32 {
        self.parts
            .iter()
            .take(self.count)
            .map(|p| p.offset + p.len)
            .max()
            .unwrap_or(0)
    }

    /// The first payload offset not yet taken by its member (parts in payload order).
    fn next_offset(&self) -> u32 {
        let mut parts = self.parts;
        let parts = parts.get_mut(..self.count).unwrap_or(&mut []);
        parts.sort_unstable_by_key(|p| p.offset);
        let mut at = 0;
        for p in parts.iter() {
            if p.offset > at {
                return at;
            }
            if p.next < p.len {
                return p.offset + p.next;
            }
            at = p.offset + p.len;
        }
        at
    }

    /// Split the stored envelope (`None` if nothing is stored or it does not parse).
    fn envelope(&self) -> Option<(&[u8], &[u8], &[u8])> {
        let n = self.rec.envelope_len as usize;
        let blob = self.env.get(..n)?;
        let h = Header::parse(blob).ok()?;
        let m_end = HEADER_LEN + h.manifest_len as usize;
        if n != m_end + SIGNATURE_LEN {
            return None;
        }
        let (hm, sig) = blob.split_at(m_end);
        let (hd, man) = hm.split_at(HEADER_LEN);
        Some((hd, man, sig))
    }

    fn load_envelope(&mut self) -> R<bool, F> {
        let n = self.rec.envelope_len as usize;
        let Some(buf) = self.env.get_mut(..n) else {
            return Ok(false);
        };
        self.flash
            .read(self.cfg.envelope.start, buf)
            .map_err(MachineError::Flash)?;
        Ok(self
            .envelope()
            .is_some_and(|(h, m, _)| tag_of(h, m) == self.rec.tag))
    }

    fn store_envelope(&mut self, len: usize) -> R<(), F> {
        let r = self.cfg.envelope;
        let e = F::ERASE_SIZE as u32;
        let end = r.start + (len as u32).div_ceil(e) * e;
        self.flash
            .erase(r.start, end.max(r.start + e))
            .map_err(MachineError::Flash)?;
        let w = F::WRITE_SIZE;
        let mut chunk = [0u8; 256];
        let mut at = 0usize;
        while at < len {
            let n = (len - at).min(256);
            let padded = n.div_ceil(w) * w;
            chunk.fill(self.cfg.erased);
            if let (Some(d), Some(s)) = (chunk.get_mut(..n), self.env.get(at..at + n)) {
                d.copy_from_slice(s);
            }
            self.flash
                .write(r.start + at as u32, chunk.get(..padded).unwrap_or(&[]))
                .map_err(MachineError::Flash)?;
            at += n;
        }
        Ok(())
    }

    /// Target SHA-256 of each member for the stored package (`None`: not in the package).
    fn targets(&self) -> [Option<[u8; 32]>; MAX_MEMBERS] {
        let mut t = [None; MAX_MEMBERS];
        let Some((h, m, _)) = self.envelope() else {
            return t;
        };
        let Some(man) = Header::parse(h)
            .ok()
            .and_then(|h| Manifest::parse(m, &h).ok())
        else {
            return t;
        };
        for c in man.components().flatten() {
            if let Some(i) = self.member_index(c.name) {
                if let Some(slot) = t.get_mut(i) {
                    *slot = Some(c.target_sha256);
                }
            }
        }
        t
    }

    /// Start (or resume) a whole-machine update: admit the package against the whole
    /// machine, keep its header, manifest and signature, and begin every member. Returns
    /// the payload offset to send from and the payload length.
    pub fn begin(&mut self, header: &[u8], manifest: &[u8], signature: &[u8]) -> R<(u32, u32), F> {
        if self.rec.phase == MachinePhase::Staged && self.rec.tag == tag_of(header, manifest) {
            // Already staged (the answer to FINISH was lost): nothing to send.
            let total = self.staged_total()?;
            return Ok((total, total));
        }
        if !matches!(
            self.rec.phase,
            MachinePhase::Idle
                | MachinePhase::Staging
                | MachinePhase::Committed
                | MachinePhase::RolledBack
        ) {
            return Err(MachineError::Busy(self.rec.phase));
        }
        let len = header.len() + manifest.len() + signature.len();
        if len > self.env.len() {
            return Err(MachineError::TooLarge(self.env.len() as u32));
        }
        // The package's components and what they depend on: their members must answer.
        let parsed = Header::parse(header)
            .ok()
            .and_then(|h| Manifest::parse(manifest, &h).ok());
        let in_package = |name: &str| -> Option<u8> {
            let m = parsed.as_ref()?;
            m.components()
                .flatten()
                .position(|c| c.name == name)
                .and_then(|i| u8::try_from(i).ok())
        };
        let needed = |name: &str| {
            parsed.as_ref().is_none_or(|m| {
                m.components()
                    .flatten()
                    .any(|c| c.name == name || c.dependencies().any(|d| d.component == name))
            })
        };
        // What every member runs now (a needed module that does not answer fails here).
        let mut running: [Option<ImageInfo>; MAX_MEMBERS] = [None; MAX_MEMBERS];
        let mut capacity = [0u32; MAX_MEMBERS];
        for (i, m) in self.members.iter_mut().enumerate() {
            let name = m.name();
            let component = in_package(name).unwrap_or(i as u8);
            let st = match m.state() {
                Ok(st) => st,
                Err(_) if !needed(m.name()) => continue,
                Err(error) => return Err(MachineError::Member { component, error }),
            };
            if let Some(r) = running.get_mut(i) {
                *r = st.running;
            }
            if let Some(c) = capacity.get_mut(i) {
                *c = m
                    .capacity()
                    .map_err(|error| MachineError::Member { component, error })?;
            }
        }
        let mut list = [Installed::NONE; MAX_MEMBERS];
        let mut n = 0;
        for i in running.iter().flatten() {
            if let Some(d) = list.get_mut(n) {
                *d = Installed::from(i);
                n += 1;
            }
        }
        let members = &*self.members;
        let size_of = |name: &str| {
            members
                .iter()
                .position(|m| m.name() == name)
                .and_then(|i| capacity.get(i))
                .map(|&c| u64::from(c))
        };
        admit_scoped(
            header,
            manifest,
            signature,
            self.cfg.keys,
            &self.cfg.identity,
            list.get(..n).unwrap_or(&[]),
            &size_of,
            Scope::All,
        )
        .map_err(MachineError::Rejected)?;
        let malformed = || {
            MachineError::Rejected(Rejection {
                reason: Reject::Malformed,
                component: 0,
            })
        };
        let h = Header::parse(header).map_err(|_| malformed())?;
        let man = Manifest::parse(manifest, &h).map_err(|_| malformed())?;
        let tag = tag_of(header, manifest);
        // The parts, in install order.
        let mut parts = [Part::default(); MAX_MEMBERS];
        let mut count = 0;
        for c in man.components() {
            let c = c.map_err(|_| malformed())?;
            let member = self.member_index(c.name).ok_or_else(malformed)?;
            let (Ok(offset), Ok(len)) = (
                u32::try_from(c.payload_offset),
                u32::try_from(c.payload_size),
            ) else {
                return Err(malformed());
            };
            if let Some(p) = parts.get_mut(count) {
                *p = Part {
                    member,
                    offset,
                    len,
                    next: 0,
                };
                count += 1;
            }
        }

        let resuming = self.rec.phase == MachinePhase::Staging && self.rec.tag == tag;
        if !resuming {
            if self.rec.phase == MachinePhase::Staging {
                // Another package was being staged: its members give it up first.
                self.abort_members()?;
            }
            if let Some(d) = self.env.get_mut(..len) {
                let (a, rest) = d.split_at_mut(header.len());
                a.copy_from_slice(header);
                let (b, c) = rest.split_at_mut(manifest.len());
                b.copy_from_slice(manifest);
                c.copy_from_slice(signature);
            }
            self.store_envelope(len)?;
            self.commit_record(MachineRecord {
                phase: MachinePhase::Staging,
                component: 0,
                envelope_len: len as u32,
                tag,
            })?;
        } else if !self.load_envelope()? {
            return Err(MachineError::Layout(
                "the stored package does not match its record",
            ));
        }
        self.parts = parts;
        self.count = count;
        self.session = true;
        for k in 0..count {
            let Some(p) = self.parts.get(k).copied() else {
                continue;
            };
            let started = self.begin_member(p.member, header, manifest, signature);
            match started {
                Ok(resume) => {
                    if let Some(p) = self.parts.get_mut(k) {
                        p.next = resume.min(p.len);
                    }
                }
                Err(error) => {
                    // Nothing was installed: every member gives the package up.
                    self.session = false;
                    self.abort_members()?;
                    self.append(MachinePhase::Idle, k as u8)?;
                    return Err(match error {
                        MemberError::Answer {
                            status: WireStatus::Refused,
                            detail,
                            ..
                        } => MachineError::Rejected(Rejection {
                            reason: Reject::try_from(detail).unwrap_or(Reject::Unsupported),
                            component: k as u8,
                        }),
                        error => MachineError::Member {
                            component: k as u8,
                            error,
                        },
                    });
                }
            }
        }
        Ok((self.next_offset(), self.payload_total()))
    }

    /// A member starts (or resumes) receiving; one that runs or installs something new (a
    /// module that installed its pending image on its own after a restart) is settled back
    /// to its old image first. What it received stays: its `begin` resumes from its journal.
    fn begin_member(&mut self, i: usize, h: &[u8], m: &[u8], s: &[u8]) -> Result<u32, MemberError> {
        let member = self.members.get_mut(i).ok_or(MemberError::Unreachable)?;
        settle_old(&mut **member, None, true)?;
        member.begin(h, m, s)
    }

    /// Every member gives up what it received. One that does not answer now is settled by
    /// a later boot step (at rest, a member holding something pending gives it up).
    fn abort_members(&mut self) -> R<(), F> {
        for (i, m) in self.members.iter_mut().enumerate() {
            match settle_old(&mut **m, None, false) {
                Ok(()) | Err(MemberError::Unreachable) => {}
                Err(error) => {
                    return Err(MachineError::Member {
                        component: i as u8,
                        error,
                    })
                }
            }
        }
        Ok(())
    }

    /// Payload bytes at `offset` of the package's payload; each component's share goes to
    /// its member. Returns the next offset the machine expects (cumulative).
    pub fn write(&mut self, offset: u32, data: &[u8]) -> R<u32, F> {
        if !self.session || self.rec.phase != MachinePhase::Staging {
            return Err(MachineError::NoSession);
        }
        let end = offset.saturating_add(data.len() as u32);
        for k in 0..self.count {
            let Some(p) = self.parts.get(k).copied() else {
                continue;
            };
            let (lo, hi) = (offset.max(p.offset), end.min(p.offset + p.len));
            if lo >= hi || p.next >= p.len {
                // Not this component's bytes, or it has all of them (it may hold them
                // pending already, without a session).
                continue;
            }
            let piece = data
                .get((lo - offset) as usize..(hi - offset) as usize)
                .unwrap_or(&[]);
            let member = self
                .members
                .get_mut(p.member)
                .ok_or(MachineError::NoSession)?;
            let next =
                member
                    .write(lo - p.offset, piece)
                    .map_err(|error| MachineError::Member {
                        component: k as u8,
                        error,
                    })?;
            if let Some(p) = self.parts.get_mut(k) {
                p.next = next.min(p.len);
            }
        }
        Ok(self.next_offset())
    }

    /// Every component's payload arrived: each member verifies its image (pending), then
    /// the machine is staged; the next [`Machine::boot`] installs.
    pub fn finish(&mut self) -> R<(), F> {
        if self.rec.phase == MachinePhase::Staged {
            return Ok(());
        }
        if !self.session || self.rec.phase != MachinePhase::Staging {
            return Err(MachineError::NoSession);
        }
        let total = self.payload_total();
        let got = self.next_offset();
        if got < total {
            return Err(MachineError::Incomplete {
                received: got,
                expected: total,
            });
        }
        for k in 0..self.count {
            let Some(p) = self.parts.get(k).copied() else {
                continue;
            };
            let member = self
                .members
                .get_mut(p.member)
                .ok_or(MachineError::NoSession)?;
            member.finish().map_err(|error| MachineError::Member {
                component: k as u8,
                error,
            })?;
        }
        self.session = false;
        self.append(MachinePhase::Staged, 0)
    }

    fn staged_total(&mut self) -> R<u32, F> {
        if !self.load_envelope()? {
            return Err(MachineError::NoSession);
        }
        let total = self
            .envelope()
            .and_then(|(h, m, _)| {
                let h = Header::parse(h).ok()?;
                let man = Manifest::parse(m, &h).ok()?;
                man.components()
                    .flatten()
                    .map(|c| c.payload_offset + c.payload_size)
                    .max()
            })
            .unwrap_or(0);
        Ok(u32::try_from(total).unwrap_or(u32::MAX))
    }

    /// Give up the update being staged: every member keeps its old image.
    pub fn abort(&mut self) -> R<(), F> {
        match self.rec.phase {
            MachinePhase::Staging | MachinePhase::Staged => {
                self.session = false;
                self.abort_members()?;
                self.append(MachinePhase::Idle, 0)
            }
            MachinePhase::Idle | MachinePhase::Committed | MachinePhase::RolledBack => Ok(()),
            p => Err(MachineError::Busy(p)),
        }
    }

    /// The boot step of the whole machine (first thing at every start of the main MCU, and
    /// after the host's REBOOT): installs a staged package, continues an interrupted
    /// install, commit or rollback, rolls back a trial that was cut short, and settles any
    /// member left mid-way. Returns the phase it leaves the machine in.
    pub fn boot(&mut self) -> R<MachinePhase, F> {
        self.session = false;
        if self.rec.envelope_len > 0
            && !matches!(self.rec.phase, MachinePhase::Idle)
            && !self.load_envelope()?
        {
            // The stored package is gone (cannot happen: the record is written after it):
            // nothing can be judged against it, so every member goes back.
            return self
                .roll_back(0, MemberError::Unreachable)
                .map(|_| self.rec.phase);
        }
        match self.rec.phase {
            MachinePhase::Staged | MachinePhase::Installing => self.install()?,
            MachinePhase::Trial => {
                // The machine restarted before the trial image confirmed: roll back.
                self.roll_back(self.rec.component, MemberError::Unreachable)?;
            }
            MachinePhase::Committing => {
                self.commit()?;
            }
            MachinePhase::RollingBack => {
                self.roll_back(self.rec.component, MemberError::Unreachable)?;
            }
            MachinePhase::Staging => {
                // Members keep what they received (the host resumes), but none may run or
                // install the new image yet.
                let targets = self.targets();
                for i in 0..self.members.len() {
                    let t = targets.get(i).copied().flatten();
                    if let Some(m) = self.members.get_mut(i) {
                        settle_old(&mut **m, t, true).map_err(|error| MachineError::Member {
                            component: i as u8,
                            error,
                        })?;
                    }
                }
            }
            MachinePhase::Idle | MachinePhase::Committed | MachinePhase::RolledBack => {
                let targets = self.targets();
                let keep_new = self.rec.phase == MachinePhase::Committed;
                for i in 0..self.members.len() {
                    let t = targets.get(i).copied().flatten().filter(|_| keep_new);
                    if let Some(m) = self.members.get_mut(i) {
                        // A module that does not answer is settled when it does (next boot).
                        match settle_idle(&mut **m, t) {
                            Ok(()) | Err(MemberError::Unreachable) => {}
                            Err(error) => {
                                return Err(MachineError::Member {
                                    component: i as u8,
                                    error,
                                })
                            }
                        }
                    }
                }
            }
        }
        Ok(self.rec.phase)
    }

    /// Restart every member into its new image, in install order; then on trial.
    fn install(&mut self) -> R<(), F> {
        if self.rec.phase != MachinePhase::Installing {
            self.append(MachinePhase::Installing, 0)?;
        }
        let targets = self.targets();
        for i in 0..self.members.len() {
            let Some(target) = targets.get(i).copied().flatten() else {
                continue;
            };
            let Some(m) = self.members.get_mut(i) else {
                continue;
            };
            if let Err(e) = install_one(&mut **m, target) {
                return self.roll_back(i as u8, e);
            }
        }
        self.append(MachinePhase::Trial, 0)
    }

    /// The machine's new images work (its self-test passed): confirm every member. Call it
    /// from the application after its self-test, or on the host's CONFIRM.
    pub fn confirm(&mut self) -> R<(), F> {
        match self.rec.phase {
            MachinePhase::Committed => Ok(()),
            MachinePhase::Trial | MachinePhase::Committing => self.commit(),
            p => Err(MachineError::Busy(p)),
        }
    }

    /// The machine's self-test failed: every member goes back to its old image.
    pub fn reject(&mut self) -> R<(), F> {
        match self.rec.phase {
            MachinePhase::Trial => match self.roll_back(0, MemberError::Unreachable) {
                Ok(()) | Err(MachineError::RolledBack { .. }) => Err(MachineError::SelfTest),
                Err(e) => Err(e),
            },
            p => Err(MachineError::Busy(p)),
        }
    }

    fn commit(&mut self) -> R<(), F> {
        if self.rec.phase != MachinePhase::Committing {
            self.append(MachinePhase::Committing, 0)?;
        }
        let targets = self.targets();
        for i in 0..self.members.len() {
            let Some(target) = targets.get(i).copied().flatten() else {
                continue;
            };
            let Some(m) = self.members.get_mut(i) else {
                continue;
            };
            let r = match m.state() {
                Ok(st) if runs(&st, target) && st.phase == UpdatePhase::Testing => m.confirm(),
                Ok(st) if runs(&st, target) && st.phase == UpdatePhase::Confirmed => Ok(()),
                Ok(_) => Err(MemberError::Unreachable),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                return self.roll_back(i as u8, e);
            }
        }
        self.append(MachinePhase::Committed, 0)
    }

    /// Take every member back to its old image; then report which one failed (`Ok` only
    /// when nothing failed, i.e. a plain rollback at boot).
    fn roll_back(&mut self, component: u8, cause: MemberError) -> R<(), F> {
        let resumed = self.rec.phase == MachinePhase::RollingBack;
        if !resumed {
            self.append(MachinePhase::RollingBack, component)?;
        }
        let targets = self.targets();
        for i in (0..self.members.len()).rev() {
            let t = targets.get(i).copied().flatten();
            #[cfg(test)]
            let t = t.filter(|_| !self.plant_skip_confirmed);
            if let Some(m) = self.members.get_mut(i) {
                settle_old(&mut **m, t, false).map_err(|error| MachineError::Member {
                    component: i as u8,
                    error,
                })?;
            }
        }
        self.append(MachinePhase::RolledBack, component)?;
        if resumed {
            return Ok(());
        }
        Err(MachineError::RolledBack {
            component,
            error: cause,
        })
    }
}

fn tag_of(header: &[u8], manifest: &[u8]) -> [u8; 8] {
    let mut hasher = Sha256::new();
    hasher.update(header);
    hasher.update(manifest);
    let digest: [u8; 32] = hasher.finalize().into();
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    tag
}

fn runs(st: &MemberState, target: [u8; 32]) -> bool {
    st.running.is_some_and(|r| r.sha256 == target)
}

/// Most steps a member takes to settle (finish a swap, then revert it...).
const SETTLE_STEPS: usize = 6;

/// Bring a member back to its old image: finish a swap, revert a trial image, take a
/// confirmed target image back (`target`: the package's image for it). `keep_received`: a
/// member receiving or holding the package pending keeps it (staging: the host resumes);
/// else it gives it up.
fn settle_old(
    m: &mut dyn Member,
    target: Option<[u8; 32]>,
    keep_received: bool,
) -> Result<(), MemberError> {
    for _ in 0..SETTLE_STEPS {
        let st = m.state()?;
        match st.phase {
            UpdatePhase::Receiving | UpdatePhase::Applying | UpdatePhase::Pending
                if !keep_received =>
            {
                m.abort()?
            }
            UpdatePhase::Installing | UpdatePhase::Reverting | UpdatePhase::Testing => {
                // Finishes a swap; an unconfirmed trial image reverts at restart.
                m.restart()?
            }
            UpdatePhase::Confirmed if target.is_some_and(|t| runs(&st, t)) => {
                m.request_revert()?;
                m.restart()?;
            }
            _ => return Ok(()),
        }
    }
    Err(MemberError::Unreachable)
}

/// At rest: nothing in progress; a member runs the new image only if the machine committed
/// it (`keep`: the committed target).
fn settle_idle(m: &mut dyn Member, keep: Option<[u8; 32]>) -> Result<(), MemberError> {
    for _ in 0..SETTLE_STEPS {
        let st = m.state()?;
        match st.phase {
            UpdatePhase::Testing if keep.is_some_and(|t| runs(&st, t)) => m.confirm()?,
            UpdatePhase::Receiving | UpdatePhase::Applying | UpdatePhase::Pending => m.abort()?,
            UpdatePhase::Installing | UpdatePhase::Reverting | UpdatePhase::Testing => {
                m.restart()?
            }
            _ => {
                // The boot step of a local member validates its image (and falls back);
                // a module's ran when it started.
                return Ok(());
            }
        }
    }
    Err(MemberError::Unreachable)
}

/// Restart a pending member into its new image (or continue its swap) until it runs the
/// target on trial.
fn install_one(m: &mut dyn Member, target: [u8; 32]) -> Result<(), MemberError> {
    for _ in 0..SETTLE_STEPS {
        let st = m.state()?;
        match st.phase {
            UpdatePhase::Testing | UpdatePhase::Confirmed if runs(&st, target) => return Ok(()),
            UpdatePhase::Pending | UpdatePhase::Installing => m.restart()?,
            _ => return Err(MemberError::Unreachable),
        }
    }
    Err(MemberError::Unreachable)
}
