//! The machine's side of the near-field protocol: the host pushes a whole-machine package
//! to the main MCU exactly as to a single device (`bluesphere push`, the same push engine).
//!
//! | request | machine action | answer |
//! |---|---|---|
//! | HELLO | | as a device; every codec (members decode their own) |
//! | INFO | | the machine's identity; the first member's image as the running one |
//! | BEGIN | collect, then [`Machine::begin`] | BEGIN_MORE, ACCEPTED or ERROR (refusal with the component index in `value`) |
//! | DATA | [`Machine::write`] | DATA_ACK |
//! | FINISH | [`Machine::finish`] | DONE (pending) |
//! | REBOOT | the caller runs [`Machine::boot`] after the answer (installs: trial) | DONE |
//! | STATUS | | the machine phase as a device phase (staging: applying, staged: pending, installing, trial/committing: testing, committed: confirmed, rolling back: reverting, rolled back: reverted) |
//! | CONFIRM / ABORT | [`Machine::confirm`] / [`Machine::abort`] | DONE |
//! | MACHINE | | machine phase and every member (name, phase, version, SHA-256) |
//! | READ_UID / WRITE_CODE / READ_CODE | the main MCU's [`CodeStore`] | as a device |

use bluesphere_core::proto::{
    ImageEntry, Info, MachineInfo, MemberEntry, Phase as UpdatePhase, Request, Response, Status,
    PROTO_VERSION,
};
use embedded_storage::nor_flash::NorFlash;

use super::{Machine, MachineError, MachinePhase, MemberError, MemberState, MAX_MEMBERS};
use crate::serve::{err, unparsable, BeginBuffer, CodeStore, Handler};

/// Serves protocol requests for a [`Machine`]. `B`: bytes for header ‖ manifest ‖ signature.
pub struct MachineServer<'m, 'd, F: NorFlash, C, const B: usize> {
    machine: Machine<'m, 'd, F>,
    codes: C,
    uid: &'m [u8],
    max_frame: u16,
    window: u32,
    begin: BeginBuffer<B>,
    reboot: bool,
}

impl<F: NorFlash, C, const B: usize> core::fmt::Debug for MachineServer<'_, '_, F, C, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MachineServer")
            .field("machine", &self.machine)
            .finish()
    }
}

/// The device phase a host sees for a machine phase.
pub fn device_phase(p: MachinePhase) -> UpdatePhase {
    match p {
        MachinePhase::Idle => UpdatePhase::Idle,
        MachinePhase::Staging => UpdatePhase::Applying,
        MachinePhase::Staged => UpdatePhase::Pending,
        MachinePhase::Installing => UpdatePhase::Installing,
        MachinePhase::Trial | MachinePhase::Committing => UpdatePhase::Testing,
        MachinePhase::Committed => UpdatePhase::Confirmed,
        MachinePhase::RollingBack => UpdatePhase::Reverting,
        MachinePhase::RolledBack => UpdatePhase::Reverted,
    }
}

fn machine_err<E: core::fmt::Debug>(e: MachineError<E>) -> Response<'static> {
    match e {
        MachineError::Rejected(r) => err(Status::Refused, r.reason.code(), u32::from(r.component)),
        MachineError::Member { component, error } => match error {
            MemberError::Answer { status, detail, .. } => err(status, detail, u32::from(component)),
            MemberError::Unreachable => err(Status::ModuleUnreachable, 0, u32::from(component)),
        },
        MachineError::RolledBack { component, .. } => {
            err(Status::RolledBack, 0, u32::from(component))
        }
        MachineError::SelfTest => err(Status::RolledBack, 1, 0),
        MachineError::Busy(p) => err(Status::Busy, device_phase(p).into(), 0),
        MachineError::NoSession => err(Status::NoSession, 0, 0),
        MachineError::Incomplete { received, .. } => err(Status::Incomplete, 0, received),
        MachineError::TooLarge(n) => err(Status::TooLarge, 0, n),
        MachineError::Flash(_) | MachineError::Layout(_) => err(Status::FlashError, 0, 0),
    }
}

