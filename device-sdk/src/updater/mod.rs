//! The updater: receive, verify, patch, switch, confirm, revert; power-fail safe at every
//! flash operation.
//!
//! ## Flash layout
//!
//! | region | sectors | content |
//! |---|---|---|
//! | slot 0 | `k` | swap mode: the execution slot (the image always runs from here); A/B: bank A |
//! | slot 1 | `k` (same size) | swap mode: the update slot; A/B: bank B |
//! | scratch | 1 (swap mode only) | one sector in transit while slots swap |
//! | journal | 2 or more | the state ([`crate::journal`]) |
//!
//! The last sector of each slot holds the image's trailer (size, version, security counter,
//! SHA-256); an image may use the other `k - 1` sectors ([`Updater::capacity`]). In swap mode
//! the trailer sector moves with its image.
//!
//! ## State machine
//!
//! | phase | entered by | what the next boot ([`Updater::boot`]) does |
//! |---|---|---|
//! | idle / confirmed / reverted | | boots the confirmed image |
//! | receiving | [`Updater::begin`]; a record at each durable checkpoint | boots the confirmed image; `begin` with the same package resumes |
//! | pending | [`Updater::finish`] after the new image's SHA-256 matched | A/B: marks the other bank on trial. Swap: swaps the slots (installing), then on trial |
//! | installing | boot | continues the swap where it stopped |
//! | testing | boot | the image did not confirm: reverts (A/B: one record; swap: swaps back) |
//! | reverting | boot | continues the swap back |
//!
//! [`Updater::confirm`] moves testing to confirmed. Every step of a swap (copy a slot-1
//! sector to scratch, slot 0 to slot 1, scratch to slot 0) is followed by a journal record,
//! and each step's source is intact until its record is durable, so after a power cut the
//! boot step redoes the one unfinished step.
//!
//! Nothing is erased before [`Updater::begin`] has verified the signature, product,
//! hardware, anti-rollback counter, base image and dependencies ([`crate::admit`]).

use bluesphere_core::delta::{
    ApplyError, Checkpoint, DeltaDecoder, DeltaError, Params, PatchIo, StreamDecoder, StreamHeader,
    DEFAULT_HT_CELLS, DEFAULT_LIT_TABLES, DEFAULT_PTR_ENTRIES, DEFAULT_WINDOW,
};
use bluesphere_core::package::{Codec, Header, Manifest, PayloadKind};
use embedded_storage::nor_flash::NorFlash;
use p256::ecdsa::VerifyingKey;
use sha2::{Digest, Sha256};

use crate::admit::{admit_scoped, Identity, Installed, Reject, Rejection, Scope};
use crate::journal::{ImageInfo, Journal, JournalError, Phase, Record, TRAILER_LEN};
use crate::{FlashIoError, FlashPatchIo, Region, TargetWriter};

mod boot;
mod receive;

/// Stored payloads record their progress every this many bytes.
const STORED_CHECKPOINT: u32 = 16 * 1024;
/// Stack buffer for copying and hashing.
const CHUNK: usize = 256;

/// How the two slots are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotMode {
    /// Slot 0 executes; updates arrive in slot 1 and are swapped in through `scratch`.
    Swap {
        /// One (or more) sectors; only the first is used.
        scratch: Region,
    },
    /// Both slots can execute; the journal says which one boots.
    AB,
}

/// Where things are in flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The two slots (equal sizes, whole sectors).
    pub slots: [Region; 2],
    /// The journal area (two or more whole sectors).
    pub journal: Region,
    /// Swap or A/B.
    pub mode: SlotMode,
}

/// The device's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    /// Flash layout.
    pub layout: Layout,
    /// Value of an erased byte (0xFF on most NOR, 0x00 on some).
    pub erased: u8,
    /// Keys whose signatures this device accepts.
    pub keys: &'a [VerifyingKey],
    /// Product and hardware id.
    pub identity: Identity<'a>,
    /// Name of the component the slots hold (`main`).
    pub component: &'a str,
    /// The slots belong to a machine (`crate::machine`): take the component named
    /// `component` out of a whole-machine package and leave the others to the coordinator,
    /// which checked them, and this component's dependencies, against the whole machine.
    /// `false`: the package must hold exactly this one component.
    pub member: bool,
}

