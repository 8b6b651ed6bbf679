//! Members of a machine: the [`Member`] trait, the main MCU's own slot sets ([`Local`]) and
//! modules on a local link ([`Module`] over a [`ModuleLink`], e.g. [`IoLink`] on a UART).

use bluesphere_core::proto::{
    FrameDecoder, Phase as UpdatePhase, Request, Response, Status as WireStatus, PROTO_VERSION,
};
use embedded_storage::nor_flash::NorFlash;

use crate::{ImageInfo, Profile, UpdateError, Updater};

/// Why a member did not do what the machine asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberError {
    /// The member answered with an error (the protocol's status; a refusal carries its
    /// reason code in `detail` and the component in `value`).
    Answer {
        /// Status.
        status: WireStatus,
        /// Reason code, phase...
        detail: u8,
        /// Offset, component...
        value: u32,
    },
    /// No answer: the link is down, the module is off or does not answer in time.
    Unreachable,
}

impl core::fmt::Display for MemberError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MemberError::Answer { status, .. } => f.write_str(status.text()),
            MemberError::Unreachable => f.write_str("it does not answer"),
        }
    }
}

/// What a member runs and where its update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberState {
    /// Update phase.
    pub phase: UpdatePhase,
    /// The image it runs (`None`: nothing valid recorded).
    pub running: Option<ImageInfo>,
    /// The slot it boots.
    pub boot_slot: u8,
    /// Its slots are A/B (else swap).
    pub ab: bool,
}

/// One component's place in a machine: the main MCU's own slots ([`Local`]) or a module
/// ([`Module`]). Every call is the device operation of the same name.
pub trait Member {
    /// The component name it holds.
    fn name(&self) -> &str;
    /// Largest image it takes.
    fn capacity(&mut self) -> Result<u32, MemberError>;
    /// Its phase and running image.
    fn state(&mut self) -> Result<MemberState, MemberError>;
    /// Admit the package (its own component) and start or resume receiving; the resume
    /// offset within its component's payload.
    fn begin(
        &mut self,
        header: &[u8],
        manifest: &[u8],
        signature: &[u8],
    ) -> Result<u32, MemberError>;
    /// Payload bytes of its component at `offset`; the next offset it expects.
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<u32, MemberError>;
    /// All payload given: verify, then pending.
    fn finish(&mut self) -> Result<(), MemberError>;
    /// Give up the update it receives or holds pending.
    fn abort(&mut self) -> Result<(), MemberError>;
    /// Restart it: its boot step installs a pending image, finishes a swap, reverts an
    /// unconfirmed trial. Returns once it answers again.
    fn restart(&mut self) -> Result<(), MemberError>;
    /// Its trial image is good.
    fn confirm(&mut self) -> Result<(), MemberError>;
    /// Take the previous image back at its next restart (trial or just-confirmed image).
    fn request_revert(&mut self) -> Result<(), MemberError>;
    /// Tell it the machine's phase (code) and the component it is at; best effort, once.
    fn note(&mut self, _phase: u8, _component: u8) {}
}

fn answer_of<E: core::fmt::Debug>(e: UpdateError<E>) -> MemberError {
    match crate::serve::update_err(e) {
        Response::Error {
            status,
            detail,
            value,
        } => MemberError::Answer {
            status,
            detail,
            value,
        },
        _ => MemberError::Unreachable,
    }
}

/// A slot set of the main MCU itself, as a member (its [`Updater`] with
/// [`Config::member`](crate::Config) set).
#[derive(Debug)]
pub struct Local<'a, F: NorFlash, P: Profile> {
    up: Updater<'a, F, P>,
}

impl<'a, F: NorFlash, P: Profile> Local<'a, F, P>
where
    F::Error: core::fmt::Debug,
{
    /// The member over `up`.
    pub fn new(up: Updater<'a, F, P>) -> Self {
        Self { up }
    }

    /// The updater back (to reopen after a simulated reset).
    pub fn into_updater(self) -> Updater<'a, F, P> {
        self.up
    }

    /// The updater.
    pub fn updater(&mut self) -> &mut Updater<'a, F, P> {
        &mut self.up
    }
}

