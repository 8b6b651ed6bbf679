//! Messages: requests (host to device) and responses (device to host) as plain data, with
//! their byte layouts. All integers little-endian; `str` is a `u8` length and bytes.

use super::frame::FrameWriter;

/// Protocol version this code speaks.
pub const PROTO_VERSION: u8 = 1;

/// Defines a `#[repr(u8)]` protocol enum: the wire byte, `TryFrom<u8>` (unknown bytes are
/// a [`BadMessage`]), `From<Self> for u8`, and one table of names and sentences.
macro_rules! wire_enum {
    (
        $(#[$m:meta])*
        pub enum $name:ident {
            $( $(#[$vm:meta])* $v:ident = $n:literal => ($label:literal, $text:literal), )*
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[$vm])* $v = $n, )*
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];

            /// Short lower-case name (logs, JSON).
            pub const fn name(self) -> &'static str {
                match self { $($name::$v => $label,)* }
            }

            /// A sentence for people.
            pub const fn text(self) -> &'static str {
                match self { $($name::$v => $text,)* }
            }
        }

        impl TryFrom<u8> for $name {
            type Error = BadMessage;
            fn try_from(v: u8) -> Result<Self, BadMessage> {
                match v {
                    $($n => Ok($name::$v),)*
                    _ => Err(BadMessage),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                v as u8
            }
        }
    };
}

wire_enum! {
    /// Request kinds (host to device).
    pub enum Command {
        /// Negotiate version and sizes.
        Hello = 0x01 => ("hello", "negotiate version and sizes"),
        /// Identity, images and update state.
        Info = 0x02 => ("info", "identity, images and update state"),
        /// A piece of header ‖ manifest ‖ signature.
        Begin = 0x03 => ("begin", "a piece of the package's header, manifest and signature"),
        /// Payload bytes at an offset.
        Data = 0x04 => ("data", "payload bytes at an offset"),
        /// The update state.
        Status = 0x05 => ("status", "the update state"),
        /// All payload sent: verify and mark pending.
        Finish = 0x06 => ("finish", "all payload sent: verify and mark pending"),
        /// Restart (the boot step installs a pending update).
        Reboot = 0x07 => ("reboot", "restart; the boot step installs a pending update"),
        /// The running trial image is good.
        Confirm = 0x08 => ("confirm", "the running trial image is good"),
        /// Give up the update in progress.
        Abort = 0x09 => ("abort", "give up the update in progress"),
        /// Read the chip's unique id.
        ReadUid = 0x0A => ("read-uid", "read the chip's unique id"),
        /// Store an activation code.
        WriteCode = 0x0B => ("write-code", "store an activation code"),
        /// Read the stored activation code.
        ReadCode = 0x0C => ("read-code", "read the stored activation code"),
        /// Take the previous image back (the trial one, or the one just confirmed while the
        /// previous is still in the other slot); the next restart runs it.
        Revert = 0x0D => ("revert", "take the previous image back at the next restart"),
        /// The whole machine's update state and each component (a machine's main MCU).
        Machine = 0x0E => ("machine", "the whole machine's update state and components"),
        /// The machine's update state, told by the main MCU to a module.
        MachineNote = 0x0F => ("machine-note", "the machine's update state, told to a module"),
    }
}

wire_enum! {
    /// Response kinds (device to host).
    pub enum ResponseKind {
        /// HELLO answer.
        Hello = 0x81 => ("hello", "HELLO answer"),
        /// INFO answer.
        Info = 0x82 => ("info", "INFO answer"),
        /// BEGIN piece taken, more expected.
        BeginMore = 0x83 => ("begin-more", "BEGIN piece taken, more expected"),
        /// Package accepted; send the payload from the resume offset.
        Accepted = 0x84 => ("accepted", "package accepted; send the payload from the resume offset"),
        /// Cumulative acknowledgement of payload bytes.
        DataAck = 0x85 => ("data-ack", "cumulative acknowledgement of payload bytes"),
        /// STATUS answer.
        Status = 0x86 => ("status", "STATUS answer"),
        /// Done (FINISH, REBOOT, CONFIRM, ABORT, WRITE_CODE).
        Done = 0x87 => ("done", "request done"),
        /// READ_UID / READ_CODE answer.
        Bytes = 0x88 => ("bytes", "READ_UID or READ_CODE answer"),
        /// MACHINE answer.
        Machine = 0x89 => ("machine", "MACHINE answer"),
        /// Refusal or failure with a status code.
        Error = 0xFF => ("error", "refusal or failure with a status code"),
    }
}

