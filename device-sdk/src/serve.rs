//! The device side of the near-field protocol (`docs/PROTOCOL.md`): a [`Server`] turns
//! request frames into responses by driving the [`Updater`]; [`serve`] runs it over any
//! `embedded_io` byte link (UART, USB CDC, a BLE characteristic stream).
//!
//! | request | device action | answer |
//! |---|---|---|
//! | HELLO | | version, max frame, receive window, codecs, BEGIN buffer size |
//! | INFO | | product, hardware, chip UID, slot mode, update state, images (trailers) |
//! | BEGIN piece | collect header ‖ manifest ‖ signature; when complete, [`Updater::begin`] | BEGIN_MORE, ACCEPTED (resume offset) or ERROR refused + reason |
//! | DATA | [`Updater::write`] (in order; earlier bytes are skipped) | DATA_ACK (next expected offset, also for out-of-order frames) |
//! | FINISH | [`Updater::finish`] | DONE or ERROR |
//! | REBOOT | restart if the phase is the one asked (the caller resets after the answer is sent) | DONE |
//! | STATUS / CONFIRM / ABORT / REVERT | | STATUS / DONE |
//! | READ_UID / WRITE_CODE / READ_CODE | [`CodeStore`] | BYTES / DONE |

use bluesphere_core::delta::StreamDecoder;
use bluesphere_core::package::{Header, HEADER_LEN, SIGNATURE_LEN};
use bluesphere_core::proto::{
    FrameDecoder, ImageEntry, Info, Request, Response, Status, PROTO_VERSION,
};
use embedded_storage::nor_flash::NorFlash;

use crate::{ImageInfo, Profile, SlotMode, UpdateError, Updater};

#[cfg(feature = "std")]
extern crate std;

/// Where a device keeps its activation code (OTP, a flash page...).
pub trait CodeStore {
    /// Copy the stored code into `buf`; 0 if there is none.
    fn read(&mut self, buf: &mut [u8]) -> usize;
    /// Store `code` (once); `Err(status)` to refuse it.
    fn write(&mut self, code: &[u8], uid: &[u8]) -> Result<(), Status>;
}

/// A device without activation support.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCodes;

impl CodeStore for NoCodes {
    fn read(&mut self, _buf: &mut [u8]) -> usize {
        0
    }
    fn write(&mut self, _code: &[u8], _uid: &[u8]) -> Result<(), Status> {
        Err(Status::UnknownCommand)
    }
}

/// Serves protocol requests for one updater. `B`: bytes for header ‖ manifest ‖ signature.
#[derive(Debug)]
pub struct Server<'a, F: NorFlash, C, P: Profile, const B: usize> {
    up: Updater<'a, F, P>,
    codes: C,
    uid: &'a [u8],
    max_frame: u16,
    window: u32,
    begin: BeginBuffer<B>,
    reboot: bool,
    machine: Option<(u8, u8)>,
}

/// Header, manifest and signature.
pub(crate) type Parts<'b> = (&'b [u8], &'b [u8], &'b [u8]);

/// BEGIN pieces that do not make a whole package yet: the answer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NotYet {
    /// BEGIN_MORE from this offset.
    More(u32),
    /// ERROR (status, detail, value).
    Error(Status, u8, u32),
}

impl NotYet {
    pub(crate) fn response(self) -> Response<'static> {
        match self {
            NotYet::More(next) => Response::BeginMore { next },
            NotYet::Error(s, d, v) => err(s, d, v),
        }
    }
}

/// Collects BEGIN pieces into header ‖ manifest ‖ signature (`B` bytes at most).
#[derive(Debug)]
pub(crate) struct BeginBuffer<const B: usize> {
    buf: [u8; B],
    len: u32,
    total: u32,
}

impl<const B: usize> BeginBuffer<B> {
    pub(crate) const fn new() -> Self {
        Self {
            buf: [0; B],
            len: 0,
            total: 0,
        }
    }

    /// Take one piece; header, manifest and signature once all arrived, else what to
    /// answer (BEGIN_MORE, or an error).
    pub(crate) fn piece(
        &mut self,
        total: u32,
        offset: u32,
        data: &[u8],
    ) -> Result<Parts<'_>, NotYet> {
        if total as usize > B {
            return Err(NotYet::Error(Status::TooLarge, 0, B as u32));
        }
        if offset == 0 || total != self.total {
            self.total = total;
            self.len = 0;
        }
        if offset > self.len {
            return Err(NotYet::Error(Status::Gap, 0, self.len));
        }
        let end = offset as usize + data.len();
        let Some(dst) = self
            .buf
            .get_mut(offset as usize..end)
            .filter(|_| end <= total as usize)
        else {
            return Err(NotYet::Error(Status::BadRequest, 0, 0));
        };
        dst.copy_from_slice(data);
        self.len = self.len.max(end as u32);
        if self.len < total {
            return Err(NotYet::More(self.len));
        }
        let malformed = || NotYet::Error(Status::Refused, crate::Reject::Malformed.code(), 0);
        let blob = self.buf.get(..total as usize).unwrap_or(&[]);
        let h = Header::parse(blob).map_err(|_| malformed())?;
        let m_end = HEADER_LEN + h.manifest_len as usize;
        if blob.len() != m_end + SIGNATURE_LEN {
            return Err(malformed());
        }
        let (hm, sig) = blob.split_at(m_end);
        let (hd, man) = hm.split_at(HEADER_LEN);
        Ok((hd, man, sig))
    }
}

