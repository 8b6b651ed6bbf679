//! The host side of a push, sans-IO: bytes in ([`Push::handle_input`]), frames out
//! ([`Push::poll_transmit`]), time in (`now` in microseconds, [`Push::on_tick`]). The caller
//! owns the link, the clock and reconnection; the same engine runs over a serial port, the
//! link simulator and BLE.
//!
//! | stage | sends | until |
//! |---|---|---|
//! | hello | HELLO | HELLO answer (version, frame size, window, BEGIN limit) |
//! | info | INFO | the device's identity and running image (for error messages) |
//! | begin | BEGIN pieces | ACCEPTED (resume offset) or a refusal |
//! | data | DATA frames while less than a window is unacknowledged | every byte acknowledged |
//! | finish | FINISH | DONE (the device verified the image: pending) |
//! | reboot | REBOOT, then STATUS until the device answers again | phase testing (or the phase it reports) |
//! | confirm | CONFIRM (if asked) | DONE |
//!
//! Requests are retransmitted after their timeout; a duplicate is harmless on the device.
//! DATA uses cumulative acknowledgement with go-back-N. Each DATA frame carries a tag in
//! its sequence byte, which the device echoes, so the push knows which frame an
//! acknowledgement answers:
//!
//! | acknowledgement | of a frame | means | the push |
//! |---|---|---|---|
//! | moves forward | any | bytes arrived | sends on |
//! | stays | that starts past it | a frame before it was lost | two of these: resends from the first unacknowledged byte (fast retransmit) |
//! | stays | that it already covers | a duplicate arrived | nothing (it is no sign of loss) |
//!
//! No acknowledgement for the acknowledgement timeout: the push sends one probe frame (of
//! [`MIN_CHUNK`] bytes) from the first unacknowledged byte. If the next acknowledgement
//! answers a frame sent before the timeout, the device was only slow (a flash erase, a busy
//! radio): the push goes on after what it had sent, and nothing else is sent twice. If it
//! answers the probe, frames were lost: the push resends from there. A dead line or device
//! costs a probe per timeout, not a window. After [`Push::reconnected`] (a new link or a device reset) the
//! push starts over at HELLO and the device says where to resume.

use super::frame::FrameDecoder;
use super::msg::{Phase, RefuseReason, Request, Response, Status, PROTO_VERSION};
use crate::package::{Header, HEADER_LEN, SIGNATURE_LEN};

/// Smallest DATA / BEGIN piece the push shrinks to on a noisy line.
pub const MIN_CHUNK: usize = 64;

/// Timeouts and limits, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// HELLO, INFO, STATUS, CONFIRM, ABORT.
    pub request: u64,
    /// BEGIN (the device verifies a signature).
    pub begin: u64,
    /// FINISH (the device hashes the new image).
    pub finish: u64,
    /// From REBOOT until the device answers again (it may swap images first).
    pub reboot: u64,
    /// No DATA acknowledgement for this long: probe from the first unacknowledged byte.
    pub ack: u64,
    /// Tries per request, and acknowledgement timeouts in a row, before giving up.
    pub retries: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request: 500_000,
            begin: 5_000_000,
            finish: 30_000_000,
            reboot: 60_000_000,
            ack: 1_000_000,
            retries: 10,
        }
    }
}

/// What the push does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushConfig {
    /// Largest payload bytes per DATA frame (capped by the device's frame size).
    pub chunk: usize,
    /// Restart the device after FINISH so it installs the update.
    pub reboot: bool,
    /// Confirm the new image after the reboot (otherwise it must confirm itself).
    pub confirm: bool,
    /// Timeouts.
    pub timeouts: Timeouts,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            chunk: 1024,
            reboot: true,
            confirm: false,
            timeouts: Timeouts::default(),
        }
    }
}

/// Where the push is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Negotiating.
    Hello,
    /// Reading the device's identity.
    Info,
    /// Sending header, manifest and signature.
    Begin,
    /// Sending the payload.
    Data,
    /// Waiting for the device to verify.
    Finish,
    /// Waiting for the device to restart.
    Reboot,
    /// Confirming.
    Confirm,
    /// Finished.
    Done,
}

/// A short string kept without a heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text<const N: usize> {
    b: [u8; N],
    n: u8,
}

