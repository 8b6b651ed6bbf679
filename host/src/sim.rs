//! The link simulator as a [`Link`]: a [`SimLink`] with a device on its far end, in virtual
//! time. The push runs through the same driver as over a serial port.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bluesphere_core::proto::Push;

use crate::driver::Session;
use crate::link::{Dir, SimLink};
use crate::transport::{Clock, Link, LinkError};

/// A device on the far end of a simulated link.
pub trait SimDevice {
    /// Bytes arrived at `now`; return what the device writes back (each a frame).
    fn receive(&mut self, now: u64, bytes: &[u8]) -> Vec<Vec<u8>>;
    /// When the answers to what arrived at `now` go out (called after [`receive`]): a
    /// device busy erasing flash answers late. At once unless a model says otherwise.
    ///
    /// [`receive`]: SimDevice::receive
    fn answers_at(&mut self, now: u64) -> u64 {
        now
    }
}

impl<T: FnMut(u64, &[u8]) -> Vec<Vec<u8>>> SimDevice for T {
    fn receive(&mut self, now: u64, bytes: &[u8]) -> Vec<Vec<u8>> {
        self(now, bytes)
    }
}

/// Virtual time, shared by a [`SimPort`] and whoever reads the clock.
#[derive(Debug, Clone, Default)]
pub struct SimClock(Rc<Cell<u64>>);

impl SimClock {
    fn set(&self, t: u64) {
        self.0.set(t);
    }
}

impl Clock for SimClock {
    fn now(&self) -> u64 {
        self.0.get()
    }
    fn sleep(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.set(self.now().saturating_add(us));
    }
}

/// The host's end of a simulated link with `D` on the other end.
#[derive(Debug)]
pub struct SimPort<'a, D> {
    link: &'a mut SimLink,
    device: &'a mut D,
    clock: SimClock,
    inbox: VecDeque<u8>,
}

impl<'a, D: SimDevice> SimPort<'a, D> {
    /// The port over `link` to `device`, on `clock`.
    pub fn new(link: &'a mut SimLink, device: &'a mut D, clock: SimClock) -> Self {
        Self {
            link,
            device,
            clock,
            inbox: VecDeque::new(),
        }
    }
}

impl<D: SimDevice> Link for SimPort<'_, D> {
    fn send(&mut self, frame: &[u8]) -> Result<(), LinkError> {
        self.link.send(self.clock.now(), Dir::Down, frame);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8], wait: Duration) -> Result<usize, LinkError> {
        let wait = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        let deadline = self.clock.now().saturating_add(wait);
        while self.inbox.is_empty() {
            match self.link.next_arrival() {
                Some(t) if t <= deadline => {
                    let now = self.clock.now().max(t);
                    self.clock.set(now);
                    for (dir, bytes) in self.link.deliver(now) {
                        match dir {
                            Dir::Down => {
                                let answers = self.device.receive(now, &bytes);
                                let at = self.device.answers_at(now).max(now);
                                for out in answers {
                                    self.link.send(at, Dir::Up, &out);
                                }
                            }
                            Dir::Up => self.inbox.extend(bytes),
                        }
                    }
                }
                _ => {
                    self.clock.set(self.clock.now().max(deadline));
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.inbox.len());
        for (b, v) in buf.iter_mut().zip(self.inbox.drain(..n)) {
            *b = v;
        }
        Ok(n)
    }

    fn max_frame(&self) -> usize {
        4096 + 64
    }

    fn name(&self) -> String {
        "the simulated link".into()
    }
}

/// The virtual clock and the driver's session across runs.
#[derive(Debug, Default)]
pub struct Sim {
    clock: SimClock,
    session: Session,
    /// When the first DATA acknowledgement arrived and when the last one did (for
    /// throughput of the data phase).
    pub data_window: Option<(u64, u64)>,
}

impl Sim {
    /// Time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Now, microseconds.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Run until the push finishes (true) or virtual time reaches `until` (false), through
    /// the same driver as a serial push.
    pub fn run_until<D: SimDevice>(
        &mut self,
        push: &mut Push<'_>,
        dev: &mut D,
        link: &mut SimLink,
        until: u64,
    ) -> bool {
        let mut port = SimPort::new(link, dev, self.clock.clone());
        let never = AtomicBool::new(false);
        let done = self
            .session
            .run_until(push, &mut port, &self.clock, until, &mut |_| {}, &never)
            .unwrap_or(false);
        self.data_window = self.session.data_window;
        done
    }
}