/// The update state, as [`Updater::status`] reports it: the protocol's phase (one table in
/// `bluesphere_core::proto`).
pub use bluesphere_core::proto::Phase as UpdatePhase;

/// A snapshot of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Phase.
    pub phase: UpdatePhase,
    /// Progress: bytes received, or sectors swapped.
    pub done: u64,
    /// Progress total (0 when unknown).
    pub total: u64,
    /// The slot the next boot starts (swap mode: always 0).
    pub boot_slot: u8,
    /// Tag of the package in progress (receiving..testing).
    pub tag: Option<[u8; 8]>,
    /// The slot whose image failed validation at the last [`Updater::boot`] (its size and
    /// SHA-256 did not match its trailer), when the device fell back to the other image.
    pub fell_back_from: Option<u8>,
}

/// Accepted by [`Updater::begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begun {
    /// Send the payload from this offset (0, or where a previous attempt left off).
    pub resume_offset: u32,
    /// Payload length.
    pub payload_len: u32,
}

/// Why an updater operation failed. Nothing that was running is changed by any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError<E: core::fmt::Debug> {
    /// The flash driver failed (the state in flash is still consistent: reopen after a reset).
    #[error("flash error: {0:?}")]
    Flash(E),
    /// The package was refused before anything was erased.
    #[error("package refused: {0}")]
    Rejected(Rejection),
    /// The payload stream is corrupt or does not match the manifest.
    #[error("payload: {0}")]
    Patch(DeltaError),
    /// The payload writes outside the slot.
    #[error("the payload writes outside the update slot")]
    OutOfRange,
    /// Not possible in the current phase.
    #[error("not possible in phase `{}` ({})", .0.name(), .0.text())]
    Busy(UpdatePhase),
    /// `write`/`finish` without a `begin`.
    #[error("no update in progress: begin first")]
    NoSession,
    /// Data past the next expected offset.
    #[error("payload data out of order: expected offset {expected}")]
    Gap {
        /// Where to continue.
        expected: u32,
    },
    /// More payload than the manifest declares.
    #[error("more payload than the manifest declares")]
    TooLong,
    /// `finish` before all the payload arrived.
    #[error("payload incomplete: {received} of {expected} bytes")]
    Incomplete {
        /// Received.
        received: u32,
        /// Declared.
        expected: u32,
    },
    /// The new image's SHA-256 is not the manifest's; the update was abandoned.
    #[error("the new image does not match the manifest's SHA-256; update abandoned")]
    TargetHash,
    /// The layout does not suit the flash.
    #[error("flash layout: {0}")]
    Layout(&'static str),
    /// Neither slot holds an image that matches its trailer: nothing can run. The device
    /// stays in its updater and takes a full image.
    #[error("no valid image in either slot (damaged or never installed): send a full image")]
    NoValidImage,
}

impl<E: core::fmt::Debug> From<FlashIoError<E>> for UpdateError<E> {
    fn from(e: FlashIoError<E>) -> Self {
        match e {
            FlashIoError::Flash(e) => UpdateError::Flash(e),
            FlashIoError::OutOfRange => UpdateError::OutOfRange,
            FlashIoError::Geometry(g) => UpdateError::Layout(g),
        }
    }
}

impl<E: core::fmt::Debug> From<ApplyError<FlashIoError<E>>> for UpdateError<E> {
    fn from(e: ApplyError<FlashIoError<E>>) -> Self {
        match e {
            ApplyError::Delta(d) => UpdateError::Patch(d),
            ApplyError::Io(io) => io.into(),
        }
    }
}

impl<E: core::fmt::Debug> From<Rejection> for UpdateError<E> {
    fn from(r: Rejection) -> Self {
        UpdateError::Rejected(r)
    }
}

impl<E: core::fmt::Debug> From<JournalError<E>> for UpdateError<E> {
    fn from(e: JournalError<E>) -> Self {
        match e {
            JournalError::Flash(e) => UpdateError::Flash(e),
            JournalError::Geometry(g) => UpdateError::Layout(g),
        }
    }
}

/// The large working memory of an update: the patch decoder and the write buffer. Its
/// constructor is `const`, so a device keeps it in a `static` (no large stack temporary);
/// [`Updater::open`] borrows it.
#[derive(Debug, Clone)]
pub struct Workspace<
    const S: usize,
    const LT: usize,
    const W: usize,
    const PT: usize = DEFAULT_PTR_ENTRIES,
    const HT: usize = DEFAULT_HT_CELLS,