impl<const N: usize> Text<N> {
    /// Empty.
    pub const fn empty() -> Self {
        Self { b: [0; N], n: 0 }
    }
    fn set(s: &str) -> Self {
        let mut t = Self::empty();
        let mut n = s.len().min(N).min(255);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        if let (Some(d), Some(src)) = (t.b.get_mut(..n), s.as_bytes().get(..n)) {
            d.copy_from_slice(src);
        }
        t.n = n as u8;
        t
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.b.get(..usize::from(self.n)).unwrap_or(&[])).unwrap_or("")
    }
}

/// What the device said about itself (from INFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Product id.
    pub product: Text<64>,
    /// Hardware id.
    pub hardware: Text<64>,
    /// Running component name.
    pub component: Text<32>,
    /// Running version (empty if none recorded).
    pub version: Text<32>,
    /// Update phase when asked.
    pub phase: Phase,
}

/// Why a push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The file is not a package.
    BadPackage,
    /// The device speaks another protocol version.
    Version {
        /// The device's.
        device: u8,
    },
    /// The device's BEGIN buffer is smaller than this package's header and manifest.
    ManifestTooLarge {
        /// Bytes needed.
        need: u32,
        /// Bytes the device takes.
        max: u32,
    },
    /// The device refused the package.
    Refused {
        /// Why.
        reason: RefuseReason,
        /// The component it concerns (index in the package; a machine names the member's).
        component: u8,
    },
    /// The device is in a state that does not allow this (e.g. a trial image not yet
    /// confirmed).
    Busy {
        /// Its phase.
        phase: Phase,
    },
    /// The device reported an error.
    Device {
        /// Status.
        status: Status,
        /// Detail byte.
        detail: u8,
        /// Value (a machine: the component index).
        value: u32,
    },
    /// No answer in time.
    Timeout {
        /// Where.
        stage: Stage,
    },
    /// An answer that makes no sense here.
    Unexpected {
        /// Where.
        stage: Stage,
    },
}

/// The result of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The device's phase at the end.
    pub phase: Phase,
    /// Payload length.
    pub payload_len: u32,
    /// Where the first accepted BEGIN resumed (0: from the start).
    pub resumed_from: u32,
    /// Payload bytes sent in all (first sends and retransmissions).
    pub sent: u64,
    /// Payload bytes sent again (go-back-N).
    pub resent: u64,
    /// Times the push restarted at HELLO (reconnects, device resets).
    pub restarts: u32,
    /// The largest resume offset a device answered (0: never resumed mid-payload).
    pub max_resume: u32,
}

/// Progress for a bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushProgress {
    /// Stage.
    pub stage: Stage,
    /// Payload bytes acknowledged.
    pub acked: u32,
    /// Payload length (0 until accepted).
    pub total: u32,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    deadline: u64,
    tries: u32,
    due: bool,
}

/// One push of one package to one device. See the module documentation.
#[derive(Debug, Clone)]
pub struct Push<'p> {
    begin_blob: &'p [u8],
    payload: &'p [u8],
    cfg: PushConfig,
    stage: Stage,
    seq: u8,
    req: Option<Pending>,
    rx: FrameDecoder<1024>,
    // negotiated
    window: u32,
    /// Current frame payload size: halved on loss, doubled back after a run of clean
    /// acknowledgements (noisy lines get short frames that still pass).
    chunk: usize,
    chunk_max: usize,
    streak: u32,
    max_begin: u32,
    // begin
    begin_next: u32,
    // data
    payload_len: u32,
    acked: u32,
    next_send: u32,
    dupacks: u32,
    recover: u32,
    ack_deadline: u64,
    ack_timeouts: u32,
    reboot_deadline: u64,
    info: Option<DeviceInfo>,
    outcome: Option<Result<Outcome, PushError>>,
    stats: Outcome,
    accepted_once: bool,
    /// Highest payload offset ever sent (bytes below it sent again count as resent).
    high_water: u32,
    /// The tag of the next DATA frame, and where each of the last 256 began (by tag): an
    /// acknowledgement is read against the frame it answers. At most a window is in flight,
    /// `window / MIN_CHUNK` = 128 frames for the usual 8 KiB, so a tag is not reused while its
    /// frame may still be answered (if it were, one acknowledgement would be misread: a
    /// resend too many or too few, never a wrong byte, since the device says where it is).
    tag: u8,
    sent_at: [u32; 256],
    /// After a timeout: the probe's tag and how far the push had sent before it.
    probe: Option<(u8, u32)>,
}

