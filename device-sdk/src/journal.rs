//! The update journal: write-once records in a ring of flash sectors, and the image trailer.
//!
//! The journal area is two or more sectors. Each record slot is `R = max(32, WRITE_SIZE)`
//! bytes (rounded up to the write size); a record is written once and never rewritten, so the
//! journal works on flash that can program a word only once (ECC flash) and never depends on
//! overwriting a word.
//!
//! ## Sector
//!
//! | slot | content |
//! |---|---|
//! | 0 | sector header: written *last* when the sector is started, so a sector whose header is valid always holds a valid first record |
//! | 1 | a full snapshot of the state (the first record) |
//! | 2 .. E/R | state records, appended in order |
//!
//! The sector with the valid header of the highest epoch is the active one; the last valid
//! record in it is the state. When it is full the next sector (round robin) is erased, the
//! current state written to its slot 1, and its header (epoch + 1) to slot 0; until that header
//! is durable the old sector stays active. A record whose CRC does not match (a torn write) is
//! skipped, and the next record goes after it.
//!
//! ## Header (first 32 bytes of slot 0)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | magic `0xB6` |
//! | 1 | 1 | format `1` |
//! | 2 | 2 | record slot size `R` |
//! | 4 | 4 | epoch (u32 LE) |
//! | 8 | 20 | zero |
//! | 28 | 4 | CRC-32 of bytes 0..28 |
//!
//! ## Record (first 32 bytes of a slot)
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 1 | magic `0xB5` | |
//! | 1 | 1 | phase | [`Phase`] |
//! | 2 | 1 | active | A/B: the confirmed slot (0/1); swap: 0 |
//! | 3 | 1 | step | swap: steps done of sector `position` (0..=2) |
//! | 4 | 4 | position | receiving: durable payload offset; swapping: sector index |
//! | 8 | 4 | extent | receiving: next block (delta) or durable target bytes (stored); swapping: sectors to swap |
//! | 12 | 4 | stream_params | receiving: stream parameters as in the stream header's bytes 2..6 (`lc | lp << 4`, `ptr_log2 | (ht_log2 - 8) << 4`, `block_log2`, `window_log2`) |
//! | 16 | 8 | tag | first 8 bytes of SHA-256(header ‖ manifest) of the package in progress |
//! | 24 | 4 | d | reserved (0) |
//! | 28 | 4 | CRC-32 of bytes 0..28 |
//!
//! Bytes of a slot after the first 32 are left erased.
//!
//! ## Image trailer (first 128 bytes of the last sector of a slot)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `BSIM` |
//! | 4 | 4 | image size |
//! | 8 | 4 | security counter |
//! | 12 | 1 + 32 | version (length + bytes) |
//! | 48 | 32 | image SHA-256 |
//! | 80 | 1 + 32 | component name (length + bytes) |
//! | 113 | 11 | zero |
//! | 124 | 4 | CRC-32 of bytes 0..124 |

use bluesphere_core::crc::crc32;
use embedded_storage::nor_flash::NorFlash;

use crate::Region;

/// Bytes of a record or header that carry data.
pub const RECORD_LEN: usize = 32;
/// Largest record slot (write size) supported.
pub const MAX_SLOT: usize = 256;
/// Bytes of the image trailer that carry data.
pub const TRAILER_LEN: usize = 128;

const REC_MAGIC: u8 = 0xB5;
const HDR_MAGIC: u8 = 0xB6;
const TRAILER_MAGIC: [u8; 4] = *b"BSIM";

/// The durable phase of the update state machine (journal codes: never renumber).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Nothing in progress.
    Idle = 0,
    /// Payload being received (and, for a delta, applied) into the update slot.
    Receiving = 1,
    /// Complete and verified; the next boot installs it.
    Pending = 2,
    /// The boot step is swapping the new image in (swap mode).
    Installing = 3,
    /// The new image runs on trial; it must confirm itself before the next boot.
    Testing = 4,
    /// The new image confirmed itself.
    Confirmed = 5,
    /// The boot step is swapping the old image back.
    Reverting = 6,
    /// The trial image did not confirm; the old image runs again.
    Reverted = 7,
}

impl Phase {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Phase::Idle,
            1 => Phase::Receiving,
            2 => Phase::Pending,
            3 => Phase::Installing,
            4 => Phase::Testing,
            5 => Phase::Confirmed,
            6 => Phase::Reverting,
            7 => Phase::Reverted,
            _ => return None,
        })
    }
}

