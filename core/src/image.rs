//! Firmware image input: raw BIN or Intel HEX, recognised by content.

use std::collections::BTreeMap;

/// Input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// Raw bytes.
    Bin,
    /// Intel HEX.
    Hex,
}

/// A loaded image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The bytes (HEX gaps filled with 0xFF).
    pub data: Vec<u8>,
    /// Address of `data[0]` (0 for BIN unless given).
    pub base_address: u64,
    /// Detected format.
    pub format: ImageFormat,
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
    /// The input is something else.
    #[error("not a firmware image: {0}")]
    NotImage(String),
    /// Too large.
    #[error("image spans {0} bytes; the limit is 4 GiB - 1")]
    TooLarge(u64),
}

/// Largest HEX address span accepted (the format's limit).
const MAX_SPAN: u64 = u32::MAX as u64;

/// Recognise and load `bytes`. `force` overrides content detection.
pub fn load(bytes: &[u8], force: Option<ImageFormat>) -> Result<Image, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let format = force.unwrap_or_else(|| detect(bytes));
    match format {
        ImageFormat::Hex => parse_hex(bytes),
        ImageFormat::Bin => {
            if force.is_none() {
                refuse_non_image(bytes)?;
            }
            if bytes.len() as u64 > MAX_SPAN {
                return Err(ImageError::TooLarge(bytes.len() as u64));
            }
            Ok(Image {
                data: bytes.to_vec(),
                base_address: 0,
                format: ImageFormat::Bin,
            })
        }
    }
}

fn detect(bytes: &[u8]) -> ImageFormat {
    let t = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = t.iter().find(|b| !b.is_ascii_whitespace());
    let textual = t
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

fn parse_hex(bytes: &[u8]) -> Result<Image, ImageError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ImageError::Hex {
        line: 1,
        reason: "not ASCII text".into(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chunks: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut upper: u64 = 0;
    let mut seen_eof = false;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let err = |reason: String| ImageError::Hex {
            line: line_no,
            reason,
        };
        if seen_eof {
            return Err(err("data after the end-of-file record".into()));
        }
        let rec = ihex::Record::from_record_string(line).map_err(|e| err(e.to_string()))?;
        match rec {
            ihex::Record::Data { offset, value } => {
                let addr = upper + u64::from(offset);
                let end = addr + value.len() as u64;
                // Overlap with the previous or next chunk?
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
    let (Some((&base, _)), Some((&last, lv))) = (chunks.iter().next(), chunks.iter().next_back())
    else {
        return Err(ImageError::Hex {
            line: 1,
            reason: "no data records".into(),
        });
    };
    let span = last + lv.len() as u64 - base;
    if span > MAX_SPAN {
        return Err(ImageError::TooLarge(span));
    }
    let mut data = vec![0xFFu8; span as usize];
    for (addr, v) in chunks {
        let o = (addr - base) as usize;
        data[o..o + v.len()].copy_from_slice(&v);
    }
    Ok(Image {
        data,
        base_address: base,
        format: ImageFormat::Hex,
    })
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

    #[test]
    fn elf_files_are_images_as_they_are() {
        // Firmware that devices store as ELF (kernel modules, GPU firmware) is diffed as bytes.
        let img = load(b"\x7FELF\x02\x01\x01\x00rest", None).unwrap();
        assert_eq!(img.format, ImageFormat::Bin);
    }

    #[test]
    fn binary_by_content_not_extension() {
        let img = load(&[0u8, 1, 2, 0xFF], None).unwrap();
        assert_eq!(img.format, ImageFormat::Bin);
        assert_eq!(img.data, vec![0, 1, 2, 0xFF]);
    }
}