impl<F: NorFlash, P: Profile> Member for Local<'_, F, P>
where
    F::Error: core::fmt::Debug,
{
    fn name(&self) -> &str {
        self.up.config().component
    }
    fn capacity(&mut self) -> Result<u32, MemberError> {
        Ok(self.up.capacity())
    }
    fn state(&mut self) -> Result<MemberState, MemberError> {
        let st = self.up.status();
        let running = self.up.image_info(st.boot_slot).map_err(answer_of)?;
        Ok(MemberState {
            phase: st.phase,
            running,
            boot_slot: st.boot_slot,
            ab: self.up.config().layout.mode == crate::SlotMode::AB,
        })
    }
    fn begin(&mut self, h: &[u8], m: &[u8], s: &[u8]) -> Result<u32, MemberError> {
        self.up
            .begin(h, m, s)
            .map(|b| b.resume_offset)
            .map_err(answer_of)
    }
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<u32, MemberError> {
        match self.up.write(offset, data) {
            Ok(next) | Err(UpdateError::Gap { expected: next }) => Ok(next),
            Err(e) => Err(answer_of(e)),
        }
    }
    fn finish(&mut self) -> Result<(), MemberError> {
        self.up.finish().map_err(answer_of)
    }
    fn abort(&mut self) -> Result<(), MemberError> {
        self.up.abort().map_err(answer_of)
    }
    fn restart(&mut self) -> Result<(), MemberError> {
        self.up.boot().map(|_| ()).map_err(answer_of)
    }
    fn confirm(&mut self) -> Result<(), MemberError> {
        self.up.confirm().map_err(answer_of)
    }
    fn request_revert(&mut self) -> Result<(), MemberError> {
        self.up.request_revert().map_err(answer_of)
    }
}

/// The main MCU's end of a local link to one module (UART, SPI...): sends one encoded
/// request frame and gives back the module's answer as a raw frame (kind, sequence, body).
pub trait ModuleLink {
    /// One exchange: send `request` (an encoded frame with sequence number `seq`) and give
    /// back the answer carrying the same sequence number (a late answer to an earlier
    /// request is skipped); `Err(())`: no answer in time (the caller retries).
    #[allow(clippy::result_unit_err)]
    fn exchange(&mut self, request: &[u8], seq: u8, answer: &mut [u8]) -> Result<usize, ()>;
    /// The module was told to restart: wait until it can answer again (a module that
    /// swaps images first takes a while). Default: nothing to wait for.
    fn restarted(&mut self) {}
}

/// A module on a [`ModuleLink`], as a member. Requests are retried (`tries` times): every
/// request of the protocol is harmless to repeat.
#[derive(Debug)]
pub struct Module<'a, L> {
    name: &'a str,
    link: L,
    seq: u8,
    tries: u8,
    piece: usize,
    tx: [u8; 700],
    rx: [u8; 700],
}

/// BEGIN and DATA pieces sent to a module (fits the protocol's smallest receive frame).
const MODULE_PIECE: usize = 256;

impl<'a, L: ModuleLink> Module<'a, L> {
    /// The module holding component `name` on `link`.
    pub fn new(name: &'a str, link: L) -> Self {
        Self {
            name,
            link,
            seq: 0,
            tries: 3,
            piece: MODULE_PIECE,
            tx: [0; 700],
            rx: [0; 700],
        }
    }

    /// The link back.
    pub fn into_link(self) -> L {
        self.link
    }

    /// The link.
    pub fn link(&mut self) -> &mut L {
        &mut self.link
    }