pub(crate) fn err(status: Status, detail: u8, value: u32) -> Response<'static> {
    Response::Error {
        status,
        detail,
        value,
    }
}

pub(crate) fn update_err<E: core::fmt::Debug>(e: UpdateError<E>) -> Response<'static> {
    match e {
        UpdateError::Rejected(r) => err(Status::Refused, r.reason.code(), u32::from(r.component)),
        UpdateError::Busy(p) => err(Status::Busy, p.into(), 0),
        UpdateError::NoSession => err(Status::NoSession, 0, 0),
        UpdateError::Gap { expected } => err(Status::Gap, 0, expected),
        UpdateError::TooLong => err(Status::TooLong, 0, 0),
        UpdateError::Incomplete { received, .. } => err(Status::Incomplete, 0, received),
        UpdateError::TargetHash => err(Status::TargetHash, 0, 0),
        UpdateError::Patch(_) | UpdateError::OutOfRange => err(Status::CorruptPayload, 0, 0),
        UpdateError::Flash(_) | UpdateError::Layout(_) | UpdateError::NoValidImage => {
            err(Status::FlashError, 0, 0)
        }
    }
}

/// The answer to a frame that is not a request: `BadRequest` for a known kind with a bad
/// body, `UnknownCommand` otherwise.
pub(crate) fn unparsable(frame: &[u8], out: &mut [u8]) -> Option<usize> {
    let seq = frame.get(1).copied().unwrap_or(0);
    let known = frame
        .first()
        .is_some_and(|&k| bluesphere_core::proto::Command::try_from(k).is_ok());
    let status = if known {
        Status::BadRequest
    } else {
        Status::UnknownCommand
    };
    err(status, 0, 0).encode(seq, out)
}

fn entry(slot: u8, i: &ImageInfo) -> ImageEntry<'_> {
    ImageEntry {
        slot,
        name: i.name(),
        version: i.version(),
        size: i.size,
        security_counter: i.security_counter,
        sha256: i.sha256,
    }
}