impl<'p> Push<'p> {
    /// A push of the package `pkg` (the whole file).
    pub fn new(pkg: &'p [u8], cfg: PushConfig) -> Result<Self, PushError> {
        let h = Header::parse(pkg).map_err(|_| PushError::BadPackage)?;
        let begin_len = HEADER_LEN + h.manifest_len as usize + SIGNATURE_LEN;
        let begin_blob = pkg.get(..begin_len).ok_or(PushError::BadPackage)?;
        let payload = pkg.get(begin_len..).ok_or(PushError::BadPackage)?;
        if payload.len() as u64 != h.payload_len {
            return Err(PushError::BadPackage);
        }
        Ok(Self {
            begin_blob,
            payload,
            cfg,
            stage: Stage::Hello,
            seq: 0,
            req: Some(Pending {
                deadline: 0,
                tries: 0,
                due: true,
            }),
            rx: FrameDecoder::new(),
            window: 0,
            chunk: cfg.chunk.max(1),
            chunk_max: cfg.chunk.max(1),
            streak: 0,
            max_begin: 0,
            begin_next: 0,
            payload_len: 0,
            acked: 0,
            next_send: 0,
            dupacks: 0,
            recover: 0,
            ack_deadline: 0,
            ack_timeouts: 0,
            reboot_deadline: 0,
            info: None,
            outcome: None,
            stats: Outcome {
                phase: Phase::Idle,
                payload_len: 0,
                resumed_from: 0,
                sent: 0,
                resent: 0,
                restarts: 0,
                max_resume: 0,
            },
            accepted_once: false,
            high_water: 0,
            tag: 0,
            sent_at: [0; 256],
            probe: None,
        })
    }

    /// The result, once finished.
    pub fn outcome(&self) -> Option<Result<Outcome, PushError>> {
        self.outcome
    }

