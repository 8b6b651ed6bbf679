//! One progress event for every job, a sink to send them to, and a cancel token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Progress of any job. The CLI draws bars from them; the Studio forwards them to the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub enum Event {
    /// A named stage started (`read`, `diff`, `sign`, `verify`, `apply`, `write`, `push`...).
    Stage {
        /// Stage name.
        name: String,
        /// Component index (multi-component jobs), else 0.
        component: usize,
        /// Component count, else 1.
        of: usize,
    },
    /// Bytes of the current stage done.
    Bytes {
        /// Done.
        done: u64,
        /// Total (0: unknown).
        total: u64,
    },
    /// Items (codes, devices) of the current stage done.
    Items {
        /// Done.
        done: u64,
        /// Total.
        total: u64,
    },
    /// Connected to a device.
    Connected {
        /// Its product.
        product: String,
        /// The version it runs.
        version: String,
    },
    /// Push progress.
    Push {
        /// Engine stage (`hello`, `begin`, `data`, `finish`, `reboot`, `confirm`...).
        stage: String,
        /// Payload bytes the device acknowledged.
        acked: u64,
        /// Payload length (0 until the device accepted the package).
        total: u64,
        /// Recent speed.
        bytes_per_sec: f64,
    },
    /// The link dropped; reconnecting.
    Reconnecting {
        /// Attempt.
        attempt: u32,
    },
    /// Reconnected; the push resumes where the device says.
    Reconnected,
    /// A station finished one device.
    Device {
        /// Port or address.
        port: String,
        /// Chip UID (hex).
        uid: String,
        /// Passed.
        pass: bool,
        /// `issued`, `reused`, `already-activated`, or why it failed.
        detail: String,
        /// The code (text form).
        code: String,
    },
    /// Something the user should know that is not a failure.
    Warning {
        /// The sentence.
        message: String,
    },
}

/// Where a job sends its events. Called from the job's threads.
pub trait Progress: Sync {
    /// One event.
    fn event(&self, e: Event);
}

impl<F: Fn(Event) + Sync> Progress for F {
    fn event(&self, e: Event) {
        self(e)
    }
}

/// A sink that drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: Event) {}
}

/// Asks a running job to stop. Clones share one flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the job to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Asked?
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` if asked.
    pub fn check(&self) -> Result<(), crate::Error> {
        if self.is_cancelled() {
            Err(crate::Error::cancelled())
        } else {
            Ok(())
        }
    }

    /// The flag, for lower layers.
    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }

    /// The flag, shared: for a job's own threads, or for a signal handler to set.
    pub fn shared(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}
