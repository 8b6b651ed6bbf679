//! The near-field protocol (USB-serial, BLE): framing, messages and the host's push engine,
//! all sans-IO (bytes in, frames and events out; the caller owns the link and the clock).
//! Specified in `docs/PROTOCOL.md`.

pub mod frame;
pub mod msg;
pub mod push;

pub use frame::{encoded_max, FrameDecoder, FrameError, FrameWriter};
pub use msg::{
    Command, ImageEntry, Info, MachineInfo, MemberEntry, Phase, RefuseReason, Request, Response,
    ResponseKind, Status, MACHINE_PHASES, PROTO_VERSION, REBOOT_ANY_PHASE,
};
pub use push::{Outcome, Push, PushConfig, PushError, PushProgress, Stage, Timeouts};