wire_enum! {
    /// Status codes of [`Response::Error`] (never renumbered).
    pub enum Status {
        /// The request frame is malformed.
        BadRequest = 1 => ("bad-request", "the request frame is malformed"),
        /// Unknown request kind.
        UnknownCommand = 2 => ("unknown-command", "the device does not know this request"),
        /// Not possible in the current update state (the detail byte holds the phase).
        Busy = 3 => ("busy", "not possible in the current update state"),
        /// DATA or FINISH without an accepted BEGIN (e.g. after a device reset): BEGIN again.
        NoSession = 4 => ("no-session", "no update session (the device was reset)"),
        /// Data beyond the next expected offset (the value holds it).
        Gap = 5 => ("gap", "data beyond the next expected offset"),
        /// More payload than the manifest declares.
        TooLong = 6 => ("too-long", "more payload than the manifest declares"),
        /// FINISH before all the payload arrived (the value holds what arrived).
        Incomplete = 7 => ("incomplete", "FINISH before all the payload arrived"),
        /// The patched image does not match the manifest's hash; update abandoned.
        TargetHash = 8 => ("target-hash", "the patched image does not match the package's hash; update abandoned"),
        /// The payload stream is corrupt.
        CorruptPayload = 9 => ("corrupt-payload", "the payload stream is corrupt"),
        /// The device's flash failed.
        FlashError = 10 => ("flash-error", "the device's flash failed"),
        /// BEGIN data larger than the device's buffer (the value holds its size).
        TooLarge = 11 => ("too-large", "the package header is larger than the device's buffer"),
        /// Protocol version not supported (the detail byte holds the device's).
        Version = 12 => ("version", "protocol version not supported"),
        /// No activation code stored.
        NoCode = 13 => ("no-code", "no activation code stored"),
        /// An activation code is already stored.
        AlreadyActivated = 14 => ("already-activated", "an activation code is already stored"),
        /// The activation code does not verify for this chip.
        BadCode = 15 => ("bad-code", "the activation code does not verify for this chip"),
        /// The package was refused; the detail byte holds the [`RefuseReason`].
        Refused = 16 => ("refused", "the package was refused"),
        /// A module of the machine does not answer on its link (value: component index).
        ModuleUnreachable = 17 => ("module-unreachable", "a module of the machine does not answer"),
        /// A component failed during the install; every component went back to its old
        /// image (value: component index; detail 1: the machine's self-test failed).
        RolledBack = 18 => ("rolled-back", "a component failed; every component went back to its old image"),
    }
}

wire_enum! {
    /// Why a device refuses a package (the detail byte of a [`Status::Refused`] error; the
    /// device SDK's admission result).
    pub enum RefuseReason {
        /// The header or manifest is malformed.
        Malformed = 1 => ("malformed", "the package header or manifest is malformed"),
        /// Signed by a key this device does not have.
        UnknownKey = 2 => ("unknown-key", "the package is signed by a key this device does not trust"),
        /// The signature does not verify.
        BadSignature = 3 => ("bad-signature", "the package signature does not verify (corrupt or forged)"),
        /// For another product.
        WrongProduct = 4 => ("wrong-product", "the package is for another product"),
        /// For another hardware revision.
        WrongHardware = 5 => ("wrong-hardware", "the package is for another hardware revision"),
        /// The new image does not fit the slot.
        TooLarge = 6 => ("too-large", "the new image does not fit the device's slot"),
        /// The security counter is lower than the installed one.
        Rollback = 7 => ("rollback", "the package's security counter is lower than the installed image's (downgrade)"),
        /// A delta whose base is not the installed image.
        WrongBase = 8 => ("wrong-base", "the delta was made for another base image than the one installed"),
        /// A delta for a component that is not installed.
        NotInstalled = 9 => ("not-installed", "the delta is for a component that is not installed"),
        /// A dependency is neither installed nor in the package.
        MissingDependency = 10 => ("missing-dependency", "a dependency is neither installed nor in the package"),
        /// A dependency is present but older than required.
        DependencyTooOld = 11 => ("dependency-too-old", "a dependency is older than the package requires"),
        /// The package's components do not match this device's slots (the updater takes one
        /// component, named as the device's image).
        Unsupported = 12 => ("unsupported", "the package's components do not match this device's slots"),
        /// A delta whose base, the installed image, no longer matches its recorded SHA-256
        /// (damaged flash): only a full image can repair it.
        InstalledCorrupt = 13 => ("installed-corrupt", "the installed image no longer matches its recorded SHA-256 (damaged flash); send a full image"),
    }
}