/// One journal record: the whole durable state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Phase.
    pub phase: Phase,
    /// Confirmed slot (A/B).
    pub active: u8,
    /// Swap steps done of sector `position`.
    pub step: u8,
    /// Receiving: durable payload offset; swapping: sector index.
    pub position: u32,
    /// Receiving: next block (delta) or durable target bytes (stored); swapping: sectors to
    /// swap.
    pub extent: u32,
    /// Receiving: the stream's parameters (the stream header's bytes 2..6).
    pub stream_params: [u8; 4],
    /// Package tag.
    pub tag: [u8; 8],
}

/// What a [`Journal`] stores: a 32-byte record whose first byte is its kind's magic and
/// whose last four are the CRC-32 of the rest (the updater's [`Record`], the machine
/// coordinator's record in `crate::machine`).
pub trait Entry: Sized {
    /// The 32 bytes to write.
    fn encode(&self) -> [u8; RECORD_LEN];
    /// The record, if these bytes are one of this kind (magic and CRC checked).
    fn decode(r: &[u8; RECORD_LEN]) -> Option<Self>;
}

/// Fill in the CRC of a record (bytes 28..32 over 0..28).
pub fn seal(r: &mut [u8; RECORD_LEN]) {
    let crc = crc32(&r[..28]);
    r[28..32].copy_from_slice(&crc.to_le_bytes());
}

/// Whether a record's CRC matches.
pub fn sealed(r: &[u8; RECORD_LEN]) -> bool {
    crc_ok(r)
}

impl Record {
    /// The state of a fresh device.
    pub const IDLE: Record = Record {
        phase: Phase::Idle,
        active: 0,
        step: 0,
        position: 0,
        extent: 0,
        stream_params: [0; 4],
        tag: [0; 8],
    };
}

impl Entry for Record {
    fn encode(&self) -> [u8; RECORD_LEN] {
        let mut r = [0u8; RECORD_LEN];
        r[0] = REC_MAGIC;
        r[1] = self.phase as u8;
        r[2] = self.active;
        r[3] = self.step;
        r[4..8].copy_from_slice(&self.position.to_le_bytes());
        r[8..12].copy_from_slice(&self.extent.to_le_bytes());
        r[12..16].copy_from_slice(&self.stream_params);
        r[16..24].copy_from_slice(&self.tag);
        seal(&mut r);
        r
    }

    fn decode(r: &[u8; RECORD_LEN]) -> Option<Record> {
        if r[0] != REC_MAGIC || !crc_ok(r) {
            return None;
        }
        Some(Record {
            phase: Phase::from_u8(r[1])?,
            active: r[2],
            step: r[3],
            position: le32(&r[4..8]),
            extent: le32(&r[8..12]),
            stream_params: [r[12], r[13], r[14], r[15]],
            tag: [r[16], r[17], r[18], r[19], r[20], r[21], r[22], r[23]],
        })
    }
}

/// A little-endian `u32` from the first four bytes (0 if shorter).
pub fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b.get(..4).unwrap_or(&[0; 4]));
    u32::from_le_bytes(a)
}

fn crc_ok(r: &[u8; RECORD_LEN]) -> bool {
    crc32(&r[..28]) == le32(&r[28..32])
}

fn header(epoch: u32, slot: usize) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[0] = HDR_MAGIC;
    r[1] = 1;
    r[2..4].copy_from_slice(&(slot as u16).to_le_bytes());
    r[4..8].copy_from_slice(&epoch.to_le_bytes());
    let crc = crc32(&r[..28]);
    r[28..32].copy_from_slice(&crc.to_le_bytes());
    r
}

fn parse_header(r: &[u8; RECORD_LEN], slot: usize) -> Option<u32> {
    (r[0] == HDR_MAGIC
        && r[1] == 1
        && usize::from(u16::from_le_bytes([r[2], r[3]])) == slot
        && crc_ok(r))
    .then(|| le32(&r[4..8]))
}

/// Where the journal is and where the next record goes.
#[derive(Debug, Clone, Copy)]
pub struct Journal {
    region: Region,
    erased: u8,
    slot: u32,
    sector: u32,
    sectors: u32,
    /// Active sector and its epoch; `None` on a blank journal.
    active: Option<(u32, u32)>,
    /// Next free slot index in the active sector.
    next: u32,
}

/// Journal errors: the flash failed, or the area does not suit the flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalError<E> {
    /// Flash driver error.
    Flash(E),
    /// The journal region does not fit the geometry.
    Geometry(&'static str),
}

impl Journal {
    /// Record slot size for a flash with this write size.
    pub const fn slot_size(write: usize) -> usize {
        RECORD_LEN.div_ceil(write) * write
    }