impl<'m, 'd, F: NorFlash, C: CodeStore, const B: usize> MachineServer<'m, 'd, F, C, B>
where
    F::Error: core::fmt::Debug,
{
    /// Serve `machine`; `uid`, `max_frame` and `window` as [`crate::serve::Server::new`].
    pub fn new(
        machine: Machine<'m, 'd, F>,
        codes: C,
        uid: &'m [u8],
        max_frame: u16,
        window: u32,
    ) -> Self {
        Self {
            machine,
            codes,
            uid,
            max_frame,
            window,
            begin: BeginBuffer::new(),
            reboot: false,
        }
    }

    /// The machine.
    pub fn machine(&mut self) -> &mut Machine<'m, 'd, F> {
        &mut self.machine
    }

    /// Give the machine back.
    pub fn into_machine(self) -> Machine<'m, 'd, F> {
        self.machine
    }

    /// True once a REBOOT was answered: the caller restarts the main MCU now (or runs
    /// [`Machine::boot`]).
    pub fn take_reboot(&mut self) -> bool {
        core::mem::take(&mut self.reboot)
    }

    /// Handle one raw frame; the encoded answer goes to `out` (at least
    /// `encoded_max(1200)` bytes for MACHINE with 16 members). `None`: nothing to send.
    pub fn handle(&mut self, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        let Ok((seq, req)) = Request::parse(frame) else {
            return unparsable(frame, out);
        };
        let mut code = [0u8; 128];
        let phase = || device_phase(self.machine.record().phase);
        let r = match req {
            Request::Hello { version, .. } if version != PROTO_VERSION => {
                err(Status::Version, PROTO_VERSION, 0)
            }
            Request::Hello { .. } => Response::Hello {
                version: PROTO_VERSION,
                max_frame: self.max_frame,
                window: self.window,
                codecs: 0b111,
                max_begin: B as u32,
            },
            Request::Info => return self.info(seq, out),
            Request::Machine => return self.machine_info(seq, out),
            Request::Begin {
                total,
                offset,
                data,
            } => self.begin_piece(total, offset, data),
            Request::Data { offset, data } => match self.machine.write(offset, data) {
                Ok(next) => Response::DataAck { next },
                Err(e) => machine_err(e),
            },
            Request::Status => {
                let st = self.machine.status();
                Response::Status {
                    phase: device_phase(st.phase),
                    done: st.done,
                    total: st.total,
                    boot_slot: 0,
                }
            }
            Request::Finish => self.done_or(|m| m.finish()),
            Request::Reboot { if_phase } => {
                let now = phase();
                if if_phase.is_none_or(|p| p == now) {
                    self.reboot = true;
                }
                Response::Done { phase: now }
            }
            Request::Confirm => self.done_or(|m| m.confirm()),
            Request::Abort => self.done_or(|m| m.abort()),
            Request::Revert => err(Status::Busy, phase().into(), 0),
            // The main MCU tells its modules; it is not told.
            Request::MachineNote { .. } => err(Status::UnknownCommand, 0, 0),
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
                Ok(()) => Response::Done { phase: phase() },
                Err(s) => err(s, 0, 0),
            },
        };
        r.encode(seq, out)
    }

    fn done_or(
        &mut self,
        f: impl FnOnce(&mut Machine<'m, 'd, F>) -> Result<(), MachineError<F::Error>>,
    ) -> Response<'static> {
        match f(&mut self.machine) {
            Ok(()) => Response::Done {
                phase: device_phase(self.machine.record().phase),
            },
            Err(e) => machine_err(e),
        }
    }

    fn begin_piece(&mut self, total: u32, offset: u32, data: &[u8]) -> Response<'static> {
        let (hd, man, sig) = match self.begin.piece(total, offset, data) {
            Ok(parts) => parts,
            Err(r) => return r.response(),
        };
        match self.machine.begin(hd, man, sig) {
            Ok((resume, payload_len)) => Response::Accepted {
                resume,
                payload_len,
            },
            Err(e) => machine_err(e),
        }
    }

    fn member_states(&mut self) -> [Option<MemberState>; MAX_MEMBERS] {
        let mut st = [None; MAX_MEMBERS];
        for (slot, m) in st.iter_mut().zip(self.machine.members().iter_mut()) {
            *slot = m.state().ok();
        }
        st
    }

    fn info(&mut self, seq: u8, out: &mut [u8]) -> Option<usize> {
        let st = self.machine.status();
        // The first member (the main MCU's firmware) stands for the machine in INFO.
        let first = self.member_states()[0];
        let image = first.and_then(|f| f.running);
        let boot_slot = first.map_or(0, |f| f.boot_slot);
        let id = self.machine.identity();
        let info = Info {
            product: id.product_id,
            hardware: id.hardware_id,
            uid: self.uid,
            mode: u8::from(first.is_some_and(|f| f.ab)),
            boot_slot,
            phase: device_phase(st.phase),
            done: st.done,
            total: st.total,
            running: image.as_ref().map(|i| ImageEntry {
                slot: boot_slot,
                name: i.name(),
                version: i.version(),
                size: i.size,
                security_counter: i.security_counter,
                sha256: i.sha256,
            }),
            other: None,
        };
        Response::Info(info).encode(seq, out)
    }

    fn machine_info(&mut self, seq: u8, out: &mut [u8]) -> Option<usize> {
        let states = self.member_states();
        let mut names = [[0u8; 32]; MAX_MEMBERS];
        let mut lens = [0usize; MAX_MEMBERS];
        let count = self.machine.members().len().min(MAX_MEMBERS);
        for (i, m) in self.machine.members().iter().enumerate().take(count) {
            let n = m.name().as_bytes();
            let l = n.len().min(32);
            if let (Some(d), Some(s)) = (names.get_mut(i).and_then(|d| d.get_mut(..l)), n.get(..l))
            {
                d.copy_from_slice(s);
            }
            if let Some(x) = lens.get_mut(i) {
                *x = l;
            }
        }
        let mut raw = [0u8; MAX_MEMBERS * 100];
        let mut at = 0;
        for i in 0..count {
            let state = states.get(i).copied().flatten();
            let (phase, running) = (state.map(|s| s.phase), state.and_then(|s| s.running));
            let name = names
                .get(i)
                .and_then(|n| n.get(..lens.get(i).copied().unwrap_or(0)))
                .and_then(|n| core::str::from_utf8(n).ok())
                .unwrap_or("");
            let e = MemberEntry {
                name,
                phase,
                version: running.as_ref().map_or("", |r| r.version()),
                sha256: running.map_or([0; 32], |r| r.sha256),
            };
            at = MachineInfo::put_member(&mut raw, at, &e)?;
        }
        let st = self.machine.status();
        Response::Machine(MachineInfo {
            phase: st.phase as u8,
            component: st.component,
            done: st.done,
            total: st.total,
            count: count as u8,
            entries: raw.get(..at).unwrap_or(&[]),
        })
        .encode(seq, out)
    }
}

impl<F: NorFlash, C: CodeStore, const B: usize> Handler for MachineServer<'_, '_, F, C, B>
where
    F::Error: core::fmt::Debug,
{
    fn handle(&mut self, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        MachineServer::handle(self, frame, out)
    }
    fn take_reboot(&mut self) -> bool {
        MachineServer::take_reboot(self)
    }
}