impl<'a, F: NorFlash, C: CodeStore, P: Profile, const B: usize> Server<'a, F, C, P, B>
where
    F::Error: core::fmt::Debug,
{
    /// Serve `up`; `uid` is the chip's unique id, `max_frame` the largest raw frame the
    /// receive path takes, `window` the payload bytes the link may buffer unacknowledged.
    pub fn new(
        up: Updater<'a, F, P>,
        codes: C,
        uid: &'a [u8],
        max_frame: u16,
        window: u32,
    ) -> Self {
        Self {
            up,
            codes,
            uid,
            max_frame,
            window,
            begin: BeginBuffer::new(),
            reboot: false,
            machine: None,
        }
    }

    /// What the machine's main MCU last told this module about the whole machine's update:
    /// the phase code (`bluesphere_core::proto::MACHINE_PHASES`) and the component it is at.
    /// `None` until told (a device that is not part of a machine). A module whose main
    /// MCU is mid-update (anything but idle, committed, rolled back) should not restart on
    /// its own.
    pub fn machine_state(&self) -> Option<(u8, u8)> {
        self.machine
    }

    /// Give the updater back.
    pub fn into_updater(self) -> Updater<'a, F, P> {
        self.up
    }

    /// Give the updater and the code store back.
    pub fn into_parts(self) -> (Updater<'a, F, P>, C) {
        (self.up, self.codes)
    }

    /// The updater.
    pub fn updater(&mut self) -> &mut Updater<'a, F, P> {
        &mut self.up
    }

    /// The code store.
    pub fn codes(&mut self) -> &mut C {
        &mut self.codes
    }

    /// True once a REBOOT was answered: the caller resets now (the virtual device runs
    /// [`Updater::boot`] instead).
    pub fn take_reboot(&mut self) -> bool {
        core::mem::take(&mut self.reboot)
    }

    /// Handle one raw frame (kind, sequence, body); the encoded answer goes to `out`
    /// (at least `encoded_max(600)` bytes). `None`: nothing to send.
    pub fn handle(&mut self, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        let Ok((seq, req)) = Request::parse(frame) else {
            return unparsable(frame, out);
        };
        let mut code = [0u8; 128];
        let r = match req {
            Request::Hello { version, .. } if version != PROTO_VERSION => {
                err(Status::Version, PROTO_VERSION, 0)
            }
            Request::Hello { .. } => Response::Hello {
                version: PROTO_VERSION,
                max_frame: self.max_frame,
                window: self.window,
                codecs: 0b001
                    | 0b100
                    | if <P::Decoder as StreamDecoder>::HOLDS_BEST {
                        0b010
                    } else {
                        0
                    },
                max_begin: B as u32,
            },
            Request::Info => return self.info(seq, out),
            Request::Begin {
                total,
                offset,
                data,
            } => self.begin_piece(total, offset, data),
            Request::Data { offset, data } => match self.up.write(offset, data) {
                Ok(next) | Err(UpdateError::Gap { expected: next }) => Response::DataAck { next },
                Err(e) => update_err(e),
            },
            Request::Status => {
                let st = self.up.status();
                Response::Status {
                    phase: st.phase,
                    done: st.done as u32,
                    total: st.total as u32,
                    boot_slot: st.boot_slot,
                }
            }
            Request::Finish => self.done_or(|up| up.finish()),
            Request::Reboot { if_phase } => {
                let now = self.up.status().phase;
                if if_phase.is_none_or(|p| p == now) {
                    self.reboot = true;
                }
                Response::Done { phase: now }
            }
            Request::Confirm => self.done_or(|up| up.confirm()),
            Request::Abort => self.done_or(|up| up.abort()),
            Request::Revert => self.done_or(|up| up.request_revert()),
            // A single device is not a machine.
            Request::Machine => err(Status::UnknownCommand, 0, 0),
            Request::MachineNote { phase, component } => {
                self.machine = Some((phase, component));
                Response::Done {
                    phase: self.up.status().phase,
                }
            }
            Request::ReadUid => Response::Bytes(self.uid),
            Request::ReadCode => {
                let n = self.codes.read(&mut code);
                if n == 0 {
                    err(Status::NoCode, 0, 0)
                } else {
                    Response::Bytes(code.get(..n).unwrap_or(&[]))
                }
            }
            Request::WriteCode { code: c } => match self.codes.write(c, self.uid) {
                Ok(()) => Response::Done {
                    phase: self.up.status().phase,
                },
                Err(s) => err(s, 0, 0),
            },
        };
        r.encode(seq, out)
    }

    fn done_or(
        &mut self,
        f: impl FnOnce(&mut Updater<'a, F, P>) -> Result<(), UpdateError<F::Error>>,
    ) -> Response<'static> {
        match f(&mut self.up) {
            Ok(()) => Response::Done {
                phase: self.up.status().phase,
            },
            Err(e) => update_err(e),
        }
    }

    fn begin_piece(&mut self, total: u32, offset: u32, data: &[u8]) -> Response<'static> {
        let (hd, man, sig) = match self.begin.piece(total, offset, data) {
            Ok(parts) => parts,
            Err(r) => return r.response(),
        };
        match self.up.begin(hd, man, sig) {
            Ok(b) => Response::Accepted {
                resume: b.resume_offset,
                payload_len: b.payload_len,
            },
            Err(e) => update_err(e),
        }
    }

    fn info(&mut self, seq: u8, out: &mut [u8]) -> Option<usize> {
        let st = self.up.status();
        let boot = st.boot_slot;
        let running = self.up.image_info(boot).ok().flatten();
        let other = self.up.image_info(1 - boot).ok().flatten();
        let cfg = *self.up.config();
        let info = Info {
            product: cfg.identity.product_id,
            hardware: cfg.identity.hardware_id,
            uid: self.uid,
            mode: match cfg.layout.mode {
                SlotMode::Swap { .. } => 0,
                SlotMode::AB => 1,
            },
            boot_slot: boot,
            phase: st.phase,
            done: st.done as u32,
            total: st.total as u32,
            running: running.as_ref().map(|i| entry(boot, i)),
            other: other.as_ref().map(|i| entry(1 - boot, i)),
        };
        Response::Info(info).encode(seq, out)
    }
}

/// What [`serve`] drives: a device's [`Server`] or a machine's
/// [`MachineServer`](crate::machine::MachineServer).
pub trait Handler {
    /// Handle one raw frame; the encoded answer goes to `out`. `None`: nothing to send.
    fn handle(&mut self, frame: &[u8], out: &mut [u8]) -> Option<usize>;
    /// True once a REBOOT was answered.
    fn take_reboot(&mut self) -> bool;
}