impl RefuseReason {
    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

wire_enum! {
    /// Update phases (on the wire and in the device SDK's journal and status).
    pub enum Phase {
        /// Nothing in progress.
        Idle = 0 => ("idle", "nothing in progress"),
        /// A full image is being received.
        Receiving = 1 => ("receiving", "receiving a full image"),
        /// A delta is being received and applied.
        Applying = 2 => ("applying", "receiving and applying a delta"),
        /// Verified; the next boot installs it.
        Pending = 3 => ("pending", "holding the verified update; it installs at the next reset"),
        /// The boot step is swapping the new image in.
        Installing = 4 => ("installing", "swapping the new image in"),
        /// The new image runs on trial.
        Testing = 5 => ("testing", "running the new image on trial (it confirms itself, or reverts at the next reset)"),
        /// The new image confirmed itself.
        Confirmed = 6 => ("confirmed", "running the new image, confirmed"),
        /// The boot step is swapping the old image back.
        Reverting = 7 => ("reverting", "swapping the old image back"),
        /// The trial image did not confirm; the old one runs again.
        Reverted = 8 => ("reverted", "the trial image did not confirm; the old one runs again"),
    }
}

/// The byte of [`Request::Reboot`] that means "restart whatever the phase".
pub const REBOOT_ANY_PHASE: u8 = 0xFF;

/// Why a message does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadMessage;

/// A cursor over a message body.
#[derive(Debug, Clone, Copy)]
pub struct Body<'a>(pub &'a [u8]);

impl<'a> Body<'a> {
    /// Take `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], BadMessage> {
        if self.0.len() < n {
            return Err(BadMessage);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    /// A byte.
    pub fn u8(&mut self) -> Result<u8, BadMessage> {
        Ok(*self.take(1)?.first().ok_or(BadMessage)?)
    }
    /// A `u16`.
    pub fn u16(&mut self) -> Result<u16, BadMessage> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32, BadMessage> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A length-prefixed byte string.
    pub fn short(&mut self) -> Result<&'a [u8], BadMessage> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str, BadMessage> {
        core::str::from_utf8(self.short()?).map_err(|_| BadMessage)
    }
    /// The rest.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.0)
    }
    /// Error unless consumed.
    pub fn end(&self) -> Result<(), BadMessage> {
        self.0.is_empty().then_some(()).ok_or(BadMessage)
    }
}

/// Host to device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// `version u8, max_frame u16` (the host's receive limit).
    Hello {
        /// Host's protocol version.
        version: u8,
        /// Largest raw frame the host accepts.
        max_frame: u16,
    },
    /// No body.
    Info,
    /// `total u32, offset u32, data`: a piece of header ‖ manifest ‖ signature.
    Begin {
        /// Length of the whole blob.
        total: u32,
        /// Where this piece goes.
        offset: u32,
        /// The piece.
        data: &'a [u8],
    },
    /// `offset u32, data`: payload bytes.
    Data {
        /// Payload offset.
        offset: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// No body.
    Status,
    /// No body.
    Finish,
    /// `if_phase u8`: restart only if the update phase is this one (`None`, on the wire
    /// [`REBOOT_ANY_PHASE`]: always), so a
    /// retransmitted REBOOT cannot restart a trial image (which would revert it).
    Reboot {
        /// Required phase, or `0xFF`.
        if_phase: Option<Phase>,
    },
    /// No body.
    Confirm,
    /// No body.
    Abort,
    /// No body.
    ReadUid,
    /// `code` (rest of the body).
    WriteCode {
        /// Binary activation code.
        code: &'a [u8],
    },
    /// No body.
    ReadCode,
    /// No body.
    Revert,
    /// No body.
    Machine,
    /// `phase u8, component u8`: the machine's phase code and the component it is at.
    MachineNote {
        /// Machine phase code ([`MACHINE_PHASES`]).
        phase: u8,
        /// Component index.
        component: u8,
    },
}

