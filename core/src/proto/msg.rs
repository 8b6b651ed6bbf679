//! Messages: requests (host to device) and responses (device to host) as plain data, with
//! their byte layouts. All integers little-endian; `str` is a `u8` length and bytes.

use super::frame::FrameWriter;

/// Protocol version this code speaks.
pub const PROTO_VERSION: u8 = 1;

/// Request kinds (host to device).
pub mod cmd {
    /// Negotiate version and sizes.
    pub const HELLO: u8 = 0x01;
    /// Identity, images and update state.
    pub const INFO: u8 = 0x02;
    /// A piece of header ‖ manifest ‖ signature.
    pub const BEGIN: u8 = 0x03;
    /// Payload bytes at an offset.
    pub const DATA: u8 = 0x04;
    /// The update state.
    pub const STATUS: u8 = 0x05;
    /// All payload sent: verify and mark pending.
    pub const FINISH: u8 = 0x06;
    /// Restart (the boot step installs a pending update).
    pub const REBOOT: u8 = 0x07;
    /// The running trial image is good.
    pub const CONFIRM: u8 = 0x08;
    /// Give up the update in progress.
    pub const ABORT: u8 = 0x09;
    /// Read the chip's unique id.
    pub const READ_UID: u8 = 0x0A;
    /// Store an activation code.
    pub const WRITE_CODE: u8 = 0x0B;
    /// Read the stored activation code.
    pub const READ_CODE: u8 = 0x0C;
}

/// Response kinds (device to host).
pub mod resp {
    /// HELLO answer.
    pub const HELLO: u8 = 0x81;
    /// INFO answer.
    pub const INFO: u8 = 0x82;
    /// BEGIN piece taken, more expected.
    pub const BEGIN_MORE: u8 = 0x83;
    /// Package accepted; send the payload from the resume offset.
    pub const ACCEPTED: u8 = 0x84;
    /// Cumulative acknowledgement of payload bytes.
    pub const DATA_ACK: u8 = 0x85;
    /// STATUS answer.
    pub const STATUS: u8 = 0x86;
    /// Done (FINISH, REBOOT, CONFIRM, ABORT, WRITE_CODE).
    pub const DONE: u8 = 0x87;
    /// READ_UID / READ_CODE answer.
    pub const BYTES: u8 = 0x88;
    /// Refusal or failure with a status code.
    pub const ERROR: u8 = 0xFF;
}

/// Status codes of [`Response::Error`] (never renumbered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// The request frame is malformed.
    BadRequest = 1,
    /// Unknown request kind.
    UnknownCommand = 2,
    /// Not possible in the current update state (the detail byte holds the phase).
    Busy = 3,
    /// DATA or FINISH without an accepted BEGIN (e.g. after a device reset): BEGIN again.
    NoSession = 4,
    /// Data beyond the next expected offset (the value holds it).
    Gap = 5,
    /// More payload than the manifest declares.
    TooLong = 6,
    /// FINISH before all the payload arrived (the value holds what arrived).
    Incomplete = 7,
    /// The patched image does not match the manifest's hash; update abandoned.
    TargetHash = 8,
    /// The payload stream is corrupt.
    CorruptPayload = 9,
    /// The device's flash failed.
    FlashError = 10,
    /// BEGIN data larger than the device's buffer (the value holds its size).
    TooLarge = 11,
    /// Protocol version not supported (the detail byte holds the device's).
    Version = 12,
    /// No activation code stored.
    NoCode = 13,
    /// An activation code is already stored.
    AlreadyActivated = 14,
    /// The activation code does not verify for this chip.
    BadCode = 15,
    /// The package was refused; the detail byte holds the reason code (device `Reject`).
    Refused = 16,
}

impl Status {
    /// From the wire byte.
    pub fn from_u8(v: u8) -> Option<Status> {
        use Status::*;
        Some(match v {
            1 => BadRequest,
            2 => UnknownCommand,
            3 => Busy,
            4 => NoSession,
            5 => Gap,
            6 => TooLong,
            7 => Incomplete,
            8 => TargetHash,
            9 => CorruptPayload,
            10 => FlashError,
            11 => TooLarge,
            12 => Version,
            13 => NoCode,
            14 => AlreadyActivated,
            15 => BadCode,
            16 => Refused,
            _ => return None,
        })
    }
}

