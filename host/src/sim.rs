//! Runs a [`Push`] against a simulated device over a [`SimLink`], in virtual time.

use bluesphere_core::proto::{encoded_max, Push};

use crate::link::{Dir, SimLink};

/// A device on the far end of a simulated link.
pub trait SimDevice {
    /// Bytes arrived at `now`; return what the device writes back (each a frame).
    fn receive(&mut self, now: u64, bytes: &[u8]) -> Vec<Vec<u8>>;
}

impl<T: FnMut(u64, &[u8]) -> Vec<Vec<u8>>> SimDevice for T {
    fn receive(&mut self, now: u64, bytes: &[u8]) -> Vec<Vec<u8>> {
        self(now, bytes)
    }
}

/// The virtual clock and the host's transmit buffer.
#[derive(Debug, Clone)]
pub struct Sim {
    /// Now, microseconds.
    pub now: u64,
    /// When the first DATA acknowledgement arrived and when the last one did (for
    /// throughput of the data phase).
    pub data_window: Option<(u64, u64)>,
    tx: Vec<u8>,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

impl Sim {
    /// Time 0.
    pub fn new() -> Self {
        Self {
            now: 0,
            data_window: None,
            tx: vec![0; encoded_max(4096)],
        }
    }

    /// Run until the push finishes (true) or virtual time reaches `until` (false).
    pub fn run_until<D: SimDevice>(
        &mut self,
        push: &mut Push<'_>,
        dev: &mut D,
        link: &mut SimLink,
        until: u64,
    ) -> bool {
        loop {
            if push.outcome().is_some() {
                return true;
            }
            while let Some(n) = push.poll_transmit(self.now, &mut self.tx) {
                link.send(self.now, Dir::Down, &self.tx[..n]);
            }
            let next = match (link.next_arrival(), push.next_deadline()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => return push.outcome().is_some(),
                },
            };
            if next > until {
                self.now = until;
                return false;
            }
            self.now = self.now.max(next);
            for (dir, bytes) in link.deliver(self.now) {
                match dir {
                    Dir::Down => {
                        for out in dev.receive(self.now, &bytes) {
                            link.send(self.now, Dir::Up, &out);
                        }
                    }
                    Dir::Up => {
                        let before = push.progress().acked;
                        push.handle_input(self.now, &bytes);
                        if push.progress().acked > before {
                            let start = self.data_window.map_or(self.now, |w| w.0);
                            self.data_window = Some((start, self.now));
                        }
                    }
                }
            }
            push.on_tick(self.now);
        }
    }
}
