//! # bluesphere-device
//!
//! The device side of BlueSphere, `no_std` and heap-free, over `embedded-storage` NOR flash.
//! This crate grows with the device-SDK issue (updater state machine, journal, slots,
//! power-cut proof); today it holds the piece every updater needs first: [`FlashPatchIo`],
//! which lets the core's streaming patch decoder read the running image from one slot and
//! write the new one into another through a single sector buffer.
#![no_std]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod flash_io;

pub use bluesphere_core as core_formats;
pub use flash_io::{FlashIoError, FlashPatchIo, Region};