> {
    writer: TargetWriter<[u8; S]>,
    decoder: DeltaDecoder<LT, W, PT, HT>,
}

impl<const S: usize, const LT: usize, const W: usize, const PT: usize, const HT: usize> Default
    for Workspace<S, LT, W, PT, HT>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const S: usize, const LT: usize, const W: usize, const PT: usize, const HT: usize>
    Workspace<S, LT, W, PT, HT>
{
    /// An empty workspace.
    pub const fn new() -> Self {
        Self {
            writer: TargetWriter::new(0xFF),
            decoder: DeltaDecoder::new(0),
        }
    }
}

/// The working memory of one decoder profile, as a single type parameter of [`Updater`],
/// [`crate::serve::Server`] and `MemoryDevice`: every [`Workspace`] is one, whatever its
/// sizes. [`BestWorkspace`] and [`SmallWorkspace`] name the two profiles.
pub trait Profile {
    /// The patch decoder of this profile.
    type Decoder: StreamDecoder;
    /// The write buffer and the decoder, borrowed together.
    fn split(&mut self) -> (&mut TargetWriter, &mut Self::Decoder);
}

impl<const S: usize, const LT: usize, const W: usize, const PT: usize, const HT: usize> Profile
    for Workspace<S, LT, W, PT, HT>
{
    type Decoder = DeltaDecoder<LT, W, PT, HT>;
    fn split(&mut self) -> (&mut TargetWriter, &mut Self::Decoder) {
        (&mut self.writer, &mut self.decoder)
    }
}

/// Working memory for streams made with [`Params::BEST`], with an `S`-byte write buffer
/// (decoder state 61 KiB: 4 literal tables, 32 KiB of context cells, 4 KiB difference
/// window, 2048-entry pointer tables).
pub type BestWorkspace<const S: usize> =
    Workspace<S, DEFAULT_LIT_TABLES, DEFAULT_WINDOW, DEFAULT_PTR_ENTRIES, DEFAULT_HT_CELLS>;
/// Working memory for streams made with [`Params::SMALL`], with an `S`-byte write buffer
/// (decoder state 7.3 KiB, no pointer tables).
pub type SmallWorkspace<const S: usize> = Workspace<S, 1, 256, 0, 512>;

/// The update being received (small; the big state is in the [`Workspace`]).
#[derive(Debug, Clone, Copy)]
struct Session {
    tag: [u8; 8],
    info: ImageInfo,
    delta: bool,
    payload_len: u32,
    source: Region,
    target: Region,
    /// Payload bytes taken.
    next: u32,
    /// Payload offset of the last durable record.
    recorded: u32,
}

/// The updater over flash `F` with the working memory `P` (a [`Workspace`]: a write buffer,
/// a multiple of the write size, no full sector needed, and a patch decoder of one profile).
/// [`DefaultUpdater`] and [`SmallUpdater`] are the two profiles.
#[derive(Debug)]
pub struct Updater<'a, F: NorFlash, P: Profile> {
    flash: F,
    cfg: Config<'a>,
    journal: Journal,
    rec: Record,
    ws: &'a mut P,
    session: Option<Session>,
    /// Set by [`Updater::boot`] when the image it should run was invalid.
    fell_back_from: Option<u8>,
    /// Test-only planted bug: skip the swap record after this (sector, step).
    #[cfg(test)]
    pub(crate) skip_record: Option<(u32, u8)>,
}

/// Default profile: streams made with [`Params::BEST`] ([`BestWorkspace`]).
pub type DefaultUpdater<'a, F, const S: usize> = Updater<'a, F, BestWorkspace<S>>;
/// Small-RAM profile: streams made with [`Params::SMALL`] ([`SmallWorkspace`]).
pub type SmallUpdater<'a, F, const S: usize> = Updater<'a, F, SmallWorkspace<S>>;

fn phase_of(rec: &Record, delta_hint: bool) -> UpdatePhase {
    match rec.phase {
        Phase::Idle => UpdatePhase::Idle,
        Phase::Receiving if delta_hint => UpdatePhase::Applying,
        Phase::Receiving => UpdatePhase::Receiving,
        Phase::Pending => UpdatePhase::Pending,
        Phase::Installing => UpdatePhase::Installing,
        Phase::Testing => UpdatePhase::Testing,
        Phase::Confirmed => UpdatePhase::Confirmed,
        Phase::Reverting => UpdatePhase::Reverting,
        Phase::Reverted => UpdatePhase::Reverted,
    }
}