impl<F: NorFlash, C: CodeStore, P: Profile, const B: usize> Handler for Server<'_, F, C, P, B>
where
    F::Error: core::fmt::Debug,
{
    fn handle(&mut self, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        Server::handle(self, frame, out)
    }
    fn take_reboot(&mut self) -> bool {
        Server::take_reboot(self)
    }
}

/// Why [`serve`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served<E> {
    /// A REBOOT was answered: reset the device now.
    Reboot,
    /// `keep_going` returned false.
    Stopped,
    /// The link failed.
    Link(E),
}

/// Serve over a byte link until a REBOOT is answered, `keep_going` says stop, or the link
/// fails. A read that returns 0 bytes is an idle poll (a timeout), not the end. `N`: the
/// largest encoded frame accepted.
pub fn serve<IO, H: Handler, const N: usize>(
    io: &mut IO,
    server: &mut H,
    decoder: &mut FrameDecoder<N>,
    mut keep_going: impl FnMut() -> bool,
) -> Served<IO::Error>
where
    IO: embedded_io::Read + embedded_io::Write,
{
    let mut rx = [0u8; 256];
    let mut tx = [0u8; 2600];
    while keep_going() {
        let n = match io.read(&mut rx) {
            Ok(n) => n,
            Err(e) => return Served::Link(e),
        };
        let mut input = rx.get(..n).unwrap_or(&[]);
        while !input.is_empty() {
            let (used, frame) = decoder.feed(input);
            input = input.get(used..).unwrap_or(&[]);
            let Some(Ok(frame)) = frame else { continue };
            if let Some(len) = server.handle(frame, &mut tx) {
                if let Err(e) = io.write_all(tx.get(..len).unwrap_or(&[])) {
                    return Served::Link(e);
                }
                let _ = io.flush();
            }
            if server.take_reboot() {
                return Served::Reboot;
            }
        }
    }
    Served::Stopped
}

/// A device served in memory (feature `std`): bytes in, answer frames out, and power cycles.
/// The link simulator's tests and the throughput benchmark put it at the far end.
#[cfg(feature = "testkit")]
#[derive(Debug)]
pub struct MemoryDevice<'a, F: NorFlash, C, P: Profile, const B: usize> {
    server: Option<Server<'a, F, C, P, B>>,
    uid: &'a [u8],
    max_frame: u16,
    window: u32,
    rx: FrameDecoder<4200>,
    tx: [u8; 1200],
}

#[cfg(feature = "testkit")]
impl<'a, F: NorFlash, C: CodeStore, P: Profile, const B: usize> MemoryDevice<'a, F, C, P, B>
where
    F::Error: core::fmt::Debug,
{
    /// Serve `up` (see [`Server::new`]).
    pub fn new(
        up: Updater<'a, F, P>,
        codes: C,
        uid: &'a [u8],
        max_frame: u16,
        window: u32,
    ) -> Self {
        Self {
            server: Some(Server::new(up, codes, uid, max_frame, window)),
            uid,
            max_frame,
            window,
            rx: FrameDecoder::new(),
            tx: [0; 1200],
        }
    }

    /// The server (`None` only after a failed [`MemoryDevice::power_cycle`]).
    pub fn server(&mut self) -> Option<&mut Server<'a, F, C, P, B>> {
        self.server.as_mut()
    }

    /// Bytes from the host; returns the answer frames. A REBOOT runs the boot step.
    pub fn receive(&mut self, mut bytes: &[u8]) -> std::vec::Vec<std::vec::Vec<u8>> {
        let mut out = std::vec::Vec::new();
        let Some(srv) = self.server.as_mut() else {
            return out;
        };
        while !bytes.is_empty() {
            let (n, f) = self.rx.feed(bytes);
            bytes = bytes.get(n..).unwrap_or(&[]);
            if let Some(Ok(frame)) = f {
                if let Some(len) = srv.handle(frame, &mut self.tx) {
                    out.push(self.tx.get(..len).unwrap_or(&[]).to_vec());
                }
                if srv.take_reboot() {
                    let _ = srv.updater().boot();
                }
            }
        }
        out
    }

    /// Power loss and restart: RAM state gone, the flash stays, the boot step runs.
    pub fn power_cycle(&mut self, cfg: crate::Config<'a>) -> Result<(), UpdateError<F::Error>> {
        let Some(srv) = self.server.take() else {
            return Ok(());
        };
        let (up, codes) = srv.into_parts();
        let (flash, ws) = up.into_parts();
        let mut up = Updater::open(flash, cfg, ws)?;
        up.boot()?;
        self.server = Some(Server::new(
            up,
            codes,
            self.uid,
            self.max_frame,
            self.window,
        ));
        self.rx.clear();
        Ok(())
    }

    /// Take the updater apart (flash, workspace).
    pub fn into_updater(self) -> Option<Updater<'a, F, P>> {
        self.server.map(|s| s.into_parts().0)
    }
}