    /// Scan `region` and return the journal and its last valid record (`None`: blank).
    pub fn open<F: NorFlash, R: Entry>(
        flash: &mut F,
        region: Region,
        erased: u8,
    ) -> Result<(Journal, Option<R>), JournalError<F::Error>> {
        let slot = Self::slot_size(F::WRITE_SIZE);
        let e = F::ERASE_SIZE;
        if slot > MAX_SLOT || e < 3 * slot {
            return Err(JournalError::Geometry(
                "journal sectors must hold at least three records",
            ));
        }
        if !(region.start as usize).is_multiple_of(e)
            || !(region.len as usize).is_multiple_of(e)
            || region.len as usize / e < 2
        {
            return Err(JournalError::Geometry(
                "the journal needs two or more whole sectors",
            ));
        }
        let mut j = Journal {
            region,
            erased,
            slot: slot as u32,
            sector: e as u32,
            sectors: region.len / e as u32,
            active: None,
            next: 0,
        };
        let mut buf = [0u8; RECORD_LEN];
        for s in 0..j.sectors {
            flash
                .read(j.addr(s, 0), &mut buf)
                .map_err(JournalError::Flash)?;
            if let Some(epoch) = parse_header(&buf, slot) {
                if j.active.is_none_or(|(_, best)| epoch > best) {
                    j.active = Some((s, epoch));
                }
            }
        }
        let Some((s, _)) = j.active else {
            return Ok((j, None));
        };
        let mut last = None;
        let mut next = 1;
        let mut full = [0u8; MAX_SLOT];
        for i in 1..j.slots() {
            let rec = full.get_mut(..slot).unwrap_or(&mut []);
            flash.read(j.addr(s, i), rec).map_err(JournalError::Flash)?;
            if rec.iter().all(|&b| b == erased) {
                continue;
            }
            next = i + 1;
            buf.copy_from_slice(rec.get(..RECORD_LEN).unwrap_or(&[0; RECORD_LEN]));
            if let Some(r) = R::decode(&buf) {
                last = Some(r);
            }
        }
        j.next = next;
        Ok((j, last))
    }

    fn slots(&self) -> u32 {
        self.sector / self.slot
    }

    fn addr(&self, sector: u32, slot: u32) -> u32 {
        self.region.start + sector * self.sector + slot * self.slot
    }

    fn write_slot<F: NorFlash>(
        &self,
        flash: &mut F,
        at: u32,
        data: &[u8; RECORD_LEN],
    ) -> Result<(), F::Error> {
        let mut full = [self.erased; MAX_SLOT];
        let n = self.slot as usize;
        if let Some(d) = full.get_mut(..RECORD_LEN) {
            d.copy_from_slice(data);
        }
        flash.write(at, full.get(..n).unwrap_or(&[]))
    }

    /// Append `rec`, starting a new sector when the active one is full.
    pub fn append<F: NorFlash, R: Entry>(
        &mut self,
        flash: &mut F,
        rec: &R,
    ) -> Result<(), F::Error> {
        match self.active {
            Some((s, _)) if self.next < self.slots() => {
                let at = self.addr(s, self.next);
                // Count the slot as used even if the write fails half way (torn).
                self.next += 1;
                self.write_slot(flash, at, &rec.encode())
            }
            _ => {
                let (target, epoch) = match self.active {
                    Some((s, epoch)) => ((s + 1) % self.sectors, epoch.wrapping_add(1)),
                    None => (0, 1),
                };
                let base = self.addr(target, 0);
                flash.erase(base, base + self.sector)?;
                self.write_slot(flash, self.addr(target, 1), &rec.encode())?;
                self.write_slot(flash, base, &header(epoch, self.slot as usize))?;
                self.active = Some((target, epoch));
                self.next = 2;
                Ok(())
            }
        }
    }
}

/// What a slot's trailer says about its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// Image size in bytes.
    pub size: u32,
    /// Anti-rollback counter.
    pub security_counter: u32,
    /// SHA-256 of the image.
    pub sha256: [u8; 32],
    version: [u8; 32],
    version_len: u8,
    name: [u8; 32],
    name_len: u8,
}

fn short(s: &str) -> Option<([u8; 32], u8)> {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    out.get_mut(..b.len())?.copy_from_slice(b);
    Some((out, b.len() as u8))
}

impl ImageInfo {
    /// Build from manifest fields; `None` if a string is longer than 32 bytes.
    pub fn new(
        name: &str,
        version: &str,
        size: u32,
        security_counter: u32,
        sha256: [u8; 32],
    ) -> Option<Self> {
        let (name, name_len) = short(name)?;
        let (version, version_len) = short(version)?;
        Some(Self {
            size,
            security_counter,
            sha256,
            version,
            version_len,
            name,
            name_len,
        })
    }

    /// The version string.
    pub fn version(&self) -> &str {
        let b = self
            .version
            .get(..usize::from(self.version_len))
            .unwrap_or(&[]);
        core::str::from_utf8(b).unwrap_or("")
    }