    /// The name of component `i` of the package being pushed (`None`: no such component).
    pub fn component_name(&self, i: u8) -> Option<&'p str> {
        let h = Header::parse(self.begin_blob).ok()?;
        let m = self
            .begin_blob
            .get(HEADER_LEN..HEADER_LEN + h.manifest_len as usize)?;
        let man = crate::package::Manifest::parse(m, &h).ok()?;
        man.components().nth(usize::from(i))?.ok().map(|c| c.name)
    }

    /// Number of components in the package being pushed.
    pub fn component_count(&self) -> usize {
        (0..=u8::MAX)
            .take_while(|&i| self.component_name(i).is_some())
            .count()
    }

    /// What the device said in INFO (after the info stage).
    pub fn device(&self) -> Option<&DeviceInfo> {
        self.info.as_ref()
    }

    /// Progress.
    pub fn progress(&self) -> PushProgress {
        PushProgress {
            stage: self.stage,
            acked: self.acked,
            total: self.payload_len,
        }
    }

    /// The link was re-established or the device restarted: start over at HELLO (the
    /// device reports where to resume).
    pub fn reconnected(&mut self, now: u64) {
        if self.outcome.is_some() {
            return;
        }
        self.rx.clear();
        self.stats.restarts += 1;
        self.stage = Stage::Hello;
        self.begin_next = 0;
        self.request(now);
    }

    fn fail(&mut self, e: PushError) {
        self.outcome = Some(Err(e));
        self.req = None;
    }

    fn timeout_for(&self) -> u64 {
        let t = &self.cfg.timeouts;
        match self.stage {
            Stage::Begin => t.begin,
            Stage::Finish => t.finish,
            _ => t.request,
        }
    }

    /// Queue the current stage's request now (a new sequence number).
    fn request(&mut self, now: u64) {
        self.seq = self.seq.wrapping_add(1);
        self.req = Some(Pending {
            deadline: now,
            tries: 0,
            due: true,
        });
    }

    fn current_request(&self) -> Option<Request<'p>> {
        Some(match self.stage {
            Stage::Hello => Request::Hello {
                version: PROTO_VERSION,
                max_frame: 1024,
            },
            Stage::Info => Request::Info,
            Stage::Begin => {
                let piece = self.chunk.max(1);
                let at = self.begin_next as usize;
                let end = (at + piece).min(self.begin_blob.len());
                Request::Begin {
                    total: self.begin_blob.len() as u32,
                    offset: self.begin_next,
                    data: self.begin_blob.get(at..end)?,
                }
            }
            Stage::Finish => Request::Finish,
            // Only if still pending: a retransmitted REBOOT must not restart a trial image
            // (that would revert it).
            Stage::Reboot if self.reboot_deadline == 0 => Request::Reboot {
                if_phase: Some(Phase::Pending),
            },
            Stage::Reboot => Request::Status,
            Stage::Confirm => Request::Confirm,
            Stage::Data | Stage::Done => return None,
        })
    }

    /// The next frame to send, if any, encoded into `out` (at least
    /// `encoded_max(chunk + 10)` bytes).
    pub fn poll_transmit(&mut self, now: u64, out: &mut [u8]) -> Option<usize> {
        if self.outcome.is_some() {
            return None;
        }
        if let Some(p) = self.req {
            if p.due {
                let r = self.current_request()?;
                let n = r.encode(self.seq, out)?;
                let timeout = if self.stage == Stage::Reboot && self.reboot_deadline != 0 {
                    self.cfg.timeouts.request
                } else {
                    self.timeout_for()
                };
                self.req = Some(Pending {
                    deadline: now + timeout,
                    tries: p.tries + 1,
                    due: false,
                });
                return Some(n);
            }
        }
        // While probing, only the probe is in flight.
        let probing = self.probe.is_some_and(|(t, _)| t != self.tag);
        if self.stage == Stage::Data
            && !probing
            && self.next_send < self.payload_len
            && self.next_send - self.acked < self.window
        {
            let at = self.next_send as usize;
            let room = (self.window - (self.next_send - self.acked)) as usize;
            // A probe only has to be answered: the smallest frame.
            let most = if self.probe.is_some() {
                MIN_CHUNK
            } else {
                self.chunk
            };
            let n = most.min(room).min(self.payload.len().saturating_sub(at));
            let data = self.payload.get(at..at + n)?;
            let len = Request::Data {
                offset: self.next_send,
                data,
            }
            .encode(self.tag, out)?;
            if let Some(at) = self.sent_at.get_mut(usize::from(self.tag)) {
                *at = self.next_send;
            }
            self.tag = self.tag.wrapping_add(1);
            if self.next_send < self.high_water {
                self.stats.resent += u64::from((self.high_water - self.next_send).min(n as u32));
            }
            self.stats.sent += n as u64;
            self.next_send += n as u32;
            self.high_water = self.high_water.max(self.next_send);
            return Some(len);
        }
        None
    }

    /// When [`Push::on_tick`] must be called next (absolute microseconds).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.outcome.is_some() {
            return None;
        }
        let r = self.req.map(|p| p.deadline);
        let a = (self.stage == Stage::Data).then_some(self.ack_deadline);
        match (r, a) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }

    /// Handle timeouts.
    pub fn on_tick(&mut self, now: u64) {
        if self.outcome.is_some() {
            return;
        }
        let retries = self.cfg.timeouts.retries;
        if let Some(p) = self.req {
            if !p.due && now >= p.deadline {
                let rebooting = self.stage == Stage::Reboot && self.reboot_deadline != 0;
                if rebooting && now < self.reboot_deadline {
                    self.req = Some(Pending { due: true, ..p });
                } else if rebooting || p.tries >= retries {
                    let stage = self.stage;
                    self.fail(PushError::Timeout { stage });
                    return;
                } else {
                    if self.stage == Stage::Begin {
                        self.shrink();
                    }
                    self.req = Some(Pending { due: true, ..p });
                }
            }
        }
        if self.stage == Stage::Data && now >= self.ack_deadline {
            self.ack_timeouts += 1;
            if self.ack_timeouts > retries {
                self.fail(PushError::Timeout { stage: Stage::Data });
                return;
            }
            self.on_ack_timeout(now);
        }
    }

    fn shrink(&mut self) {
        self.chunk = (self.chunk / 2).max(MIN_CHUNK.min(self.chunk_max));
        self.streak = 0;
    }

    /// Frames were lost: resend from the first unacknowledged byte.
    fn go_back(&mut self, now: u64) {
        self.shrink();
        self.probe = None;
        self.next_send = self.acked;
        self.recover = self.high_water;
        self.dupacks = 0;
        self.ack_deadline = now + self.cfg.timeouts.ack;
    }

    /// No acknowledgement in time: send one small frame from the first unacknowledged byte
    /// and nothing more; the next acknowledgement tells loss from a slow device.
    fn on_ack_timeout(&mut self, now: u64) {
        let sent = self.probe.map_or(self.next_send, |(_, sent)| sent);
        self.next_send = self.acked;
        self.recover = self.high_water;
        self.dupacks = 0;
        // The probe's tag is the next frame's (`poll_transmit` sends it first).
        self.probe = Some((self.tag, sent));
        self.ack_deadline = now + self.cfg.timeouts.ack;
    }

    /// Feed bytes received from the device.
    pub fn handle_input(&mut self, now: u64, mut input: &[u8]) {
        while !input.is_empty() {
            let (n, frame) = self.rx.feed(input);
            input = input.get(n..).unwrap_or(&[]);
            if let Some(Ok(f)) = frame {
                let mut copy = [0u8; 1024];
                let len = f.len().min(copy.len());
                if let (Some(d), Some(s)) = (copy.get_mut(..len), f.get(..len)) {
                    d.copy_from_slice(s);
                }
                if let Ok((seq, r)) = Response::parse(copy.get(..len).unwrap_or(&[])) {
                    self.on_response(now, seq, r);
                }
            }
        }
    }

    fn on_response(&mut self, now: u64, seq: u8, r: Response<'_>) {
        if self.outcome.is_some() {
            return;
        }
        if let Response::DataAck { next } = r {
            self.on_ack(now, seq, next);
            return;
        }
        if seq != self.seq || self.req.is_none() {
            // A late answer to an earlier request, or an error about a DATA frame.
            if let (Response::Error { status, value, .. }, Stage::Data) = (r, self.stage) {
                self.on_data_error(now, status, value);
            }
            return;
        }
        let stage = self.stage;
        match (stage, r) {
            (
                Stage::Hello,
                Response::Hello {
                    version,
                    max_frame,
                    window,
                    max_begin,
                    ..
                },
            ) => {
                if version != PROTO_VERSION {
                    return self.fail(PushError::Version { device: version });
                }
                self.window = window.max(1);
                self.chunk = self
                    .cfg
                    .chunk
                    .min(usize::from(max_frame).saturating_sub(16))
                    .max(1);
                self.max_begin = max_begin;
                if self.begin_blob.len() as u32 > max_begin {
                    return self.fail(PushError::ManifestTooLarge {
                        need: self.begin_blob.len() as u32,
                        max: max_begin,
                    });
                }
                self.stage = Stage::Info;
                self.request(now);
            }
            (Stage::Info, Response::Info(i)) => {
                let (component, version) = i.running.map_or(("", ""), |e| (e.name, e.version));
                self.info = Some(DeviceInfo {
                    product: Text::set(i.product),
                    hardware: Text::set(i.hardware),
                    component: Text::set(component),
                    version: Text::set(version),
                    phase: i.phase,
                });
                self.stage = Stage::Begin;
                self.begin_next = 0;
                self.request(now);
            }
            (Stage::Begin, Response::BeginMore { next }) => {
                self.begin_next = next.min(self.begin_blob.len() as u32);
                self.request(now);
            }
            (
                Stage::Begin,
                Response::Accepted {
                    resume,
                    payload_len,
                },
            ) => {
                if payload_len as usize != self.payload.len() || resume > payload_len {
                    return self.fail(PushError::Unexpected { stage });
                }
                if !self.accepted_once {
                    self.stats.resumed_from = resume;
                    self.accepted_once = true;
                }
                self.stats.max_resume = self.stats.max_resume.max(resume);
                self.payload_len = payload_len;
                self.stats.payload_len = payload_len;
                self.acked = resume;
                self.next_send = resume;
                self.recover = resume;
                self.high_water = self.high_water.max(resume);
                self.dupacks = 0;
                self.ack_timeouts = 0;
                self.probe = None;
                self.ack_deadline = now + self.cfg.timeouts.ack;
                self.req = None;
                self.stage = Stage::Data;
                if resume == payload_len {
                    self.stage = Stage::Finish;
                    self.request(now);
                }
            }
            (Stage::Finish, Response::Done { phase: p }) => {
                self.stats.phase = p;
                if self.cfg.reboot {
                    self.stage = Stage::Reboot;
                    self.reboot_deadline = 0;
                    self.request(now);
                } else {
                    self.done();
                }
            }
            (Stage::Reboot, Response::Done { phase: p })
                if self.reboot_deadline == 0 && p != Phase::Pending =>
            {
                // The REBOOT had already happened (its answer was lost): ask the status.
                self.reboot_deadline = now + self.cfg.timeouts.reboot;
                self.request(now);
            }
            (Stage::Reboot, Response::Done { .. }) if self.reboot_deadline == 0 => {
                // The device restarts now; ask for its status until it answers.
                self.reboot_deadline = now + self.cfg.timeouts.reboot;
                self.request(now);
                if let Some(p) = self.req.as_mut() {
                    p.deadline = now + self.cfg.timeouts.request;
                    p.due = false;
                }
            }
            (Stage::Reboot, Response::Status { phase: p, .. }) => {
                if p == Phase::Installing || p == Phase::Reverting {
                    return; // still swapping: keep asking
                }
                self.stats.phase = p;
                if self.cfg.confirm && p == Phase::Testing {
                    self.stage = Stage::Confirm;
                    self.request(now);
                } else {
                    self.done();
                }
            }
            (Stage::Confirm, Response::Done { phase: p }) => {
                self.stats.phase = p;
                self.done();
            }
            (
                _,
                Response::Error {
                    status,
                    detail,
                    value,
                },
            ) => {
                self.on_error(now, status, detail, value);
            }
            _ => self.fail(PushError::Unexpected { stage }),
        }
    }

    fn done(&mut self) {
        self.stage = Stage::Done;
        self.req = None;
        self.outcome = Some(Ok(self.stats));
    }

    fn on_error(&mut self, now: u64, status: Status, detail: u8, value: u32) {
        match status {
            Status::Refused => self.fail(match RefuseReason::try_from(detail) {
                Ok(reason) => PushError::Refused {
                    reason,
                    component: u8::try_from(value).unwrap_or(u8::MAX),
                },
                Err(_) => PushError::Device {
                    status,
                    detail,
                    value,
                },
            }),
            Status::Busy => self.fail(match Phase::try_from(detail) {
                Ok(phase) => PushError::Busy { phase },
                Err(_) => PushError::Device {
                    status,
                    detail,
                    value,
                },
            }),
            Status::Version => self.fail(PushError::Version { device: detail }),
            Status::TooLarge if self.stage == Stage::Begin => {
                self.fail(PushError::ManifestTooLarge {
                    need: self.begin_blob.len() as u32,
                    max: value,
                })
            }
            // The device lost its session (reset) or wants other BEGIN bytes: start over.
            Status::NoSession => self.reconnected(now),
            Status::Gap if self.stage == Stage::Begin => {
                self.begin_next = value;
                self.request(now);
            }
            Status::Incomplete if self.stage == Stage::Finish => {
                // Some DATA was lost after all: resend from what the device has.
                self.acked = value.min(self.payload_len);
                self.stage = Stage::Data;
                self.req = None;
                self.go_back(now);
            }
            _ => self.fail(PushError::Device {
                status,
                detail,
                value,
            }),
        }
    }

    fn on_data_error(&mut self, now: u64, status: Status, value: u32) {
        match status {
            Status::NoSession => self.reconnected(now),
            _ => self.fail(PushError::Device {
                status,
                detail: 0,
                value,
            }),
        }
    }

    fn on_ack(&mut self, now: u64, tag: u8, next: u32) {
        if self.stage != Stage::Data {
            return;
        }
        let began = self.sent_at.get(usize::from(tag)).copied().unwrap_or(0);
        if let Some((probe, sent)) = self.probe {
            if next > self.acked && next <= self.payload_len {
                self.probe = None;
                if tag == probe {
                    // The probe got through where the frames before it did not: they
                    // were lost; resend the rest from what the device has (below).
                    self.shrink();
                    self.recover = self.high_water;
                } else {
                    // A frame sent before the timeout: the device was slow, not the line
                    // lossy. Go on after what was sent (the probe's copy is the only
                    // resend); no resend happened, so a later gap may be fast-retransmitted.
                    self.next_send = sent.max(next);
                    self.recover = next;
                }
            }
        }
        if next > self.acked && next <= self.payload_len {
            self.acked = next;
            self.streak += 1;
            if self.streak >= 8 && self.chunk < self.chunk_max {
                self.chunk = (self.chunk * 2).min(self.chunk_max);
                self.streak = 0;
            }
            self.dupacks = 0;
            self.ack_timeouts = 0;
            self.ack_deadline = now + self.cfg.timeouts.ack;
            if self.next_send < self.acked {
                self.next_send = self.acked;
            }
            if self.acked == self.payload_len {
                self.stage = Stage::Finish;
                self.request(now);
            }
        } else if next == self.acked && self.next_send > self.acked && began > next {
            // The frame answered starts past what the device has: one before it was lost.
            // (An answer to a frame it already has is a duplicate's, not a loss.)
            self.dupacks += 1;
            if self.dupacks >= 2 && self.acked >= self.recover {
                self.go_back(now);
            }
        }
    }
}
