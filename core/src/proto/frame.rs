//! Framing: COBS with a `0x00` delimiter after each frame, CRC-32 (IEEE) over the raw frame.
//!
//! | raw frame | bytes |
//! |---|---|
//! | kind | 1 |
//! | sequence | 1 |
//! | body | 0 .. max_frame - 6 |
//! | CRC-32 (LE) of kind, sequence, body | 4 |
//!
//! On the wire: COBS(raw frame) then `0x00`. A receiver drops a frame that does not decode,
//! is too long, is shorter than 6 bytes or fails its CRC, and resynchronises at the next
//! `0x00`.

use crate::crc::Crc32;

/// Smallest raw frame: kind, sequence, CRC.
pub const MIN_FRAME: usize = 6;

/// Encoded size bound for a raw frame of `raw` bytes (COBS overhead and the delimiter).
pub const fn encoded_max(raw: usize) -> usize {
    raw + raw / 254 + 2
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Longer than the receive buffer.
    TooLong,
    /// Not valid COBS.
    BadEncoding,
    /// Shorter than kind + sequence + CRC.
    TooShort,
    /// The CRC does not match (corrupted on the line).
    BadCrc,
}

/// COBS-encodes a frame into `out`, byte by byte, computing the CRC on the way.
#[derive(Debug)]
pub struct FrameWriter<'a> {
    out: &'a mut [u8],
    code_at: usize,
    pos: usize,
    code: u8,
    crc: Crc32,
    overflow: bool,
}

impl<'a> FrameWriter<'a> {
    /// Start a frame with its kind and sequence number.
    pub fn new(out: &'a mut [u8], kind: u8, seq: u8) -> Self {
        let mut w = Self {
            out,
            code_at: 0,
            pos: 1,
            code: 1,
            crc: Crc32::new(),
            overflow: false,
        };
        w.bytes(&[kind, seq]);
        w
    }

    fn put(&mut self, at: usize, b: u8) {
        match self.out.get_mut(at) {
            Some(slot) => *slot = b,
            None => self.overflow = true,
        }
    }

    fn raw(&mut self, b: u8) {
        if b == 0 {
            self.put(self.code_at, self.code);
            self.code_at = self.pos;
            self.pos += 1;
            self.code = 1;
        } else {
            self.put(self.pos, b);
            self.pos += 1;
            self.code += 1;
            if self.code == 0xFF {
                self.put(self.code_at, self.code);
                self.code_at = self.pos;
                self.pos += 1;
                self.code = 1;
            }
        }
    }

    /// Append body bytes.
    pub fn bytes(&mut self, data: &[u8]) -> &mut Self {
        self.crc.update(data);
        for &b in data {
            self.raw(b);
        }
        self
    }

    /// Append a little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Append a little-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Append a length-prefixed (u8) string or byte string (at most 255 bytes).
    pub fn short(&mut self, data: &[u8]) -> &mut Self {
        let n = data.len().min(255);
        self.bytes(&[n as u8]);
        self.bytes(data.get(..n).unwrap_or(&[]))
    }

    /// Close the frame (CRC, COBS code, delimiter); the encoded length, or `None` if `out`
    /// was too small.
    pub fn finish(mut self) -> Option<usize> {
        let crc = self.crc.finish().to_le_bytes();
        for b in crc {
            self.raw(b);
        }
        self.put(self.code_at, self.code);
        self.put(self.pos, 0);
        (!self.overflow).then_some(self.pos + 1)
    }
}