impl<'a, F: NorFlash, P: Profile> Updater<'a, F, P>
where
    F::Error: core::fmt::Debug,
{
    /// Open the updater: check the layout and read the state from the journal (a blank
    /// journal is a fresh device: idle, slot 0).
    pub fn open(
        mut flash: F,
        cfg: Config<'a>,
        ws: &'a mut P,
    ) -> Result<Self, UpdateError<F::Error>> {
        check_layout::<F>(&cfg.layout, flash.capacity())?;
        let (journal, last) = Journal::open(&mut flash, cfg.layout.journal, cfg.erased)?;
        Ok(Self {
            flash,
            cfg,
            journal,
            rec: last.unwrap_or(Record::IDLE),
            ws,
            session: None,
            fell_back_from: None,
            #[cfg(test)]
            skip_record: None,
        })
    }

    /// Give the flash back.
    pub fn into_flash(self) -> F {
        self.flash
    }

    /// Give the flash and the workspace back (to reopen after a simulated reset).
    pub fn into_parts(self) -> (F, &'a mut P) {
        (self.flash, self.ws)
    }

    /// The flash (for reading images).
    pub fn flash(&mut self) -> &mut F {
        &mut self.flash
    }

    /// Largest image a slot holds (the slot minus its trailer sector).
    pub fn capacity(&self) -> u32 {
        self.cfg.layout.slots[0].len - F::ERASE_SIZE as u32
    }

    /// Factory install: write `image` into the boot slot with its trailer (on a device that is
    /// idle, e.g. fresh from the factory). Hashes the image itself.
    pub fn provision(
        &mut self,
        image: &[u8],
        name: &str,
        version: &str,
        security_counter: u32,
    ) -> Result<(), UpdateError<F::Error>> {
        if !matches!(
            self.rec.phase,
            Phase::Idle | Phase::Confirmed | Phase::Reverted
        ) {
            return Err(UpdateError::Busy(self.status().phase));
        }
        let size = u32::try_from(image.len()).map_err(|_| UpdateError::OutOfRange)?;
        if size > self.capacity() {
            return Err(UpdateError::OutOfRange);
        }
        let sha: [u8; 32] = Sha256::digest(image).into();
        let info = ImageInfo::new(name, version, size, security_counter, sha)
            .ok_or(UpdateError::Layout("name or version longer than 32 bytes"))?;
        let b = self.boot_slot();
        let slot = self.slot(b);
        let e = F::ERASE_SIZE as u32;
        self.flash
            .erase(slot.start, slot.start + size.div_ceil(e) * e)
            .map_err(UpdateError::Flash)?;
        for (i, chunk) in image.chunks(CHUNK).enumerate() {
            self.write_padded(slot.start + (i * CHUNK) as u32, chunk)?;
        }
        let at = self.trailer_at(b);
        self.flash.erase(at, at + e).map_err(UpdateError::Flash)?;
        self.write_padded(at, &info.encode())
    }

    /// The device configuration.
    pub fn config(&self) -> &Config<'a> {
        &self.cfg
    }

    /// The durable journal record (for diagnostics).
    pub fn record(&self) -> Record {
        self.rec
    }

    /// The slot the device boots (or runs) now.
    pub fn boot_slot(&self) -> u8 {
        match self.cfg.layout.mode {
            SlotMode::Swap { .. } => 0,
            SlotMode::AB => {
                let a = self.rec.active & 1;
                if self.rec.phase == Phase::Testing {
                    1 - a
                } else {
                    a
                }
            }
        }
    }

    fn update_slot(&self) -> u8 {
        match self.cfg.layout.mode {
            SlotMode::Swap { .. } => 1,
            SlotMode::AB => 1 - (self.rec.active & 1),
        }
    }

    fn slot(&self, i: u8) -> Region {
        self.cfg.layout.slots[usize::from(i & 1)]
    }

    fn trailer_at(&self, slot: u8) -> u32 {
        let s = self.slot(slot);
        s.start + s.len - F::ERASE_SIZE as u32
    }

    /// The image info in a slot's trailer (`None`: no valid image recorded).
    pub fn image_info(&mut self, slot: u8) -> Result<Option<ImageInfo>, UpdateError<F::Error>> {
        let mut t = [0u8; TRAILER_LEN];
        let at = self.trailer_at(slot);
        self.flash.read(at, &mut t).map_err(UpdateError::Flash)?;
        Ok(ImageInfo::decode(&t).filter(|i| i.size <= self.capacity()))
    }

    /// Whether a slot holds an image whose bytes match its trailer (size and SHA-256), as
    /// MCUboot validates its primary slot.
    pub fn slot_valid(&mut self, slot: u8) -> Result<bool, UpdateError<F::Error>> {
        let Some(info) = self.image_info(slot)? else {
            return Ok(false);
        };
        Ok(self.hash_slot(slot, info.size)? == info.sha256)
    }

    /// SHA-256 of the first `len` bytes of a slot, as they are in flash.
    pub fn hash_slot(&mut self, slot: u8, len: u32) -> Result<[u8; 32], UpdateError<F::Error>> {
        let r = self.slot(slot).sub(0, len).ok_or(UpdateError::OutOfRange)?;
        let mut buf = [0u8; CHUNK];
        crate::hash_region(&mut self.flash, r, &mut buf).map_err(UpdateError::Flash)
    }

    /// The state machine.
    pub fn status(&self) -> Status {
        let (done, total, delta) = match (&self.session, self.rec.phase) {
            (Some(s), _) => (u64::from(s.next), u64::from(s.payload_len), s.delta),
            (None, Phase::Receiving) => (
                u64::from(self.rec.position),
                0,
                self.rec.stream_params != [0; 4],
            ),
            (None, Phase::Installing | Phase::Reverting) => (
                u64::from(self.rec.position),
                u64::from(self.rec.extent),
                false,
            ),
            _ => (0, 0, false),
        };
        let tag = matches!(
            self.rec.phase,
            Phase::Receiving | Phase::Pending | Phase::Installing | Phase::Testing
        )
        .then_some(self.rec.tag);
        Status {
            phase: phase_of(&self.rec, delta),
            done,
            total,
            boot_slot: self.boot_slot(),
            tag,
            fell_back_from: self.fell_back_from,
        }
    }

    fn append(&mut self, rec: Record) -> Result<(), UpdateError<F::Error>> {
        self.journal
            .append(&mut self.flash, &rec)
            .map_err(UpdateError::Flash)?;
        self.rec = rec;
        Ok(())
    }

    fn with_phase(&self, phase: Phase) -> Record {
        Record {
            phase,
            active: self.rec.active,
            step: 0,
            position: 0,
            extent: 0,
            stream_params: [0; 4],
            tag: self.rec.tag,
        }
    }
}

