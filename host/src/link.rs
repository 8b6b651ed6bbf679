//! A simulated serial link in virtual time, for tests and the benchmark.
//!
//! | effect | model |
//! |---|---|
//! | line rate | each direction sends one byte per `10 / baud` seconds (8N1), bytes queue behind each other |
//! | latency | every write arrives `latency` after its last byte left (USB-serial adapters: 1-16 ms) |
//! | bit errors | each bit of a write flips with probability `ber` |
//! | drops, duplicates, truncation | per write (one write = one frame here): lost, delivered twice, or cut at a random byte |
//! | disconnect | [`SimLink::disconnect`] loses everything in flight |
//! | Bluetooth LE ([`SimLink::ble`]) | instead of a line rate: bytes leave only at connection events (every `interval`), at most `packets_per_event` link-layer packets of `MTU - 3` bytes per direction per event (fewer when the host OS grants fewer write-command `credits`); the transport fills each packet from the byte stream |
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
    /// BLE: the connection event last used and the bytes it carries so far.
    event: u64,
    event_bytes: u64,
}

/// The timing of a Bluetooth LE connection (GATT write without response down,
/// notifications up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BleTiming {
    /// Connection interval, microseconds (7.5 ms to 4 s).
    pub interval: u64,
    /// Link-layer packets per direction per connection event.
    pub packets_per_event: u32,
    /// ATT MTU: each packet carries `mtu - 3` bytes.
    pub mtu: u32,
    /// Write-command credits the host's OS grants per event (0: as many as the event takes).
    pub credits: u32,
}

impl BleTiming {
    /// Bytes a direction carries per connection event.
    pub fn bytes_per_event(&self, dir: Dir) -> u64 {
        let packets = match dir {
            Dir::Down if self.credits > 0 => self.packets_per_event.min(self.credits),
            _ => self.packets_per_event,
        };
        u64::from(packets) * u64::from(self.mtu.saturating_sub(3))
    }

    /// The most a direction can carry, bytes per second (the link's ceiling).
    pub fn ceiling(&self, dir: Dir) -> f64 {
        self.bytes_per_event(dir) as f64 * 1e6 / self.interval.max(1) as f64
    }
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
    /// Bluetooth LE timing instead of a serial line (`None`: serial).
    pub ble: Option<BleTiming>,
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
            event: 0,
            event_bytes: 0,
        };
        Self {
            baud,
            latency: latency_us,
            faults: Faults::default(),
            ble: None,
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

    /// A clean Bluetooth LE link with this timing.
    pub fn new_ble(timing: BleTiming, seed: u64) -> Self {
        let mut l = Self::new(0, 0, seed);
        l.ble = Some(timing);
        l
    }

    /// Bytes leave at connection events: each event carries up to its capacity, in order.
    fn send_ble(&mut self, now: u64, dir: Dir, data: &[u8], b: BleTiming) {
        let i = Self::idx(dir);
        self.stats.bytes[i] += data.len() as u64;
        let cap = b.bytes_per_event(dir).max(1);
        let interval = b.interval.max(1);
        let latency = self.latency;
        let w = &mut self.wires[i];
        let mut rest = data;
        while !rest.is_empty() {
            let earliest = now.div_ceil(interval);
            if earliest > w.event {
                w.event = earliest;
                w.event_bytes = 0;
            }
            if w.event_bytes >= cap {
                w.event += 1;
                w.event_bytes = 0;
            }
            let take = usize::try_from(cap - w.event_bytes)
                .unwrap_or(usize::MAX)
                .min(rest.len());
            let (now_bytes, later) = rest.split_at(take);
            w.event_bytes += take as u64;
            let at = w.event * interval + latency;
            w.busy_until = at;
            w.queue.push_back((at, now_bytes.to_vec()));
            rest = later;
        }
    }

    /// Put `data` on the line at `now`.
    pub fn send(&mut self, now: u64, dir: Dir, data: &[u8]) {
        if let Some(b) = self.ble {
            self.send_ble(now, dir, data, b);
            return;
        }
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
        let event = self.ble.map_or(0, |b| now / b.interval.max(1));
        for w in &mut self.wires {
            w.queue.clear();
            w.busy_until = now;
            w.event = event;
            w.event_bytes = 0;
        }
    }

    /// Time the host-to-device line is busy until (for pacing writes like a UART driver).
    pub fn busy_until(&self, dir: Dir) -> u64 {
        self.wires[Self::idx(dir)].busy_until
    }
}

#[cfg(test)]
mod ble_tests {
    use super::*;

    #[test]
    fn ble_bytes_leave_at_connection_events_up_to_their_capacity() {
        let t = BleTiming {
            interval: 7_500,
            packets_per_event: 6,
            mtu: 247,
            credits: 0,
        };
        assert_eq!(t.bytes_per_event(Dir::Down), 6 * 244);
        let mut l = SimLink::new_ble(t, 1);
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        l.send(1, Dir::Down, &data);
        // 10,000 bytes at 1,464 per event: events 1..=7 (the first after t = 1 us).
        let mut got = Vec::new();
        let mut last = 0;
        while let Some(at) = l.next_arrival() {
            for (dir, b) in l.deliver(at) {
                assert_eq!(dir, Dir::Down);
                got.extend(b);
            }
            last = at;
        }
        assert_eq!(got, data);
        assert_eq!(last, 7 * 7_500);
        // Two write credits: two packets per event down, however many the event takes.
        let mut l = SimLink::new_ble(BleTiming { credits: 2, ..t }, 1);
        l.send(0, Dir::Down, &data);
        assert_eq!(
            l.busy_until(Dir::Down),
            (10_000u64.div_ceil(488) - 1) * 7_500
        );
        // Notifications up have their own packets in the same events.
        l.send(0, Dir::Up, &[1; 100]);
        assert_eq!(l.next_arrival(), Some(0));
    }
}