/// Accumulates received bytes and yields checked raw frames (without their CRC).
#[derive(Debug, Clone)]
pub struct FrameDecoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
}

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameDecoder<N> {
    /// An empty decoder (`N`: largest encoded frame accepted).
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            overflow: false,
        }
    }

    /// Drop any partial frame (after a reconnect).
    pub fn clear(&mut self) {
        self.len = 0;
        self.overflow = false;
    }

    /// Take bytes from `input` up to and including the next delimiter. Returns how many
    /// were taken and, if a delimiter was reached, the frame (kind, sequence, body) or why
    /// it was dropped.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<Result<&[u8], FrameError>>) {
        for (i, &b) in input.iter().enumerate() {
            if b != 0 {
                match self.buf.get_mut(self.len) {
                    Some(slot) => {
                        *slot = b;
                        self.len += 1;
                    }
                    None => self.overflow = true,
                }
                continue;
            }
            let len = core::mem::take(&mut self.len);
            if core::mem::take(&mut self.overflow) {
                return (i + 1, Some(Err(FrameError::TooLong)));
            }
            if len == 0 {
                continue; // an empty frame: just a delimiter (resync)
            }
            return (i + 1, Some(self.decode(len)));
        }
        (input.len(), None)
    }

    fn decode(&mut self, len: usize) -> Result<&[u8], FrameError> {
        // COBS decode in place: the output never overtakes the input.
        let (mut i, mut o) = (0usize, 0usize);
        while i < len {
            let code = *self.buf.get(i).ok_or(FrameError::BadEncoding)?;
            if code == 0 {
                return Err(FrameError::BadEncoding);
            }
            i += 1;
            for _ in 1..code {
                let b = *self
                    .buf
                    .get(i)
                    .filter(|_| i < len)
                    .ok_or(FrameError::BadEncoding)?;
                if let Some(slot) = self.buf.get_mut(o) {
                    *slot = b;
                }
                i += 1;
                o += 1;
            }
            if code < 0xFF && i < len {
                if let Some(slot) = self.buf.get_mut(o) {
                    *slot = 0;
                }
                o += 1;
            }
        }
        if o < MIN_FRAME {
            return Err(FrameError::TooShort);
        }
        let body = self.buf.get(..o - 4).ok_or(FrameError::TooShort)?;
        let crc = self.buf.get(o - 4..o).ok_or(FrameError::TooShort)?;
        let mut c = Crc32::new();
        c.update(body);
        if c.finish().to_le_bytes() != crc {
            return Err(FrameError::BadCrc);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn encode(kind: u8, seq: u8, body: &[u8]) -> Vec<u8> {
        let mut out = std::vec![0u8; encoded_max(body.len() + 6)];
        let mut w = FrameWriter::new(&mut out, kind, seq);
        w.bytes(body);
        let n = w.finish().unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn round_trips_every_length_and_zero_pattern() {
        let mut d: FrameDecoder<2048> = FrameDecoder::new();
        for len in [0usize, 1, 2, 253, 254, 255, 256, 508, 509, 1000] {
            for fill in [0u8, 0xFF, 7] {
                let body: Vec<u8> = (0..len)
                    .map(|i| if i % 3 == 0 { fill } else { i as u8 })
                    .collect();
                let enc = encode(0x42, 9, &body);
                assert_eq!(enc.iter().filter(|&&b| b == 0).count(), 1, "one delimiter");
                assert!(enc.len() <= encoded_max(len + 6));
                let (n, f) = d.feed(&enc);
                assert_eq!(n, enc.len());
                let f = f.unwrap().unwrap();
                assert_eq!(f[0], 0x42);
                assert_eq!(f[1], 9);
                assert_eq!(&f[2..], &body[..]);
            }
        }
    }

    #[test]
    fn corrupt_frames_are_dropped_and_the_next_one_decodes() {
        let good = encode(1, 2, b"hello frame");
        let mut d: FrameDecoder<64> = FrameDecoder::new();
        for i in 0..good.len() - 1 {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[i] ^= 1 << bit;
                let mut stream = bad.clone();
                stream.extend_from_slice(&good);
                let mut got_good = false;
                let mut rest = &stream[..];
                while !rest.is_empty() {
                    let (n, f) = d.feed(rest);
                    rest = &rest[n..];
                    if let Some(Ok(f)) = f {
                        assert_eq!(&f[2..], b"hello frame", "a corrupted frame passed");
                        got_good = true;
                    }
                }
                d.clear();
                assert!(got_good);
            }
        }
        let mut small: FrameDecoder<8> = FrameDecoder::new();
        assert_eq!(small.feed(&good).1, Some(Err(FrameError::TooLong)));
        assert!(FrameWriter::new(&mut [0u8; 4], 1, 1).finish().is_none());
    }
}