    fn call<T>(
        &mut self,
        req: &Request<'_>,
        mut f: impl FnMut(Response<'_>) -> Option<Result<T, MemberError>>,
    ) -> Result<T, MemberError> {
        for _ in 0..self.tries {
            self.seq = self.seq.wrapping_add(1);
            let Some(n) = req.encode(self.seq, &mut self.tx) else {
                return Err(MemberError::Unreachable);
            };
            let Ok(m) = self
                .link
                .exchange(self.tx.get(..n).unwrap_or(&[]), self.seq, &mut self.rx)
            else {
                continue;
            };
            let Ok((seq, resp)) = Response::parse(self.rx.get(..m).unwrap_or(&[])) else {
                continue;
            };
            if seq != self.seq {
                continue;
            }
            if let Response::Error {
                status,
                detail,
                value,
            } = resp
            {
                return Err(MemberError::Answer {
                    status,
                    detail,
                    value,
                });
            }
            if let Some(r) = f(resp) {
                return r;
            }
        }
        Err(MemberError::Unreachable)
    }

    fn done(&mut self, req: &Request<'_>) -> Result<(), MemberError> {
        self.call(req, |r| {
            matches!(r, Response::Done { .. }).then_some(Ok(()))
        })
    }
}

impl<L: ModuleLink> Member for Module<'_, L> {
    fn name(&self) -> &str {
        self.name
    }
    fn capacity(&mut self) -> Result<u32, MemberError> {
        // A module checks its own slot size at BEGIN; the machine admits any size.
        Ok(u32::MAX)
    }
    fn state(&mut self) -> Result<MemberState, MemberError> {
        self.call(&Request::Info, |r| match r {
            Response::Info(i) => Some(Ok(MemberState {
                phase: i.phase,
                running: i.running.and_then(|e| {
                    ImageInfo::new(e.name, e.version, e.size, e.security_counter, e.sha256)
                }),
                boot_slot: i.boot_slot,
                ab: i.mode == 1,
            })),
            _ => None,
        })
    }
    fn begin(&mut self, h: &[u8], m: &[u8], s: &[u8]) -> Result<u32, MemberError> {
        self.call(
            &Request::Hello {
                version: PROTO_VERSION,
                max_frame: 600,
            },
            |r| matches!(r, Response::Hello { .. }).then_some(Ok(())),
        )?;
        let total = (h.len() + m.len() + s.len()) as u32;
        let mut offset = 0u32;
        let parts = [h, m, s];
        loop {
            // The next piece of header ‖ manifest ‖ signature, gathered from the three parts.
            let mut buf = [0u8; MODULE_PIECE];
            let mut n = 0;
            let mut skip = offset as usize;
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                let take = (p.len() - skip).min(self.piece - n);
                if let (Some(d), Some(src)) = (buf.get_mut(n..n + take), p.get(skip..skip + take)) {
                    d.copy_from_slice(src);
                }
                n += take;
                skip = 0;
                if n == self.piece {
                    break;
                }
            }
            let req = Request::Begin {
                total,
                offset,
                data: buf.get(..n).unwrap_or(&[]),
            };
            let next = self.call(&req, |r| match r {
                Response::BeginMore { next } => Some(Ok(Err(next))),
                Response::Accepted { resume, .. } => Some(Ok(Ok(resume))),
                _ => None,
            })?;
            match next {
                Ok(resume) => return Ok(resume),
                Err(next) if next > offset && next < total => offset = next,
                Err(_) => return Err(MemberError::Unreachable),
            }
        }
    }
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<u32, MemberError> {
        let mut next = offset;
        for (i, chunk) in data.chunks(self.piece).enumerate() {
            let at = offset + (i * self.piece) as u32;
            if at + chunk.len() as u32 <= next && i > 0 {
                continue;
            }
            next = self.call(
                &Request::Data {
                    offset: at,
                    data: chunk,
                },
                |r| match r {
                    Response::DataAck { next } => Some(Ok(next)),
                    _ => None,
                },
            )?;
            if next < at + chunk.len() as u32 {
                // The module wants an earlier offset (it restarted): the caller resends.
                return Ok(next);
            }
        }
        Ok(next)
    }
    fn finish(&mut self) -> Result<(), MemberError> {
        self.done(&Request::Finish)
    }
    fn abort(&mut self) -> Result<(), MemberError> {
        self.done(&Request::Abort)
    }
    fn restart(&mut self) -> Result<(), MemberError> {
        self.done(&Request::Reboot { if_phase: None })?;
        self.link.restarted();
        self.state().map(|_| ())
    }
    fn confirm(&mut self) -> Result<(), MemberError> {
        self.done(&Request::Confirm)
    }
    fn request_revert(&mut self) -> Result<(), MemberError> {
        self.done(&Request::Revert)
    }
    fn note(&mut self, phase: u8, component: u8) {
        let tries = core::mem::replace(&mut self.tries, 1);
        let _ = self.done(&Request::MachineNote { phase, component });
        self.tries = tries;
    }
}

/// A [`ModuleLink`] over any `embedded_io` byte pipe (a UART): writes the request, reads
/// until a whole answer frame arrived or `patience` reads in a row returned nothing (a
/// read that returns 0 bytes is an idle poll, as in [`crate::serve::serve`]).
#[derive(Debug)]
pub struct IoLink<IO> {
    io: IO,
    patience: u32,
    rx: FrameDecoder<700>,
}

impl<IO: embedded_io::Read + embedded_io::Write> IoLink<IO> {
    /// The link over `io`.
    pub fn new(io: IO, patience: u32) -> Self {
        Self {
            io,
            patience,
            rx: FrameDecoder::new(),
        }
    }

    /// The pipe back.
    pub fn into_inner(self) -> IO {
        self.io
    }
}

impl<IO: embedded_io::Read + embedded_io::Write> ModuleLink for IoLink<IO> {
    fn exchange(&mut self, request: &[u8], seq: u8, answer: &mut [u8]) -> Result<usize, ()> {
        self.rx.clear();
        self.io.write_all(request).map_err(|_| ())?;
        let _ = self.io.flush();
        let mut idle = 0;
        let mut buf = [0u8; 64];
        while idle < self.patience {
            let n = self.io.read(&mut buf).map_err(|_| ())?;
            if n == 0 {
                idle += 1;
                continue;
            }
            idle = 0;
            let mut input = buf.get(..n).unwrap_or(&[]);
            while !input.is_empty() {
                let (used, frame) = self.rx.feed(input);
                input = input.get(used..).unwrap_or(&[]);
                match frame {
                    Some(Ok(f)) if f.get(1) == Some(&seq) => {
                        let d = answer.get_mut(..f.len()).ok_or(())?;
                        d.copy_from_slice(f);
                        return Ok(f.len());
                    }
                    _ => {}
                }
            }
        }
        Err(())
    }
}
