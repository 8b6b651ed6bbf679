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

/// The near-field service over Bluetooth LE (`docs/PROTOCOL.md` section 6): its 128-bit
/// UUID, advertised by a device that takes updates.
pub const BLE_SERVICE: u128 = 0xb1e5_f000_5ee5_4c1e_9a77_0b1e_e5f0_0000;
/// Host to device: written without response; carries the protocol's byte stream.
pub const BLE_RX_CHARACTERISTIC: u128 = 0xb1e5_f000_5ee5_4c1e_9a77_0b1e_e5f0_0001;
/// Device to host: notified; carries the protocol's byte stream.
pub const BLE_TX_CHARACTERISTIC: u128 = 0xb1e5_f000_5ee5_4c1e_9a77_0b1e_e5f0_0002;