    /// The component name.
    pub fn name(&self) -> &str {
        let b = self.name.get(..usize::from(self.name_len)).unwrap_or(&[]);
        core::str::from_utf8(b).unwrap_or("")
    }

    /// The trailer bytes.
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut t = [0u8; TRAILER_LEN];
        t[0..4].copy_from_slice(&TRAILER_MAGIC);
        t[4..8].copy_from_slice(&self.size.to_le_bytes());
        t[8..12].copy_from_slice(&self.security_counter.to_le_bytes());
        t[12] = self.version_len;
        t[13..45].copy_from_slice(&self.version);
        t[48..80].copy_from_slice(&self.sha256);
        t[80] = self.name_len;
        t[81..113].copy_from_slice(&self.name);
        let crc = crc32(&t[..124]);
        t[124..128].copy_from_slice(&crc.to_le_bytes());
        t
    }

    /// Parse a trailer; `None` if it is not a valid one.
    pub fn decode(t: &[u8; TRAILER_LEN]) -> Option<Self> {
        if t[0..4] != TRAILER_MAGIC || crc32(&t[..124]) != le32(&t[124..128]) {
            return None;
        }
        let mut version = [0u8; 32];
        version.copy_from_slice(&t[13..45]);
        let mut name = [0u8; 32];
        name.copy_from_slice(&t[81..113]);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&t[48..80]);
        let info = Self {
            size: le32(&t[4..8]),
            security_counter: le32(&t[8..12]),
            sha256,
            version,
            version_len: t[12].min(32),
            name,
            name_len: t[80].min(32),
        };
        let ok = core::str::from_utf8(&version[..usize::from(info.version_len)]).is_ok()
            && core::str::from_utf8(&name[..usize::from(info.name_len)]).is_ok();
        ok.then_some(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Cut, SimFlash};

    type F = SimFlash<8, 512>;
    const J: Region = Region {
        start: 0,
        len: 1024,
    };

    fn rec(position: u32) -> Record {
        Record {
            phase: Phase::Receiving,
            position,
            ..Record::IDLE
        }
    }

    #[test]
    fn appends_compacts_and_reopens() {
        for erased in [0xFF, 0x00] {
            let mut f = F::new(2, erased);
            let (mut j, last) = Journal::open::<_, Record>(&mut f, J, erased).unwrap();
            assert_eq!(last, None);
            for a in 0..100 {
                j.append(&mut f, &rec(a)).unwrap();
                let (_, last) = Journal::open::<_, Record>(&mut f, J, erased).unwrap();
                assert_eq!(last, Some(rec(a)));
            }
            // 512-byte sectors hold 15 records after the header: 100 records compact 6 times
            // (one erase each) plus the first format.
            assert_eq!(f.counters.erases, 7);
            assert_eq!(f.counters.writes, 100 + 7);
        }
    }

    #[test]
    fn torn_and_cut_appends_keep_the_previous_or_the_new_record() {
        for erased in [0xFF, 0x00] {
            for n in 0..40u64 {
                for tear in [false, true] {
                    let mut f = F::new(2, erased);
                    let (mut j, _) = Journal::open::<_, Record>(&mut f, J, erased).unwrap();
                    for a in 0..20 {
                        j.append(&mut f, &rec(a)).unwrap();
                    }
                    let cut = if tear { Cut::Tear(n) } else { Cut::Before(n) };
                    f.power_on();
                    f.set_cut(Some(cut), n * 7 + u64::from(tear));
                    let mut done = 19;
                    for a in 20..60 {
                        if j.append(&mut f, &rec(a)).is_err() {
                            break;
                        }
                        done = a;
                    }
                    f.power_on();
                    let (mut j, last) = Journal::open::<_, Record>(&mut f, J, erased).unwrap();
                    let a = last.unwrap().position;
                    assert!(a == done || a == done + 1, "cut {n}: {a} vs {done}");
                    // And it keeps working after the cut.
                    j.append(&mut f, &rec(1000)).unwrap();
                    let (_, last) = Journal::open::<_, Record>(&mut f, J, erased).unwrap();
                    assert_eq!(last, Some(rec(1000)));
                }
            }
        }
    }

    #[test]
    fn trailer_round_trip_and_corruption() {
        let i = ImageInfo::new("main", "1.2.3-rc.1", 1234, 7, [9; 32]).unwrap();
        let t = i.encode();
        let d = ImageInfo::decode(&t).unwrap();
        assert_eq!(d, i);
        assert_eq!(d.version(), "1.2.3-rc.1");
        assert_eq!(d.name(), "main");
        for bit in 0..TRAILER_LEN * 8 {
            let mut t = t;
            t[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(ImageInfo::decode(&t), None, "bit {bit}");
        }
        assert!(ImageInfo::new("main", &"x".repeat(33), 0, 0, [0; 32]).is_none());
    }
}
