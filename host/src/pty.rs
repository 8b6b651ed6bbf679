//! A serial cable made of two pseudo-terminal pairs joined by relay threads: a device end
//! and a host end, both openable by path (a virtual device on one, the push driver on the
//! other). The cable stays up while either side's program is killed and restarted (a relay
//! waits for its slave to be opened again).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serialport::{SerialPort, TTYPort};

use crate::HostError;

/// The cable; dropping it stops the relays.
#[derive(Debug)]
pub struct PtyCable {
    /// Path the device opens.
    pub device: String,
    /// Path the host opens.
    pub host: String,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn pty_error(e: impl std::fmt::Display) -> HostError {
    HostError::Port {
        port: "(pseudo-terminal)".into(),
        message: e.to_string(),
    }
}

impl PtyCable {
    /// Make the cable.
    pub fn open() -> Result<PtyCable, HostError> {
        let (mut ma, sa) = TTYPort::pair().map_err(pty_error)?;
        let (mut mb, sb) = TTYPort::pair().map_err(pty_error)?;
        let device = sa.name().ok_or_else(|| pty_error("slave without a name"))?;
        let host = sb.name().ok_or_else(|| pty_error("slave without a name"))?;
        drop((sa, sb));
        for m in [&mut ma, &mut mb] {
            m.set_timeout(Duration::from_millis(5)).map_err(pty_error)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let a2 = ma.try_clone_native().map_err(pty_error)?;
        let b2 = mb.try_clone_native().map_err(pty_error)?;
        let mut threads = Vec::new();
        for (mut from, mut to) in [(ma, b2), (mb, a2)] {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    match from.read(&mut buf) {
                        Ok(n) if n > 0 => {
                            let _ = to.write_all(buf.get(..n).unwrap_or(&[]));
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        // EIO while nobody has the slave open: wait for it.
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
        }
        Ok(PtyCable {
            device,
            host,
            stop,
            threads,
        })
    }
}

impl Drop for PtyCable {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