impl<'a> Request<'a> {
    /// The kind byte.
    pub fn kind(&self) -> Command {
        match self {
            Request::Hello { .. } => Command::Hello,
            Request::Info => Command::Info,
            Request::Begin { .. } => Command::Begin,
            Request::Data { .. } => Command::Data,
            Request::Status => Command::Status,
            Request::Finish => Command::Finish,
            Request::Reboot { .. } => Command::Reboot,
            Request::Confirm => Command::Confirm,
            Request::Abort => Command::Abort,
            Request::ReadUid => Command::ReadUid,
            Request::WriteCode { .. } => Command::WriteCode,
            Request::ReadCode => Command::ReadCode,
            Request::Revert => Command::Revert,
            Request::Machine => Command::Machine,
            Request::MachineNote { .. } => Command::MachineNote,
        }
    }

    /// Encode as a complete wire frame into `out`; the length, or `None` if `out` is small.
    pub fn encode(&self, seq: u8, out: &mut [u8]) -> Option<usize> {
        let mut w = FrameWriter::new(out, self.kind().into(), seq);
        match self {
            Request::Hello { version, max_frame } => {
                w.bytes(&[*version]).u16(*max_frame);
            }
            Request::Begin {
                total,
                offset,
                data,
            } => {
                w.u32(*total).u32(*offset).bytes(data);
            }
            Request::Data { offset, data } => {
                w.u32(*offset).bytes(data);
            }
            Request::WriteCode { code } => {
                w.bytes(code);
            }
            Request::Reboot { if_phase } => {
                w.bytes(&[if_phase.map_or(REBOOT_ANY_PHASE, u8::from)]);
            }
            Request::MachineNote { phase, component } => {
                w.bytes(&[*phase, *component]);
            }
            _ => {}
        }
        w.finish()
    }

    /// Parse a raw frame (kind, sequence, body); returns the sequence number too.
    pub fn parse(frame: &'a [u8]) -> Result<(u8, Request<'a>), BadMessage> {
        let mut b = Body(frame);
        let kind = b.u8()?;
        let seq = b.u8()?;
        let r = match Command::try_from(kind)? {
            Command::Hello => Request::Hello {
                version: b.u8()?,
                max_frame: b.u16()?,
            },
            Command::Info => Request::Info,
            Command::Begin => Request::Begin {
                total: b.u32()?,
                offset: b.u32()?,
                data: b.rest(),
            },
            Command::Data => Request::Data {
                offset: b.u32()?,
                data: b.rest(),
            },
            Command::Status => Request::Status,
            Command::Finish => Request::Finish,
            Command::Reboot => Request::Reboot {
                if_phase: match b.u8()? {
                    REBOOT_ANY_PHASE => None,
                    p => Some(Phase::try_from(p)?),
                },
            },
            Command::Confirm => Request::Confirm,
            Command::Abort => Request::Abort,
            Command::ReadUid => Request::ReadUid,
            Command::WriteCode => Request::WriteCode { code: b.rest() },
            Command::ReadCode => Request::ReadCode,
            Command::Revert => Request::Revert,
            Command::Machine => Request::Machine,
            Command::MachineNote => Request::MachineNote {
                phase: b.u8()?,
                component: b.u8()?,
            },
        };
        b.end()?;
        Ok((seq, r))
    }
}

/// One installed image, as INFO reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageEntry<'a> {
    /// Slot.
    pub slot: u8,
    /// Component name.
    pub name: &'a str,
    /// Version.
    pub version: &'a str,
    /// Size in bytes.
    pub size: u32,
    /// Security counter.
    pub security_counter: u32,
    /// SHA-256 from the trailer.
    pub sha256: [u8; 32],
}

/// The INFO answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info<'a> {
    /// Product id.
    pub product: &'a str,
    /// Hardware id.
    pub hardware: &'a str,
    /// Chip unique id.
    pub uid: &'a [u8],
    /// 0 = swap, 1 = A/B.
    pub mode: u8,
    /// Slot that boots.
    pub boot_slot: u8,
    /// Update phase.
    pub phase: Phase,
    /// Progress done.
    pub done: u32,
    /// Progress total.
    pub total: u32,
    /// Image in the boot slot.
    pub running: Option<ImageEntry<'a>>,
    /// Image in the other slot.
    pub other: Option<ImageEntry<'a>>,
}

