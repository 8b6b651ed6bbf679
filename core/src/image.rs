//! Firmware image input: raw BIN, Intel HEX or ELF, recognised by content.
//!
//! HEX and ELF files are lists of segments (address, bytes). Segments are joined into one
//! image with 0xFF filling the gaps, but only when the gaps are small: a file whose segments
//! lie far apart (flash plus UICR, option bytes or RAM) is an error that lists them, and the
//! caller chooses an address range ([`LoadOptions::range`]) or one component per segment.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

/// Input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// Raw bytes.
    Bin,
    /// Intel HEX.
    Hex,
    /// ELF executable (its loadable segments at their physical addresses).
    Elf,
}

/// A loaded image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The bytes (gaps between segments filled with 0xFF).
    pub data: Vec<u8>,
    /// Address of `data[0]` (0 for BIN unless given).
    pub base_address: u64,
    /// Detected format.
    pub format: ImageFormat,
}

/// One contiguous run of bytes of a HEX or ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Address of the first byte.
    pub address: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Segment {
    /// The addresses the segment covers.
    pub fn range(&self) -> Range<u64> {
        self.address..self.address + self.data.len() as u64
    }
}

/// Address ranges of segments, printed as `0x08000000..0x0801F000 (124 KiB)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentList(pub Vec<Range<u64>>);

impl fmt::Display for SegmentList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "0x{:08X}..0x{:08X} ({})",
                r.start,
                r.end,
                Size(r.end - r.start)
            )?;
        }
        Ok(())
    }
}

struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
            write!(f, "{} MiB", n >> 20)
        } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
            write!(f, "{} KiB", n >> 10)
        } else {
            write!(f, "{n} B")
        }
    }
}

/// Why an input is not a usable image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Empty input.
    #[error("the file is empty")]
    Empty,
    /// A HEX line is malformed.
    #[error("Intel HEX line {line}: {reason}")]
    Hex {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The HEX file ends without its end-of-file record (it may be truncated).
    #[error("Intel HEX ends at line {lines} without its end-of-file record (:00000001FF); the file may be truncated")]
    HexNoEof {
        /// Lines read.
        lines: usize,
    },
    /// The ELF file is malformed or has nothing to flash.
    #[error("ELF: {0}")]
    Elf(String),
    /// The segments lie too far apart to be joined into one image.
    #[error("the segments lie far apart: {segments}; joining them would fill {gap} bytes of gap. Choose one address range, or make one component per segment")]
    FarApart {
        /// Every segment, merged where adjacent.
        segments: SegmentList,
        /// Bytes of gap that joining would fill.
        gap: u64,
    },
    /// Nothing of the file lies in the chosen address range.
    #[error("no data in 0x{:08X}..0x{:08X}; the file has {segments}", range.start, range.end)]
    EmptyRange {
        /// The range asked for.
        range: Range<u64>,
        /// What the file has.
        segments: SegmentList,
    },
    /// The input is something else.
    #[error("not a firmware image: {0}")]
    NotImage(String),
    /// Too large.
    #[error("image spans {0} bytes; the limit is 4 GiB - 1")]
    TooLarge(u64),
}

impl ImageError {
    /// Stable name of the error's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ImageError::FarApart { .. } | ImageError::EmptyRange { .. } => "segments",
            _ => "invalid-input",
        }
    }
}

/// Largest address span accepted (the format's limit).
const MAX_SPAN: u64 = u32::MAX as u64;

/// Largest gap between two segments that is filled with 0xFF; farther apart is an error (as
/// is more fill in all than the larger of this and the data itself).
pub const MAX_GAP: u64 = 1 << 20;

/// How to read an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Force a format instead of recognising it by content.
    pub format: Option<ImageFormat>,
    /// Keep only the bytes in this address range (HEX and ELF).
    pub range: Option<Range<u64>>,
}

