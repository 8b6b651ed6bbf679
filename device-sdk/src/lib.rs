//! # bluesphere-device
//!
//! The device side of BlueSphere, `no_std` and heap-free, over `embedded-storage` NOR flash.
//! This crate grows with the device-SDK issue (updater state machine, journal, slots,
//! power-cut proof); today it holds the two pieces every updater needs first: [`admit`], which
//! decides from the header and manifest alone, before anything is erased, whether this
//! device takes the package (with a coded reason if not); and [`FlashPatchIo`], which lets
//! the core's streaming patch decoder read the running image from one slot and write the new
//! one into another through a single sector buffer.
#![no_std]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod admit;
#[cfg(feature = "std")]
pub mod file_flash;
mod flash_io;
pub mod journal;
#[cfg(feature = "std")]
pub mod sim;
#[cfg(test)]
mod sweep;
mod updater;
#[cfg(test)]
mod updater_tests;

pub use admit::{admit, hash_region, Admitted, Identity, Installed, Reject, Rejection};
pub use bluesphere_core as core_formats;
pub use embedded_storage::nor_flash as flash;
pub use flash_io::{FlashIoError, FlashPatchIo, Region, TargetWriter};
pub use journal::{ImageInfo, Phase, Record};
pub use updater::{
    Begun, Config, DefaultUpdater, Layout, SlotMode, SmallUpdater, Status, UpdateError,
    UpdatePhase, Updater, Workspace,
};