/// A machine's state (MACHINE answer): `phase u8, component u8, done u32, total u32,
/// count u8, count x member`; a member is `str name, phase u8 (0xFF: does not answer),
/// str version (empty: no image), sha256 [32]`. `phase` is the machine's phase code
/// (`docs/WHOLE-MACHINE.md`: 0 idle, 1 staging, 2 staged, 3 installing, 4 trial, 5
/// committing, 6 committed, 7 rolling back, 8 rolled back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineInfo<'a> {
    /// Machine phase code.
    pub phase: u8,
    /// The component the phase is at.
    pub component: u8,
    /// Payload bytes taken.
    pub done: u32,
    /// Payload bytes of the package (0 when none).
    pub total: u32,
    /// Number of members.
    pub count: u8,
    /// The members, encoded (see [`MachineInfo::members`], [`MachineInfo::put_member`]).
    pub entries: &'a [u8],
}

/// Names of the machine phases by code (MACHINE's `phase`; `docs/WHOLE-MACHINE.md`).
pub const MACHINE_PHASES: [&str; 9] = [
    "idle",
    "staging",
    "staged",
    "installing",
    "trial",
    "committing",
    "committed",
    "rolling-back",
    "rolled-back",
];

/// One member of a machine, as MACHINE reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberEntry<'a> {
    /// Component name.
    pub name: &'a str,
    /// Its update phase (`None`: it does not answer).
    pub phase: Option<Phase>,
    /// Running version (empty: no valid image).
    pub version: &'a str,
    /// Running image SHA-256.
    pub sha256: [u8; 32],
}

fn member<'a>(b: &mut Body<'a>) -> Result<MemberEntry<'a>, BadMessage> {
    let name = b.str()?;
    let phase = match b.u8()? {
        0xFF => None,
        p => Some(Phase::try_from(p)?),
    };
    let version = b.str()?;
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(b.take(32)?);
    Ok(MemberEntry {
        name,
        phase,
        version,
        sha256,
    })
}

impl<'a> MachineInfo<'a> {
    /// The members, in the machine's order (a parsed answer's entries are known good).
    pub fn members(&self) -> impl Iterator<Item = Result<MemberEntry<'a>, BadMessage>> + 'a {
        let mut b = Body(self.entries);
        let mut left = self.count;
        core::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            Some(member(&mut b))
        })
    }

    /// Append one member's encoding to `out` at `at`; the new length, or `None` if it does
    /// not fit (names and versions are at most 255 bytes).
    pub fn put_member(out: &mut [u8], at: usize, e: &MemberEntry<'_>) -> Option<usize> {
        let name = e.name.as_bytes();
        let version = e.version.as_bytes();
        let len = 1 + name.len() + 1 + 1 + version.len() + 32;
        let nl = u8::try_from(name.len()).ok()?;
        let vl = u8::try_from(version.len()).ok()?;
        let dst = out.get_mut(at..at + len)?;
        let mut parts: [&[u8]; 6] = [&[nl], name, &[0], &[vl], version, &e.sha256];
        let phase = [e.phase.map_or(0xFF, u8::from)];
        parts[2] = &phase;
        let mut i = 0;
        for p in parts {
            dst.get_mut(i..i + p.len())?.copy_from_slice(p);
            i += p.len();
        }
        Some(at + len)
    }
}