/// Recognise and load `bytes`. `force` overrides content detection.
pub fn load(bytes: &[u8], force: Option<ImageFormat>) -> Result<Image, ImageError> {
    load_with(
        bytes,
        &LoadOptions {
            format: force,
            range: None,
        },
    )
}

/// Recognise and load `bytes` with options.
pub fn load_with(bytes: &[u8], opts: &LoadOptions) -> Result<Image, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let format = opts.format.unwrap_or_else(|| detect(bytes));
    let segments = match format {
        ImageFormat::Hex => parse_hex(bytes)?,
        ImageFormat::Elf => parse_elf(bytes)?,
        ImageFormat::Bin => {
            if opts.format.is_none() {
                refuse_non_image(bytes)?;
            }
            if bytes.len() as u64 > MAX_SPAN {
                return Err(ImageError::TooLarge(bytes.len() as u64));
            }
            return Ok(Image {
                data: bytes.to_vec(),
                base_address: 0,
                format: ImageFormat::Bin,
            });
        }
    };
    let (base_address, data) = join(segments, opts.range.clone())?;
    Ok(Image {
        data,
        base_address,
        format,
    })
}

/// The segments of a HEX or ELF file (merged where adjacent), without joining them.
pub fn segments(bytes: &[u8]) -> Result<Vec<Segment>, ImageError> {
    match detect(bytes) {
        ImageFormat::Hex => parse_hex(bytes),
        ImageFormat::Elf => parse_elf(bytes),
        ImageFormat::Bin => Ok(vec![Segment {
            address: 0,
            data: bytes.to_vec(),
        }]),
    }
}

fn detect(bytes: &[u8]) -> ImageFormat {
    if bytes.starts_with(b"\x7FELF") {
        return ImageFormat::Elf;
    }
    let t = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = t.iter().find(|b| !b.is_ascii_whitespace());
    // A HEX file may end with DOS padding (Ctrl-Z or NUL); what comes before must be HEX text.
    let body = t.split(|&b| b == 0x1A || b == 0).next().unwrap_or(t);
    let textual = body
        .iter()
        .take(4096)
        .all(|&b| b == b':' || b.is_ascii_hexdigit() || b.is_ascii_whitespace());
    if first == Some(&b':') && textual {
        ImageFormat::Hex
    } else {
        ImageFormat::Bin
    }
}

fn refuse_non_image(bytes: &[u8]) -> Result<(), ImageError> {
    let starts = |p: &[u8]| bytes.starts_with(p);
    if starts(b"BSPK") {
        return Err(ImageError::NotImage(
            "this is a BlueSphere package, not a firmware image".into(),
        ));
    }
    if starts(b"-----BEGIN") {
        return Err(ImageError::NotImage(
            "this is a PEM key or certificate".into(),
        ));
    }
    let sample = &bytes[..bytes.len().min(64 * 1024)];
    let text = sample
        .iter()
        .all(|&b| b == b'\n' || b == b'\r' || b == b'\t' || (0x20..0x7F).contains(&b));
    if text && sample.contains(&b'\n') {
        return Err(ImageError::NotImage(
            "this looks like a text file (read it as a raw binary image if it really is one)"
                .into(),
        ));
    }
    Ok(())
}

/// Merge adjacent segments, refuse overlapping ones.
fn merge(mut segs: Vec<Segment>) -> Result<Vec<Segment>, (u64, u64)> {
    segs.sort_by_key(|s| s.address);
    let mut out: Vec<Segment> = Vec::with_capacity(segs.len());
    for s in segs {
        match out.last_mut() {
            Some(prev) if prev.range().end > s.address => return Err((prev.address, s.address)),
            Some(prev) if prev.range().end == s.address => prev.data.extend_from_slice(&s.data),
            _ => out.push(s),
        }
    }
    Ok(out)
}