/// A sentence for people for a refusal reason code (the device's `Reject`, the detail byte
/// of a `Refused` error).
pub fn reason_text(code: u8) -> &'static str {
    match code {
        1 => "the package header or manifest is malformed",
        2 => "the package is signed by a key this device does not trust",
        3 => "the package signature does not verify (corrupt or forged)",
        4 => "the package is for another product",
        5 => "the package is for another hardware revision",
        6 => "the new image does not fit the device's slot",
        7 => "the package's security counter is lower than the installed image's (downgrade)",
        8 => "the delta was made for another base image than the one installed",
        9 => "the delta is for a component that is not installed",
        10 => "a dependency is neither installed nor in the package",
        11 => "a dependency is older than the package requires",
        12 => "the package's components do not match this device's slots",
        _ => "unknown reason",
    }
}

/// Update phases on the wire (the device's `UpdatePhase`).
pub mod phase {
    /// Idle.
    pub const IDLE: u8 = 0;
    /// Receiving a full image.
    pub const RECEIVING: u8 = 1;
    /// Receiving and applying a delta.
    pub const APPLYING: u8 = 2;
    /// Verified, installs at the next boot.
    pub const PENDING: u8 = 3;
    /// Swapping the new image in.
    pub const INSTALLING: u8 = 4;
    /// New image on trial.
    pub const TESTING: u8 = 5;
    /// New image confirmed.
    pub const CONFIRMED: u8 = 6;
    /// Swapping the old image back.
    pub const REVERTING: u8 = 7;
    /// Old image restored.
    pub const REVERTED: u8 = 8;

    /// Lower-case name.
    pub fn name(p: u8) -> &'static str {
        match p {
            IDLE => "idle",
            RECEIVING => "receiving",
            APPLYING => "applying",
            PENDING => "pending",
            INSTALLING => "installing",
            TESTING => "testing",
            CONFIRMED => "confirmed",
            REVERTING => "reverting",
            REVERTED => "reverted",
            _ => "unknown",
        }
    }
}

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
    /// `if_phase u8`: restart only if the update phase is this one (`0xFF`: always), so a
    /// retransmitted REBOOT cannot restart a trial image (which would revert it).
    Reboot {
        /// Required phase, or `0xFF`.
        if_phase: u8,
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
}

