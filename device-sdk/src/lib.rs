//! # bluesphere-device
//!
//! The device side of BlueSphere: `no_std`, no heap, no panics on input, over any
//! `embedded-storage` [`NorFlash`](flash::NorFlash).
//!
//! - [`Updater`]: `begin` (signature, product, hardware, anti-rollback counter, base image,
//!   dependencies: all checked by [`admit`] before anything is erased), `write` (streams the
//!   payload and patches it into the update slot with bounded RAM, reading the old image from
//!   the running slot), `finish` (target SHA-256, then pending), `boot` (installs, finishes an
//!   interrupted swap, reverts an image that did not confirm), `confirm`, `request_revert`,
//!   `abort`, `status`. Two slot modes ([`SlotMode`]): swap (one execution slot, update slot,
//!   scratch sector) and A/B. The layout and state machine tables are in the `updater`
//!   module's documentation (see [`Updater`]); the journal and trailer byte layouts in
//!   [`journal`].
//! - Power-fail safety: every state change is a write-once, CRC-checked journal record made
//!   after the flash work it describes, so a restart from flash contents alone continues
//!   where it stopped. The test `sweep::power_cut_sweep` cuts power before and tears every
//!   flash operation of an update and of a revert over a matrix of geometries, erased values,
//!   slot modes and profiles (> 50,000 cut points), and a planted journal bug makes it fail.
//! - RAM: a [`Workspace`] ([`BestWorkspace`] or [`SmallWorkspace`]: decoder + write buffer, `const`-constructible for a `static`) plus
//!   a 344-byte [`Updater`]: 63,120 B with the default profile ([`DefaultUpdater`], streams
//!   made with `Params::BEST`), 8,080 B with the small one ([`SmallUpdater`], `Params::SMALL`),
//!   with a 256-byte write buffer (no sector buffer needed). Stack high-water about 8.5 KB on x86_64
//!   (test `updater_tests::ram_of_the_two_profiles`).
//! - [`machine`]: whole-machine updates (a main MCU and its modules, one package, all old or
//!   all new): the coordinator, its members (own slot sets, modules on a local link) and its
//!   protocol server; `docs/WHOLE-MACHINE.md`. The test `machine_tests::machine_power_cut_sweep`
//!   cuts the main MCU and a module at every flash operation (> 50,000 cut points).
//! - With the `std` feature: [`sim::SimFlash`] (NOR rules, counters, power cuts and torn
//!   operations, for tests) and [`file_flash::FileFlash`] (the Linux port's file-backed flash,
//!   used by the `bluesphere-device` virtual device), and [`linux`]: a whole device in a
//!   folder (identity, keys, exclusive lock, activation store, install and serve loops), and
//!   [`linux_machine`]: a whole machine of such devices, modules on in-process links.
#![no_std]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod activation;
mod admit;
#[cfg(feature = "std")]
pub mod file_flash;
mod flash_io;
pub mod journal;
#[cfg(feature = "std")]
pub mod linux;
#[cfg(feature = "std")]
pub mod linux_machine;
pub mod machine;
#[cfg(test)]
mod machine_tests;
#[cfg(feature = "std")]
pub mod rehearse;
pub mod serve;
#[cfg(feature = "std")]
pub mod sim;
#[cfg(test)]
mod sweep;
mod updater;
#[cfg(test)]
mod updater_tests;

pub use admit::{
    admit, admit_scoped, hash_region, Admitted, Identity, Installed, Reject, Rejection, Scope,
};
pub use bluesphere_core as core_formats;
pub use embedded_storage::nor_flash as flash;
pub use flash_io::{FlashIoError, FlashPatchIo, Region, TargetWriter};
pub use journal::{ImageInfo, Phase, Record};
pub use updater::{
    Begun, BestWorkspace, Config, DefaultUpdater, Layout, Profile, SlotMode, SmallUpdater,
    SmallWorkspace, Status, UpdateError, UpdatePhase, Updater, Workspace,
};