/// Join segments into one gap-filled image, after keeping only `range`.
fn join(segments: Vec<Segment>, range: Option<Range<u64>>) -> Result<(u64, Vec<u8>), ImageError> {
    let all = SegmentList(segments.iter().map(Segment::range).collect());
    let segments: Vec<Segment> = match &range {
        None => segments,
        Some(r) => segments
            .into_iter()
            .filter_map(|s| {
                let lo = s.address.max(r.start);
                let hi = s.range().end.min(r.end);
                (lo < hi).then(|| Segment {
                    address: lo,
                    data: s.data[(lo - s.address) as usize..(hi - s.address) as usize].to_vec(),
                })
            })
            .collect(),
    };
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
        return Err(match range {
            Some(range) => ImageError::EmptyRange {
                range,
                segments: all,
            },
            None => ImageError::Elf("no data to flash".into()),
        });
    };
    let base = first.address;
    let span = last.range().end - base;
    if span > MAX_SPAN {
        return Err(ImageError::TooLarge(span));
    }
    let gaps: Vec<u64> = segments
        .windows(2)
        .map(|w| w[1].address - w[0].range().end)
        .collect();
    // Small gaps are filled, but never more fill than data (many small gaps add up).
    let data_len: u64 = segments.iter().map(|s| s.data.len() as u64).sum();
    let fill: u64 = gaps.iter().sum();
    if gaps.iter().any(|&g| g > MAX_GAP) || fill > MAX_GAP.max(data_len) {
        return Err(ImageError::FarApart {
            segments: SegmentList(segments.iter().map(Segment::range).collect()),
            gap: fill,
        });
    }
    let mut data = vec![0xFFu8; span as usize];
    for s in segments {
        let o = (s.address - base) as usize;
        data[o..o + s.data.len()].copy_from_slice(&s.data);
    }
    Ok((base, data))
}

fn parse_hex(bytes: &[u8]) -> Result<Vec<Segment>, ImageError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ImageError::Hex {
        line: 1,
        reason: "not ASCII text".into(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chunks: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut upper: u64 = 0;
    let mut seen_eof = false;
    let mut lines = 0;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        lines = line_no;
        let err = |reason: String| ImageError::Hex {
            line: line_no,
            reason,
        };
        // DOS end-of-file padding (Ctrl-Z, NUL) is allowed after the end-of-file record only.
        let line = raw.trim();
        if seen_eof {
            if line
                .bytes()
                .all(|b| b == 0x1A || b == 0 || b.is_ascii_whitespace())
            {
                continue;
            }
            return Err(err("data after the end-of-file record".into()));
        }
        if line.is_empty() {
            continue;
        }
        let rec = ihex::Record::from_record_string(line).map_err(|e| err(e.to_string()))?;
        match rec {
            ihex::Record::Data { offset, value } => {
                let addr = upper + u64::from(offset);
                let end = addr + value.len() as u64;
                if let Some((&s, v)) = chunks.range(..end).next_back() {
                    if s + v.len() as u64 > addr && !value.is_empty() {
                        return Err(err(format!(
                            "record at 0x{addr:08X} overlaps data already given at 0x{s:08X}..0x{:08X}",
                            s + v.len() as u64
                        )));
                    }
                }
                if !value.is_empty() {
                    chunks.insert(addr, value);
                }
            }
            ihex::Record::ExtendedLinearAddress(hi) => upper = u64::from(hi) << 16,
            ihex::Record::ExtendedSegmentAddress(seg) => upper = u64::from(seg) << 4,
            ihex::Record::EndOfFile => seen_eof = true,
            ihex::Record::StartLinearAddress(_) | ihex::Record::StartSegmentAddress { .. } => {}
        }
    }
    if !seen_eof {
        return Err(ImageError::HexNoEof { lines });
    }
    if chunks.is_empty() {
        return Err(ImageError::Hex {
            line: 1,
            reason: "no data records".into(),
        });
    }
    let segs = chunks
        .into_iter()
        .map(|(address, data)| Segment { address, data })
        .collect();
    // Overlaps were refused record by record above.
    merge(segs).map_err(|(a, b)| ImageError::Hex {
        line: 1,
        reason: format!("data at 0x{b:08X} overlaps data at 0x{a:08X}"),
    })
}