/// Device to host. (INFO is the large variant; responses live on the stack briefly.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Response<'a> {
    /// `version u8, max_frame u16, window u32, codecs u8, max_begin u32`.
    Hello {
        /// Device's protocol version.
        version: u8,
        /// Largest raw frame the device accepts.
        max_frame: u16,
        /// Payload bytes the host may have unacknowledged.
        window: u32,
        /// Bit 0: stored payloads; bit 1: BSD3 `best`; bit 2: BSD3 `small`.
        codecs: u8,
        /// Largest header ‖ manifest ‖ signature accepted.
        max_begin: u32,
    },
    /// See [`Info`]: `str product, str hardware, short uid, mode u8, boot_slot u8, phase u8,
    /// done u32, total u32, entries u8, entries x (slot u8, str name, str version, size u32,
    /// counter u32, sha256 32 B)`.
    Info(Info<'a>),
    /// `next u32`: BEGIN bytes taken so far.
    BeginMore {
        /// Next BEGIN offset expected.
        next: u32,
    },
    /// `resume u32, payload_len u32`.
    Accepted {
        /// Send the payload from here.
        resume: u32,
        /// Payload length.
        payload_len: u32,
    },
    /// `next u32`: every payload byte below `next` is taken.
    DataAck {
        /// Next expected payload offset.
        next: u32,
    },
    /// `phase u8, done u32, total u32, boot_slot u8`.
    Status {
        /// Phase.
        phase: Phase,
        /// Progress done.
        done: u32,
        /// Progress total.
        total: u32,
        /// Slot that boots.
        boot_slot: u8,
    },
    /// `phase u8`: the request is done; the phase after it.
    Done {
        /// Phase.
        phase: Phase,
    },
    /// The rest of the body.
    Bytes(&'a [u8]),
    /// See [`MachineInfo`].
    Machine(MachineInfo<'a>),
    /// `status u8, detail u8, value u32`.
    Error {
        /// What went wrong.
        status: Status,
        /// Status-specific (reject reason, phase, device version).
        detail: u8,
        /// Status-specific (expected offset, sizes).
        value: u32,
    },
}

fn entry<'a>(b: &mut Body<'a>) -> Result<ImageEntry<'a>, BadMessage> {
    let slot = b.u8()?;
    let name = b.str()?;
    let version = b.str()?;
    let size = b.u32()?;
    let security_counter = b.u32()?;
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(b.take(32)?);
    Ok(ImageEntry {
        slot,
        name,
        version,
        size,
        security_counter,
        sha256,
    })
}

fn put_entry(w: &mut FrameWriter<'_>, e: &ImageEntry<'_>) {
    w.bytes(&[e.slot])
        .short(e.name.as_bytes())
        .short(e.version.as_bytes())
        .u32(e.size)
        .u32(e.security_counter)
        .bytes(&e.sha256);
}

impl<'a> Response<'a> {
    /// The kind byte.
    pub fn kind(&self) -> ResponseKind {
        match self {
            Response::Hello { .. } => ResponseKind::Hello,
            Response::Info(_) => ResponseKind::Info,
            Response::BeginMore { .. } => ResponseKind::BeginMore,
            Response::Accepted { .. } => ResponseKind::Accepted,
            Response::DataAck { .. } => ResponseKind::DataAck,
            Response::Status { .. } => ResponseKind::Status,
            Response::Done { .. } => ResponseKind::Done,
            Response::Bytes(_) => ResponseKind::Bytes,
            Response::Machine(_) => ResponseKind::Machine,
            Response::Error { .. } => ResponseKind::Error,
        }
    }

    /// Encode as a complete wire frame into `out`.
    pub fn encode(&self, seq: u8, out: &mut [u8]) -> Option<usize> {
        let mut w = FrameWriter::new(out, self.kind().into(), seq);
        match self {
            Response::Hello {
                version,
                max_frame,
                window,
                codecs,
                max_begin,
            } => {
                w.bytes(&[*version])
                    .u16(*max_frame)
                    .u32(*window)
                    .bytes(&[*codecs])
                    .u32(*max_begin);
            }
            Response::Info(i) => {
                w.short(i.product.as_bytes())
                    .short(i.hardware.as_bytes())
                    .short(i.uid)
                    .bytes(&[i.mode, i.boot_slot, i.phase.into()])
                    .u32(i.done)
                    .u32(i.total);
                let n = u8::from(i.running.is_some()) + u8::from(i.other.is_some());
                w.bytes(&[n]);
                for e in [i.running, i.other].iter().flatten() {
                    put_entry(&mut w, e);
                }
            }
            Response::BeginMore { next } | Response::DataAck { next } => {
                w.u32(*next);
            }
            Response::Accepted {
                resume,
                payload_len,
            } => {
                w.u32(*resume).u32(*payload_len);
            }
            Response::Status {
                phase,
                done,
                total,
                boot_slot,
            } => {
                w.bytes(&[u8::from(*phase)])
                    .u32(*done)
                    .u32(*total)
                    .bytes(&[*boot_slot]);
            }
            Response::Done { phase } => {
                w.bytes(&[u8::from(*phase)]);
            }
            Response::Bytes(b) => {
                w.bytes(b);
            }
            Response::Machine(m) => {
                w.bytes(&[m.phase, m.component])
                    .u32(m.done)
                    .u32(m.total)
                    .bytes(&[m.count])
                    .bytes(m.entries);
            }
            Response::Error {
                status,
                detail,
                value,
            } => {
                w.bytes(&[*status as u8, *detail]).u32(*value);
            }
        }
        w.finish()
    }

