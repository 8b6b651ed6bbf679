//! `compare`: what a delta saves, for the Studio's result view: the full image, the new
//! image under an ordinary compressor, the package; transfer times over the usual links; and
//! which address ranges changed (a table and an SVG strip, both computed here).

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::package::{load_image, load_package, AddressRange, InputFormat};
use crate::{Error, ErrorKind};

/// Bytes compared at a time when finding changed regions.
const GRAIN: u64 = 256;
/// Regions listed at most (the strip still shows all).
const MAX_REGIONS: usize = 512;
/// Columns of the SVG strip.
const STRIP_COLUMNS: u64 = 512;

/// Compare an old and a new image and the package made from them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct CompareRequest {
    /// Installed image (none: a full-image package).
    pub old: Option<PathBuf>,
    /// New image.
    pub new: PathBuf,
    /// The package.
    pub package: PathBuf,
    /// Input format of the images.
    pub format: InputFormat,
    /// Addresses of HEX or ELF images to keep.
    pub range: Option<AddressRange>,
}

/// A transfer time estimate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Transfer {
    /// The link, in words.
    pub link: String,
    /// Payload bytes per second assumed.
    pub bytes_per_second: f64,
    /// Seconds for the full image.
    pub full_seconds: f64,
    /// Seconds for the package.
    pub package_seconds: f64,
}

/// A changed address range `[start, end)`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Changed {
    /// First address.
    pub start: u64,
    /// First address after.
    pub end: u64,
}

/// What `compare` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct CompareReport {
    /// New image bytes.
    pub full: u64,
    /// New image compressed by [`CompareReport::compressor`].
    pub compressed: u64,
    /// The compressor, in words.
    pub compressor: String,
    /// Package bytes.
    pub package: u64,
    /// Transfer estimates.
    pub transfers: Vec<Transfer>,
    /// Base address of the new image.
    pub base_address: u64,
    /// Changed ranges (at most 512; `changed_total` counts them all).
    pub changed: Vec<Changed>,
    /// How many changed ranges there are.
    pub changed_total: usize,
    /// Changed bytes (in 256-byte grains).
    pub changed_bytes: u64,
    /// An SVG strip of the new image: one mark per column that changed.
    pub strip_svg: String,
}

/// Links the estimate covers: 8N1 UARTs carry baud / 10 bytes per second, of which the
/// protocol's framing leaves about 98.5 % for payload (the link simulator's figure); BLE at a
/// typical 20 kB/s for a laptop or phone with writes without response.
fn links() -> Vec<(String, f64)> {
    let uart = |baud: f64| baud / 10.0 * 0.985;
    vec![
        ("USB-serial 115200 baud".into(), uart(115_200.0)),
        ("USB-serial 921600 baud".into(), uart(921_600.0)),
        ("Bluetooth LE (about 20 kB/s)".into(), 20_000.0),
    ]
}

/// Compare.
pub fn compare(req: &CompareRequest) -> Result<CompareReport, Error> {
    let new = load_image(&req.new, req.format, req.range)?;
    let old = req
        .old
        .as_ref()
        .map(|o| load_image(o, req.format, req.range))
        .transpose()?;
    let package = load_package(&req.package)?.len() as u64;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&new.data)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("compressor: {e}")))?;
    let compressed = z
        .finish()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("compressor: {e}")))?
        .len() as u64;
    let full = new.data.len() as u64;
    let transfers = links()
        .into_iter()
        .map(|(link, bps)| Transfer {
            link,
            bytes_per_second: bps,
            full_seconds: full as f64 / bps,
            package_seconds: package as f64 / bps,
        })
        .collect();
    let old_at = |addr: u64| -> Option<u8> {
        let o = old.as_ref()?;
        let i = addr.checked_sub(o.base_address)?;
        o.data.get(usize::try_from(i).ok()?).copied()
    };
    // Grains of the new image that differ from the old image at the same address.
    let grains = full.div_ceil(GRAIN);
    let mut changed_grain = vec![false; grains as usize];
    for (g, flag) in changed_grain.iter_mut().enumerate() {
        let lo = g as u64 * GRAIN;
        let hi = (lo + GRAIN).min(full);
        *flag = (lo..hi).any(|i| Some(new.data[i as usize]) != old_at(new.base_address + i));
    }
    let mut regions: Vec<Changed> = Vec::new();
    for (g, _) in changed_grain.iter().enumerate().filter(|(_, c)| **c) {
        let start = new.base_address + g as u64 * GRAIN;
        let end = new.base_address + ((g as u64 + 1) * GRAIN).min(full);
        match regions.last_mut() {
            Some(r) if r.end == start => r.end = end,
            _ => regions.push(Changed { start, end }),
        }
    }
    let changed_bytes = regions.iter().map(|r| r.end - r.start).sum();
    let changed_total = regions.len();
    regions.truncate(MAX_REGIONS);
    Ok(CompareReport {
        full,
        compressed,
        compressor: "DEFLATE, zlib level 9 (flate2)".into(),
        package,
        transfers,
        base_address: new.base_address,
        changed: regions,
        changed_total,
        changed_bytes,
        strip_svg: strip(&changed_grain),
    })
}

/// The strip: `STRIP_COLUMNS` columns over the image, a mark where any grain changed.
fn strip(changed: &[bool]) -> String {
    let n = changed.len() as u64;
    let cols = STRIP_COLUMNS.min(n.max(1));
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {cols} 10\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"changed regions of the new image\"><rect class=\"strip-bg\" x=\"0\" y=\"0\" width=\"{cols}\" height=\"10\"/>"
    );
    for c in 0..cols {
        let lo = (c * n / cols) as usize;
        let hi = (((c + 1) * n / cols) as usize)
            .max(lo + 1)
            .min(changed.len());
        if changed.get(lo..hi).is_some_and(|s| s.iter().any(|x| *x)) {
            svg.push_str(&format!(
                "<rect class=\"strip-mark\" x=\"{c}\" y=\"0\" width=\"1\" height=\"10\"/>"
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn changed_regions_and_sizes() {
        let d = tempfile::tempdir().unwrap();
        let old: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut new = old.clone();
        new[300] ^= 1; // grain 1
        new[5000] ^= 1; // grain 19
        new[5200] ^= 1; // grain 20: merges with 19
        std::fs::write(d.path().join("o.bin"), &old).unwrap();
        std::fs::write(d.path().join("n.bin"), &new).unwrap();
        std::fs::write(d.path().join("p.bsp"), [0u8; 100]).unwrap();
        let r = compare(&CompareRequest {
            old: Some(d.path().join("o.bin")),
            new: d.path().join("n.bin"),
            package: d.path().join("p.bsp"),
            format: InputFormat::Bin,
            range: None,
        })
        .unwrap();
        assert_eq!(r.full, 8192);
        assert_eq!(r.package, 100);
        assert!(r.compressed > 0 && r.compressed < 8192);
        assert_eq!(
            r.changed,
            vec![
                Changed {
                    start: 256,
                    end: 512
                },
                Changed {
                    start: 19 * 256,
                    end: 21 * 256
                }
            ]
        );
        assert_eq!(r.changed_bytes, 3 * 256);
        assert_eq!(r.strip_svg.matches("strip-mark").count(), 3);
        let t = &r.transfers[0];
        assert!((t.full_seconds - 8192.0 / (11520.0 * 0.985)).abs() < 1e-9);
    }
}