fn parse_elf(bytes: &[u8]) -> Result<Vec<Segment>, ImageError> {
    use object::read::elf::{FileHeader, ProgramHeader};
    fn load<H: FileHeader<Endian = object::Endianness>>(
        bytes: &[u8],
    ) -> Result<Vec<Segment>, ImageError> {
        let bad = |e: object::read::Error| ImageError::Elf(e.to_string());
        let header = H::parse(bytes).map_err(bad)?;
        let endian = header.endian().map_err(bad)?;
        let mut segs = Vec::new();
        for ph in header.program_headers(endian, bytes).map_err(bad)? {
            if ph.p_type(endian) != object::elf::PT_LOAD || ph.p_filesz(endian).into() == 0 {
                continue;
            }
            let data = ph.data(endian, bytes).map_err(|()| {
                ImageError::Elf("a loadable segment lies beyond the end of the file".into())
            })?;
            segs.push(Segment {
                address: ph.p_paddr(endian).into(),
                data: data.to_vec(),
            });
        }
        if segs.is_empty() {
            return Err(ImageError::Elf(
                "the file has no loadable segments (an object file or a library, not a linked firmware); read it as a raw binary image if the device stores the file itself".into(),
            ));
        }
        merge(segs).map_err(|(a, b)| {
            ImageError::Elf(format!(
                "loadable segments at 0x{a:08X} and 0x{b:08X} overlap"
            ))
        })
    }
    match bytes.get(4) {
        Some(1) => load::<object::elf::FileHeader32<object::Endianness>>(bytes),
        Some(2) => load::<object::elf::FileHeader64<object::Endianness>>(bytes),
        _ => Err(ImageError::Elf(
            "unknown ELF class (neither 32- nor 64-bit)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of(records: &[ihex::Record]) -> String {
        ihex::create_object_file_representation(records).unwrap()
    }

    #[test]
    fn hex_with_gap_and_base() {
        let f = hex_of(&[
            ihex::Record::ExtendedLinearAddress(0x0800),
            ihex::Record::Data {
                offset: 0x0000,
                value: vec![1, 2, 3],
            },
            ihex::Record::Data {
                offset: 0x0010,
                value: vec![4],
            },
            ihex::Record::EndOfFile,
        ]);
        let img = load(f.as_bytes(), None).unwrap();
        assert_eq!(img.format, ImageFormat::Hex);
        assert_eq!(img.base_address, 0x0800_0000);
        assert_eq!(img.data.len(), 0x11);
        assert_eq!(&img.data[..4], &[1, 2, 3, 0xFF]);
        assert_eq!(img.data[0x10], 4);
    }

    #[test]
    fn hex_overlap_names_the_line() {
        let f = hex_of(&[
            ihex::Record::Data {
                offset: 0x0000,
                value: vec![1, 2, 3, 4],
            },
            ihex::Record::Data {
                offset: 0x0002,
                value: vec![9],
            },
            ihex::Record::EndOfFile,
        ]);
        let e = load(f.as_bytes(), None).unwrap_err();
        assert!(matches!(e, ImageError::Hex { line: 2, .. }), "{e}");
        assert!(e.to_string().contains("overlaps"), "{e}");
    }

    #[test]
    fn hex_bad_checksum_names_the_line() {
        let mut f = hex_of(&[
            ihex::Record::Data {
                offset: 0,
                value: vec![1, 2, 3, 4],
            },
            ihex::Record::Data {
                offset: 4,
                value: vec![5, 6],
            },
            ihex::Record::EndOfFile,
        ]);
        // Corrupt the checksum of line 2.
        let lines: Vec<&str> = f.lines().collect();
        let l2 = lines[1];
        let bad = format!(
            "{}{}",
            &l2[..l2.len() - 2],
            if l2.ends_with("00") { "01" } else { "00" }
        );
        f = format!("{}\n{}\n{}\n", lines[0], bad, lines[2]);
        let e = load(f.as_bytes(), None).unwrap_err();
        assert!(matches!(e, ImageError::Hex { line: 2, .. }), "{e}");
    }

    #[test]
    fn refuses_non_images() {
        assert_eq!(load(b"", None), Err(ImageError::Empty));
        for (input, needle) in [
            (&b"BSPK\x01\x00"[..], "package"),
            (b"-----BEGIN PRIVATE KEY-----\n", "PEM"),
            (b"hello world\nthis is text\n", "text"),
        ] {
            let e = load(input, None).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        // Forcing BIN accepts text.
        assert!(load(b"hello\n", Some(ImageFormat::Bin)).is_ok());
    }

    /// A little-endian ELF32 executable with the given (type, paddr, bytes) program headers.
    fn elf32(segments: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let phoff = 52u32;
        let data_at = phoff + 32 * segments.len() as u32;
        let mut f = Vec::new();
        f.extend_from_slice(b"\x7FELF\x01\x01\x01\x00");
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f.extend_from_slice(&40u16.to_le_bytes()); // EM_ARM
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes()); // entry
        f.extend_from_slice(&phoff.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes()); // shoff
        f.extend_from_slice(&0u32.to_le_bytes()); // flags
        f.extend_from_slice(&52u16.to_le_bytes());
        f.extend_from_slice(&32u16.to_le_bytes());
        f.extend_from_slice(&(segments.len() as u16).to_le_bytes());
        f.extend_from_slice(&40u16.to_le_bytes());
        f.extend_from_slice(&0u16.to_le_bytes());
        f.extend_from_slice(&0u16.to_le_bytes());
        let mut off = data_at;
        for (ty, paddr, bytes) in segments {
            for v in [*ty, off, paddr.wrapping_add(0x1000_0000), *paddr] {
                f.extend_from_slice(&v.to_le_bytes());
            }
            let n = bytes.len() as u32;
            for v in [n, n + 16, 5, 4] {
                f.extend_from_slice(&v.to_le_bytes());
            }
            off += n;
        }
        for (_, _, bytes) in segments {
            f.extend_from_slice(bytes);
        }
        f
    }

    #[test]
    fn elf_gives_its_loadable_segments_at_physical_addresses() {
        let f = elf32(&[
            (1, 0x0800_0000, &[1, 2, 3, 4]),
            (4, 0, &[9, 9]), // PT_NOTE: not flashed
            (1, 0x0800_0008, &[5, 6]),
        ]);
        let img = load(&f, None).unwrap();
        assert_eq!(img.format, ImageFormat::Elf);
        assert_eq!(img.base_address, 0x0800_0000);
        assert_eq!(img.data, vec![1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF, 5, 6]);
        // Forcing BIN keeps the file's bytes (for devices that store the ELF file itself).
        assert_eq!(load(&f, Some(ImageFormat::Bin)).unwrap().data, f);
    }

    #[test]
    fn elf_without_loadable_segments_or_truncated_is_refused() {
        let e = load(&elf32(&[(4, 0, &[1])]), None).unwrap_err();
        assert!(e.to_string().contains("no loadable segments"), "{e}");
        let mut f = elf32(&[(1, 0, &[1, 2, 3, 4, 5, 6, 7, 8])]);
        f.truncate(f.len() - 4);
        let e = load(&f, None).unwrap_err();
        assert!(e.to_string().contains("beyond the end"), "{e}");
        let e = load(b"\x7FELF\x01\x01", None).unwrap_err();
        assert!(matches!(e, ImageError::Elf(_)), "{e}");
        let e = load(&elf32(&[(1, 0, &[1, 2]), (1, 1, &[3])]), None).unwrap_err();
        assert!(e.to_string().contains("overlap"), "{e}");
    }

    #[test]
    fn hex_without_end_of_file_record_is_truncated() {
        let f = hex_of(&[
            ihex::Record::Data {
                offset: 0,
                value: vec![1, 2, 3, 4],
            },
            ihex::Record::EndOfFile,
        ]);
        let cut: String = f.lines().take(1).map(|l| format!("{l}\n")).collect();
        let e = load(cut.as_bytes(), None).unwrap_err();
        assert_eq!(e, ImageError::HexNoEof { lines: 1 });
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn hex_with_dos_padding_is_still_hex() {
        let f = hex_of(&[
            ihex::Record::Data {
                offset: 0,
                value: vec![1, 2, 3, 4],
            },
            ihex::Record::EndOfFile,
        ]);
        for pad in ["\u{1a}", "\0", "\r\n\u{1a}\0\0"] {
            let img = load(format!("{f}{pad}").as_bytes(), None).unwrap();
            assert_eq!(img.format, ImageFormat::Hex, "{pad:?}");
            assert_eq!(img.data, vec![1, 2, 3, 4]);
        }
        // Padding before the end-of-file record is an error on its line, not a BIN.
        let lines: Vec<&str> = f.lines().collect();
        let bad = format!("{}\n\u{1a}\n{}\n", lines[0], lines[1]);
        let e = load(bad.as_bytes(), None).unwrap_err();
        assert!(matches!(e, ImageError::Hex { line: 2, .. }), "{e}");
    }

    #[test]
    fn far_apart_segments_are_listed_and_a_range_chooses() {
        // nRF52: application in flash, a customer register in UICR at 0x10001080.
        let f = hex_of(&[
            ihex::Record::Data {
                offset: 0x0000,
                value: vec![0xAA; 16],
            },
            ihex::Record::ExtendedLinearAddress(0x1000),
            ihex::Record::Data {
                offset: 0x1080,
                value: vec![1, 2, 3, 4],
            },
            ihex::Record::EndOfFile,
        ]);
        let e = load(f.as_bytes(), None).unwrap_err();
        assert!(matches!(e, ImageError::FarApart { .. }), "{e}");
        let m = e.to_string();
        assert!(m.contains("0x00000000..0x00000010 (16 B)"), "{m}");
        assert!(m.contains("0x10001080..0x10001084 (4 B)"), "{m}");
        assert_eq!(e.kind(), "segments");
        let img = load_with(
            f.as_bytes(),
            &LoadOptions {
                format: None,
                range: Some(0..0x1000_0000),
            },
        )
        .unwrap();
        assert_eq!((img.base_address, img.data), (0, vec![0xAA; 16]));
        let e = load_with(
            f.as_bytes(),
            &LoadOptions {
                format: None,
                range: Some(0x2000_0000..0x3000_0000),
            },
        )
        .unwrap_err();
        assert!(matches!(e, ImageError::EmptyRange { .. }), "{e}");
        assert_eq!(segments(f.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn many_small_gaps_do_not_add_up_to_a_huge_image() {
        // 64 one-byte records 512 KiB apart: each gap is small, the fill (32 MiB) is not.
        let mut recs = Vec::new();
        for i in 0..64u32 {
            let a = i * (512 << 10);
            recs.push(ihex::Record::ExtendedLinearAddress((a >> 16) as u16));
            recs.push(ihex::Record::Data {
                offset: a as u16,
                value: vec![i as u8],
            });
        }
        recs.push(ihex::Record::EndOfFile);
        let e = load(hex_of(&recs).as_bytes(), None).unwrap_err();
        assert!(matches!(e, ImageError::FarApart { .. }), "{e}");
    }

    #[test]
    fn binary_by_content_not_extension() {
        let img = load(&[0u8, 1, 2, 0xFF], None).unwrap();
        assert_eq!(img.format, ImageFormat::Bin);
        assert_eq!(img.data, vec![0, 1, 2, 0xFF]);
    }
}
