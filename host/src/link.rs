//! A simulated serial link in virtual time, for tests and the benchmark.
//!
//! | effect | model |
//! |---|---|
//! | line rate | each direction sends one byte per `10 / baud` seconds (8N1), bytes queue behind each other |
//! | latency | every write arrives `latency` after its last byte left (USB-serial adapters: 1-16 ms) |
//! | bit errors | each bit of a write flips with probability `ber` |
//! | drops, duplicates, truncation | per write (one write = one frame here): lost, delivered twice, or cut at a random byte |
//! | disconnect | [`SimLink::disconnect`] loses everything in flight |
//!
//! Time is in microseconds and only moves when the caller moves it, so a 45-second transfer
//! at 115200 baud simulates in milliseconds.

use std::collections::VecDeque;

/// Which way bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Host to device.
    Down,
    /// Device to host.
    Up,
}

/// Link faults.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Bit error rate.
    pub ber: f64,
    /// Probability a write is lost.
    pub drop: f64,
    /// Probability a write arrives twice.
    pub dup: f64,
    /// Probability a write is cut short.
    pub truncate: f64,
}

#[derive(Debug, Clone)]
struct Wire {
    busy_until: u64,
    queue: VecDeque<(u64, Vec<u8>)>,
}

/// Statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Bytes put on the line, per direction (down, up).
    pub bytes: [u64; 2],
    /// Writes damaged (bit errors, drops, duplicates, truncation).
    pub damaged: u64,
}

/// Two-way simulated link.
#[derive(Debug, Clone)]
pub struct SimLink {
    /// Baud rate (0: infinitely fast).
    pub baud: u32,
    /// One-way latency, microseconds.
    pub latency: u64,
    /// Faults.
    pub faults: Faults,
    wires: [Wire; 2],
    rng: u64,
    /// Statistics.
    pub stats: LinkStats,
}

impl SimLink {
    /// A clean link.
    pub fn new(baud: u32, latency_us: u64, seed: u64) -> Self {
        let wire = Wire {
            busy_until: 0,
            queue: VecDeque::new(),
        };
        Self {
            baud,
            latency: latency_us,
            faults: Faults::default(),
            wires: [wire.clone(), wire],
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            stats: LinkStats::default(),
        }
    }

    fn rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rand() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn idx(d: Dir) -> usize {
        match d {
            Dir::Down => 0,
            Dir::Up => 1,
        }
    }

    /// Microseconds to send `n` bytes.
    pub fn byte_time(&self, n: usize) -> u64 {
        if self.baud == 0 {
            0
        } else {
            (n as u64 * 10 * 1_000_000).div_ceil(u64::from(self.baud))
        }
    }

    /// Put `data` on the line at `now`.
    pub fn send(&mut self, now: u64, dir: Dir, data: &[u8]) {
        let i = Self::idx(dir);
        self.stats.bytes[i] += data.len() as u64;
        let start = now.max(self.wires[i].busy_until);
        let done = start + self.byte_time(data.len());
        self.wires[i].busy_until = done;
        let f = self.faults;
        if self.chance(f.drop) {
            self.stats.damaged += 1;
            return;
        }
        let mut bytes = data.to_vec();
        let mut damaged = false;
        if f.ber > 0.0 {
            // Flip bits at the error rate: draw the gap to the next error geometrically.
            let bits = bytes.len() as u64 * 8;
            let mut at = self.gap(f.ber);
            while at < bits {
                bytes[(at / 8) as usize] ^= 1 << (at % 8);
                damaged = true;
                at += 1 + self.gap(f.ber);
            }
        }
        if !bytes.is_empty() && self.chance(f.truncate) {
            let keep = (self.rand() % bytes.len() as u64) as usize;
            bytes.truncate(keep);
            damaged = true;
        }
        let arrive = done + self.latency;
        if self.chance(f.dup) {
            self.wires[i].queue.push_back((arrive, bytes.clone()));
            damaged = true;
        }
        self.stats.damaged += u64::from(damaged);
        self.wires[i].queue.push_back((arrive, bytes));
    }

    fn gap(&mut self, p: f64) -> u64 {
        let u = ((self.rand() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        (u.ln() / (1.0 - p).ln()) as u64
    }

    /// When the next delivery happens.
    pub fn next_arrival(&self) -> Option<u64> {
        self.wires
            .iter()
            .filter_map(|w| w.queue.front().map(|(t, _)| *t))
            .min()
    }

    /// Everything that has arrived by `now`, in order.
    pub fn deliver(&mut self, now: u64) -> Vec<(Dir, Vec<u8>)> {
        let mut out = Vec::new();
        for (i, dir) in [(0, Dir::Down), (1, Dir::Up)] {
            while self.wires[i].queue.front().is_some_and(|(t, _)| *t <= now) {
                if let Some((_, b)) = self.wires[i].queue.pop_front() {
                    out.push((dir, b));
                }
            }
        }
        out
    }

    /// The cable is pulled: everything in flight is lost.
    pub fn disconnect(&mut self, now: u64) {
        for w in &mut self.wires {
            w.queue.clear();
            w.busy_until = now;
        }
    }

    /// Time the host-to-device line is busy until (for pacing writes like a UART driver).
    pub fn busy_until(&self, dir: Dir) -> u64 {
        self.wires[Self::idx(dir)].busy_until
    }
}