    /// Parse a raw frame; returns the sequence number too.
    pub fn parse(frame: &'a [u8]) -> Result<(u8, Response<'a>), BadMessage> {
        let mut b = Body(frame);
        let kind = b.u8()?;
        let seq = b.u8()?;
        let r = match ResponseKind::try_from(kind)? {
            ResponseKind::Hello => Response::Hello {
                version: b.u8()?,
                max_frame: b.u16()?,
                window: b.u32()?,
                codecs: b.u8()?,
                max_begin: b.u32()?,
            },
            ResponseKind::Info => {
                let product = b.str()?;
                let hardware = b.str()?;
                let uid = b.short()?;
                let mode = b.u8()?;
                let boot_slot = b.u8()?;
                let phase = Phase::try_from(b.u8()?)?;
                let done = b.u32()?;
                let total = b.u32()?;
                let n = b.u8()?;
                let running = if n >= 1 { Some(entry(&mut b)?) } else { None };
                let other = if n >= 2 { Some(entry(&mut b)?) } else { None };
                if n > 2 {
                    return Err(BadMessage);
                }
                Response::Info(Info {
                    product,
                    hardware,
                    uid,
                    mode,
                    boot_slot,
                    phase,
                    done,
                    total,
                    running,
                    other,
                })
            }
            ResponseKind::BeginMore => Response::BeginMore { next: b.u32()? },
            ResponseKind::Accepted => Response::Accepted {
                resume: b.u32()?,
                payload_len: b.u32()?,
            },
            ResponseKind::DataAck => Response::DataAck { next: b.u32()? },
            ResponseKind::Status => Response::Status {
                phase: Phase::try_from(b.u8()?)?,
                done: b.u32()?,
                total: b.u32()?,
                boot_slot: b.u8()?,
            },
            ResponseKind::Done => Response::Done {
                phase: Phase::try_from(b.u8()?)?,
            },
            ResponseKind::Bytes => Response::Bytes(b.rest()),
            ResponseKind::Machine => {
                let phase = b.u8()?;
                let component = b.u8()?;
                let done = b.u32()?;
                let total = b.u32()?;
                let count = b.u8()?;
                let entries = b.rest();
                let m = MachineInfo {
                    phase,
                    component,
                    done,
                    total,
                    count,
                    entries,
                };
                // Every entry must parse, and nothing may follow them.
                let mut e = Body(entries);
                for _ in 0..count {
                    member(&mut e)?;
                }
                e.end()?;
                Response::Machine(m)
            }
            ResponseKind::Error => Response::Error {
                status: Status::try_from(b.u8()?)?,
                detail: b.u8()?,
                value: b.u32()?,
            },
        };
        b.end()?;
        Ok((seq, r))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::frame::FrameDecoder;
    use super::*;

    fn through(enc: impl Fn(&mut [u8]) -> Option<usize>, check: impl Fn(&[u8])) {
        let mut buf = [0u8; 600];
        let n = enc(&mut buf).unwrap();
        let mut d: FrameDecoder<600> = FrameDecoder::new();
        let (_, f) = d.feed(&buf[..n]);
        check(f.unwrap().unwrap())
    }

    #[test]
    fn every_message_round_trips() {
        let reqs = [
            Request::Hello {
                version: 1,
                max_frame: 1034,
            },
            Request::Info,
            Request::Begin {
                total: 400,
                offset: 200,
                data: &[0, 1, 2, 0],
            },
            Request::Data {
                offset: 77,
                data: &[0; 300],
            },
            Request::Status,
            Request::Finish,
            Request::Reboot {
                if_phase: Some(Phase::Pending),
            },
            Request::Reboot { if_phase: None },
            Request::Confirm,
            Request::Abort,
            Request::ReadUid,
            Request::WriteCode { code: &[9; 64] },
            Request::ReadCode,
            Request::Revert,
            Request::Machine,
            Request::MachineNote {
                phase: 4,
                component: 2,
            },
        ];
        for (i, r) in reqs.iter().enumerate() {
            through(
                |b| r.encode(i as u8, b),
                |f| assert_eq!(Request::parse(f).unwrap(), (i as u8, *r)),
            );
        }
        let e = ImageEntry {
            slot: 1,
            name: "main",
            version: "1.2.3",
            size: 1000,
            security_counter: 4,
            sha256: [7; 32],
        };
        let resps = [
            Response::Hello {
                version: 1,
                max_frame: 2058,
                window: 8192,
                codecs: 7,
                max_begin: 4096,
            },
            Response::Info(Info {
                product: "thermo",
                hardware: "revB",
                uid: &[1, 2, 3],
                mode: 0,
                boot_slot: 0,
                phase: Phase::Testing,
                done: 5,
                total: 9,
                running: Some(e),
                other: None,
            }),
            Response::BeginMore { next: 100 },
            Response::Accepted {
                resume: 4096,
                payload_len: 9000,
            },
            Response::DataAck { next: 1234 },
            Response::Status {
                phase: Phase::Applying,
                done: 1,
                total: 2,
                boot_slot: 1,
            },
            Response::Done {
                phase: Phase::Pending,
            },
            Response::Bytes(&[0, 0, 1]),
            Response::Error {
                status: Status::Refused,
                detail: 8,
                value: 0,
            },
        ];
        for (i, r) in resps.iter().enumerate() {
            through(
                |b| r.encode(i as u8, b),
                |f| assert_eq!(Response::parse(f).unwrap(), (i as u8, *r)),
            );
        }
        for s in 1..=18 {
            assert_eq!(Status::try_from(s).map(u8::from), Ok(s));
        }
        assert_eq!(Status::try_from(0), Err(BadMessage));
        for p in Phase::ALL {
            assert_eq!(Phase::try_from(u8::from(*p)), Ok(*p));
        }
        assert!(Phase::try_from(9).is_err());
        assert!(Request::parse(&[Command::Reboot as u8, 0, 9]).is_err());
        // Truncated or padded bodies are refused.
        assert!(Request::parse(&[Command::Hello as u8, 0, 1]).is_err());
        assert!(Request::parse(&[Command::Status as u8, 0, 1]).is_err());
        assert!(Request::parse(&[0x7E, 0]).is_err());
        assert!(Response::parse(&[ResponseKind::DataAck as u8, 0, 1, 2]).is_err());
    }

    #[test]
    fn machine_answer_round_trips_and_refuses_bad_entries() {
        let members = [
            MemberEntry {
                name: "main",
                phase: Some(Phase::Testing),
                version: "1.1.0",
                sha256: [7; 32],
            },
            MemberEntry {
                name: "radio",
                phase: None,
                version: "",
                sha256: [0; 32],
            },
        ];
        let mut raw = [0u8; 200];
        let mut n = 0;
        for m in &members {
            n = MachineInfo::put_member(&mut raw, n, m).unwrap();
        }
        let info = MachineInfo {
            phase: 4,
            component: 1,
            done: 10,
            total: 20,
            count: 2,
            entries: &raw[..n],
        };
        through(
            |b| Response::Machine(info).encode(3, b),
            |f| {
                let (seq, r) = Response::parse(f).unwrap();
                assert_eq!(seq, 3);
                let Response::Machine(m) = r else {
                    panic!("{r:?}")
                };
                let got: std::vec::Vec<_> = m.members().map(Result::unwrap).collect();
                assert_eq!(got, members);
            },
        );
        // A count that does not match the entries, or bytes after them: refused.
        for (count, len) in [(3u8, n), (1, n), (2, n - 1)] {
            let bad = MachineInfo {
                count,
                entries: &raw[..len],
                ..info
            };
            through(
                |b| Response::Machine(bad).encode(3, b),
                |f| assert!(Response::parse(f).is_err()),
            );
        }
        // An entry that does not fit the buffer is not written.
        assert_eq!(
            MachineInfo::put_member(&mut raw[..10], 0, &members[0]),
            None
        );
    }
}
