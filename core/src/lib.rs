//! # bluesphere-core
//!
//! The one place where BlueSphere's formats live: the package format, the BSD3 delta stream,
//! signatures (ECDSA P-256 over SHA-256) and versions. Parsing, verification and patch
//! application are `no_std` and heap-free; the default `std` feature adds diff creation,
//! signing, key files, image loading (BIN / Intel HEX) and JSON.
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod activation;
#[cfg(feature = "std")]
mod anchor;
pub mod crc;
pub mod delta;
mod range_coder;

#[cfg(feature = "std")]
mod cover;
#[cfg(feature = "std")]
pub mod diff;
pub mod package;
pub mod proto;
#[cfg(feature = "std")]
mod suffix;
pub mod version;

#[cfg(feature = "std")]
pub mod image;
#[cfg(feature = "std")]
pub mod keys;
#[cfg(feature = "std")]
pub mod unpack;

#[cfg(feature = "std")]
pub use unpack::{Error, Progress};

/// `n` zeros, written now if they take at most [`ZEROS_WRITTEN_MAX`] bytes. `vec![0; n]` maps
/// fresh pages that read as the kernel's shared zero page; a table that is read before it is
/// written (hash heads, counters, bit sets) then takes a second fault on the first write to
/// each page, and while another thread of the process runs that fault also flushes the other
/// core's TLB (an interrupt each: 12% of a small pack's time was spent there). Writing the
/// zeros once faults each page in writable. A larger table is left to the kernel: on mostly
/// erased images most of its pages are never touched (writing them all took the 64 MiB AAVMF
/// pairs from 255 to 274 MB resident, for 10% less time).
#[cfg(feature = "std")]
pub(crate) fn zeros_written<T: Copy + Default>(n: usize) -> std::vec::Vec<T> {
    if n.saturating_mul(core::mem::size_of::<T>()) > ZEROS_WRITTEN_MAX {
        return std::vec![T::default(); n];
    }
    let mut v = std::vec::Vec::with_capacity(n);
    // Opaque to the optimizer, so the fill is not folded back into a zeroed allocation.
    let v_ref: &mut std::vec::Vec<T> = core::hint::black_box(&mut v);
    v_ref.resize(n, T::default());
    v
}

/// See [`zeros_written`].
#[cfg(feature = "std")]
const ZEROS_WRITTEN_MAX: usize = 4 << 20;

#[cfg(feature = "std")]
pub(crate) fn hexser<S: serde::Serializer, const N: usize>(
    v: &[u8; N],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

#[cfg(feature = "std")]
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