fn check_layout<F: NorFlash>(l: &Layout, capacity: usize) -> Result<(), UpdateError<F::Error>> {
    let e = F::ERASE_SIZE as u64;
    let w = F::WRITE_SIZE;
    if w > CHUNK
        || !CHUNK.is_multiple_of(w)
        || (e as usize) < TRAILER_LEN.div_ceil(w) * w
        || e < CHUNK as u64
    {
        return Err(UpdateError::Layout(
            "write size must divide 256 and sectors be at least 256 bytes",
        ));
    }
    let mut regions = [l.slots[0], l.slots[1], l.journal, l.journal];
    if let SlotMode::Swap { scratch } = l.mode {
        regions[3] = scratch;
    }
    for r in regions {
        if u64::from(r.start) % e != 0 || u64::from(r.len) % e != 0 || r.len == 0 {
            return Err(UpdateError::Layout("regions must be whole sectors"));
        }
        if r.end() > capacity as u64 {
            return Err(UpdateError::Layout("a region lies outside the flash"));
        }
    }
    for (i, a) in regions.iter().enumerate() {
        for b in regions.iter().skip(i + 1) {
            let same = a == b;
            if !same && u64::from(a.start) < b.end() && u64::from(b.start) < a.end() {
                return Err(UpdateError::Layout("regions overlap"));
            }
        }
    }
    if l.slots[0].len != l.slots[1].len || u64::from(l.slots[0].len) < 2 * e {
        return Err(UpdateError::Layout(
            "the two slots must have the same size, two sectors or more",
        ));
    }
    Ok(())
}