impl<'a> Request<'a> {
    /// The kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Request::Hello { .. } => cmd::HELLO,
            Request::Info => cmd::INFO,
            Request::Begin { .. } => cmd::BEGIN,
            Request::Data { .. } => cmd::DATA,
            Request::Status => cmd::STATUS,
            Request::Finish => cmd::FINISH,
            Request::Reboot { .. } => cmd::REBOOT,
            Request::Confirm => cmd::CONFIRM,
            Request::Abort => cmd::ABORT,
            Request::ReadUid => cmd::READ_UID,
            Request::WriteCode { .. } => cmd::WRITE_CODE,
            Request::ReadCode => cmd::READ_CODE,
        }
    }

    /// Encode as a complete wire frame into `out`; the length, or `None` if `out` is small.
    pub fn encode(&self, seq: u8, out: &mut [u8]) -> Option<usize> {
        let mut w = FrameWriter::new(out, self.kind(), seq);
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
                w.bytes(&[*if_phase]);
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
        let r = match kind {
            cmd::HELLO => Request::Hello {
                version: b.u8()?,
                max_frame: b.u16()?,
            },
            cmd::INFO => Request::Info,
            cmd::BEGIN => Request::Begin {
                total: b.u32()?,
                offset: b.u32()?,
                data: b.rest(),
            },
            cmd::DATA => Request::Data {
                offset: b.u32()?,
                data: b.rest(),
            },
            cmd::STATUS => Request::Status,
            cmd::FINISH => Request::Finish,
            cmd::REBOOT => Request::Reboot { if_phase: b.u8()? },
            cmd::CONFIRM => Request::Confirm,
            cmd::ABORT => Request::Abort,
            cmd::READ_UID => Request::ReadUid,
            cmd::WRITE_CODE => Request::WriteCode { code: b.rest() },
            cmd::READ_CODE => Request::ReadCode,
            _ => return Err(BadMessage),
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
    /// Update phase ([`phase`]).
    pub phase: u8,
    /// Progress done.
    pub done: u32,
    /// Progress total.
    pub total: u32,
    /// Image in the boot slot.
    pub running: Option<ImageEntry<'a>>,
    /// Image in the other slot.
    pub other: Option<ImageEntry<'a>>,
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
        phase: u8,
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
        phase: u8,
    },
    /// The rest of the body.
    Bytes(&'a [u8]),
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
    pub fn kind(&self) -> u8 {
        match self {
            Response::Hello { .. } => resp::HELLO,
            Response::Info(_) => resp::INFO,
            Response::BeginMore { .. } => resp::BEGIN_MORE,
            Response::Accepted { .. } => resp::ACCEPTED,
            Response::DataAck { .. } => resp::DATA_ACK,
            Response::Status { .. } => resp::STATUS,
            Response::Done { .. } => resp::DONE,
            Response::Bytes(_) => resp::BYTES,
            Response::Error { .. } => resp::ERROR,
        }
    }

    /// Encode as a complete wire frame into `out`.
    pub fn encode(&self, seq: u8, out: &mut [u8]) -> Option<usize> {
        let mut w = FrameWriter::new(out, self.kind(), seq);
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
                    .bytes(&[i.mode, i.boot_slot, i.phase])
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
                w.bytes(&[*phase])
                    .u32(*done)
                    .u32(*total)
                    .bytes(&[*boot_slot]);
            }
            Response::Done { phase } => {
                w.bytes(&[*phase]);
            }
            Response::Bytes(b) => {
                w.bytes(b);
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
        let r = match kind {
            resp::HELLO => Response::Hello {
                version: b.u8()?,
                max_frame: b.u16()?,
                window: b.u32()?,
                codecs: b.u8()?,
                max_begin: b.u32()?,
            },
            resp::INFO => {
                let product = b.str()?;
                let hardware = b.str()?;
                let uid = b.short()?;
                let mode = b.u8()?;
                let boot_slot = b.u8()?;
                let phase = b.u8()?;
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
            resp::BEGIN_MORE => Response::BeginMore { next: b.u32()? },
            resp::ACCEPTED => Response::Accepted {
                resume: b.u32()?,
                payload_len: b.u32()?,
            },
            resp::DATA_ACK => Response::DataAck { next: b.u32()? },
            resp::STATUS => Response::Status {
                phase: b.u8()?,
                done: b.u32()?,
                total: b.u32()?,
                boot_slot: b.u8()?,
            },
            resp::DONE => Response::Done { phase: b.u8()? },
            resp::BYTES => Response::Bytes(b.rest()),
            resp::ERROR => Response::Error {
                status: Status::from_u8(b.u8()?).ok_or(BadMessage)?,
                detail: b.u8()?,
                value: b.u32()?,
            },
            _ => return Err(BadMessage),
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
            Request::Reboot { if_phase: 3 },
            Request::Confirm,
            Request::Abort,
            Request::ReadUid,
            Request::WriteCode { code: &[9; 64] },
            Request::ReadCode,
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
                phase: phase::TESTING,
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
                phase: 2,
                done: 1,
                total: 2,
                boot_slot: 1,
            },
            Response::Done { phase: 3 },
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
        for s in 1..=16 {
            assert_eq!(Status::from_u8(s).map(|x| x as u8), Some(s));
        }
        assert_eq!(Status::from_u8(0), None);
        // Truncated or padded bodies are refused.
        assert!(Request::parse(&[cmd::HELLO, 0, 1]).is_err());
        assert!(Request::parse(&[cmd::STATUS, 0, 1]).is_err());
        assert!(Request::parse(&[0x7E, 0]).is_err());
        assert!(Response::parse(&[resp::DATA_ACK, 0, 1, 2]).is_err());
    }
}
