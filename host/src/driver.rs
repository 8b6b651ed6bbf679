//! The one driver: runs the core's sans-IO push engine, and single requests, over any
//! [`Link`] and [`Clock`] (serial, the simulator, BLE). Reconnection goes through a
//! [`Connector`], so a push survives a pulled cable or a device reset on every transport.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bluesphere_core::proto::{
    encoded_max, FrameDecoder, Outcome, Phase, Push, PushConfig, PushError, RefuseReason, Request,
    Response, Stage, Status, MACHINE_PHASES, PROTO_VERSION,
};

use crate::transport::{Address, Clock, Connector, Link, LinkError};
use crate::HostError;

/// Progress of a push, for a bar or the Studio.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Connected to the device; what it runs.
    Connected {
        /// Product.
        product: String,
        /// Running version.
        version: String,
    },
    /// Payload progress.
    Progress {
        /// Stage.
        stage: Stage,
        /// Bytes acknowledged.
        acked: u32,
        /// Payload length.
        total: u32,
        /// Recent speed, bytes per second.
        bytes_per_sec: f64,
    },
    /// The link dropped; trying to open it again.
    Reconnecting {
        /// Attempt number.
        attempt: u32,
    },
    /// Reconnected; the push restarts at HELLO and resumes where the device says.
    Reconnected,
}

/// Microseconds between two progress events.
const EVENT_EVERY: u64 = 100_000;
/// Pause between two reconnection attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// The state of a push across driver calls: buffers, progress pacing, data-phase timing.
#[derive(Debug)]
pub struct Session {
    tx: Vec<u8>,
    rx: Vec<u8>,
    announced: bool,
    last_event: Option<u64>,
    speed: (u64, u32, f64),
    /// Clock times of the first and the latest DATA acknowledgement that moved the window
    /// (throughput of the data phase).
    pub data_window: Option<(u64, u64)>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// Fresh buffers for DATA frames of up to 4 KiB.
    pub fn new() -> Self {
        Self::for_chunk(4096)
    }

    /// Fresh buffers for DATA frames of up to `chunk` payload bytes (the push's
    /// [`PushConfig::chunk`]).
    pub fn for_chunk(chunk: usize) -> Self {
        Self {
            tx: vec![0; encoded_max(chunk.max(4096) + 64)],
            rx: vec![0; 4096],
            announced: false,
            last_event: None,
            speed: (0, 0, 0.0),
            data_window: None,
        }
    }

    /// Run `push` over `link` until it finishes (`Ok(true)`), the clock reaches `until`
    /// (`Ok(false)`), or the link fails.
    pub fn run_until<L: Link + ?Sized, C: Clock + ?Sized>(
        &mut self,
        push: &mut Push<'_>,
        link: &mut L,
        clock: &C,
        until: u64,
        events: &mut dyn FnMut(Event),
        cancel: &AtomicBool,
    ) -> Result<bool, LinkError> {
        loop {
            if push.outcome().is_some() {
                return Ok(true);
            }
            if cancel.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let now = clock.now();
            while let Some(n) = push.poll_transmit(now, &mut self.tx) {
                link.send(&self.tx[..n])?;
            }
            if now >= until {
                return Ok(false);
            }
            let deadline = push.next_deadline().unwrap_or(until).clamp(now, until);
            let n = link.recv(&mut self.rx, Duration::from_micros(deadline - now))?;
            let now = clock.now();
            if n > 0 {
                let before = push.progress().acked;
                push.handle_input(now, &self.rx[..n]);
                if push.progress().acked > before {
                    let start = self.data_window.map_or(now, |w| w.0);
                    self.data_window = Some((start, now));
                }
            }
            push.on_tick(now);
            self.report(push, now, events);
        }
    }

    fn report(&mut self, push: &Push<'_>, now: u64, events: &mut dyn FnMut(Event)) {
        if !self.announced {
            if let Some(d) = push.device() {
                events(Event::Connected {
                    product: d.product.as_str().into(),
                    version: d.version.as_str().into(),
                });
                self.announced = true;
            }
        }
        if self.last_event.is_some_and(|t| now < t + EVENT_EVERY) {
            return;
        }
        let p = push.progress();
        let dt = now.saturating_sub(self.speed.0);
        if dt >= 1_000_000 {
            let rate = f64::from(p.acked.saturating_sub(self.speed.1)) * 1e6 / dt as f64;
            self.speed = (now, p.acked, rate);
        }
        events(Event::Progress {
            stage: p.stage,
            acked: p.acked,
            total: p.total,
            bytes_per_sec: self.speed.2,
        });
        self.last_event = Some(now);
    }
}

/// Options of a push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Engine settings.
    pub config: PushConfig,
    /// Keep trying to reopen a lost link this long.
    pub reconnect_for: Duration,
}

fn resume_hint(push: &Push<'_>) -> String {
    let p = push.progress();
    if p.total > 0 {
        format!(
            " ({} of {} bytes are stored on the device; run the push again to resume)",
            p.acked, p.total
        )
    } else {
        String::new()
    }
}

/// A failed push engine as a [`HostError`], with the device's own words where it has them.
pub fn push_error(e: PushError, push: &Push<'_>, pkg_from: &str, link: &str) -> HostError {
    let resume = resume_hint(push);
    match e {
        PushError::BadPackage => HostError::BadPackage,
        PushError::Version { device } => HostError::Version {
            device,
            host: PROTO_VERSION,
        },
        PushError::ManifestTooLarge { need, max } => HostError::Device(format!(
            "the package's header and manifest ({need} bytes) exceed what the device takes ({max} bytes)"
        )),
        PushError::Refused { reason, component } => {
            let mut message = reason.text().to_string();
            if push.component_count() > 1 {
                if let Some(name) = push.component_name(component) {
                    message = format!("component {name}: {message}");
                }
            }
            let d = push.device();
            match (reason, d) {
                (RefuseReason::WrongBase | RefuseReason::NotInstalled, Some(d)) => {
                    message = format!(
                        "{message}: the device runs {} {}, the package expects {}",
                        d.component.as_str(),
                        if d.version.as_str().is_empty() {
                            "(unknown version)"
                        } else {
                            d.version.as_str()
                        },
                        if pkg_from.is_empty() {
                            "another version"
                        } else {
                            pkg_from
                        }
                    );
                }
                (RefuseReason::WrongProduct | RefuseReason::WrongHardware, Some(d)) => {
                    message = format!(
                        "{message} (the device is {} {})",
                        d.product.as_str(),
                        d.hardware.as_str()
                    );
                }
                _ => {}
            }
            HostError::Refused { reason, message }
        }
        PushError::Busy { phase } => HostError::Busy {
            phase,
            hint: if phase == Phase::Testing {
                "a new image runs on trial: confirm it or let it revert (reboot) first"
            } else {
                "wait until it finishes, then try again"
            },
        },
        PushError::Device {
            status: status @ (Status::ModuleUnreachable | Status::RolledBack),
            detail,
            value,
        } => {
            let name = u8::try_from(value)
                .ok()
                .and_then(|i| push.component_name(i))
                .unwrap_or("?");
            HostError::Device(match (status, detail) {
                (Status::ModuleUnreachable, _) => format!(
                    "the machine's module for component {name} does not answer its main MCU: check its power and its link to the main MCU; nothing was installed{resume}"
                ),
                (_, 1) => "the machine's self-test failed after the update; every component went back to its old image".to_string(),
                _ => format!(
                    "component {name} failed during the install; every component of the machine went back to its old image"
                ),
            })
        }
        PushError::Device { status, detail, .. } => {
            HostError::Device(format!("{} (detail {detail}){resume}", status.text()))
        }
        PushError::Timeout { stage } => HostError::Timeout {
            what: format!("no answer from the device on {link} while in stage {stage:?}"),
            resume,
        },
        PushError::Unexpected { stage } => {
            HostError::Device(format!("unexpected answer in stage {stage:?}"))
        }
    }
}

/// Push `pkg` to the device at `address`: progress as events, cancellation with `cancel`.
/// On a lost link it opens the device again through `connector` (for up to
/// `reconnect_for`) and resumes where the device says.
pub fn push<K: Connector, C: Clock>(
    pkg: &[u8],
    opts: &PushOptions,
    connector: &K,
    address: &Address,
    clock: &C,
    events: &mut dyn FnMut(Event),
    cancel: &AtomicBool,
) -> Result<Outcome, HostError> {
    let from = bluesphere_core::package::Package::parse(pkg)
        .ok()
        .and_then(|p| p.manifest.components().next().and_then(Result::ok))
        .map(|c| c.from_version.to_string())
        .unwrap_or_default();
    let mut engine = Push::new(pkg, opts.config).map_err(|_| HostError::BadPackage)?;
    let mut link = connector.open(address)?;
    let mut session = Session::for_chunk(opts.config.chunk);
    loop {
        match session.run_until(&mut engine, &mut link, clock, u64::MAX, events, cancel) {
            Ok(_) if cancel.load(Ordering::Relaxed) => return Err(HostError::Cancelled),
            Ok(_) => {
                return match engine.outcome() {
                    Some(r) => r.map_err(|e| push_error(e, &engine, &from, &link.name())),
                    None => Err(HostError::Device(
                        "the push stopped without a result".into(),
                    )),
                }
            }
            Err(LinkError::Closed(_)) => {
                drop(link);
                link = reconnect(opts, connector, address, clock, events, cancel, &engine)?;
                engine.reconnected(clock.now());
                events(Event::Reconnected);
            }
        }
    }
}

fn reconnect<K: Connector, C: Clock>(
    opts: &PushOptions,
    connector: &K,
    address: &Address,
    clock: &C,
    events: &mut dyn FnMut(Event),
    cancel: &AtomicBool,
    engine: &Push<'_>,
) -> Result<K::Link, HostError> {
    let until = clock
        .now()
        .saturating_add(u64::try_from(opts.reconnect_for.as_micros()).unwrap_or(u64::MAX));
    let mut attempt = 0;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(HostError::Cancelled);
        }
        attempt += 1;
        events(Event::Reconnecting { attempt });
        clock.sleep(RECONNECT_PAUSE);
        let last = match connector.open(address) {
            Ok(l) => return Ok(l),
            Err(e) => e,
        };
        if clock.now() >= until {
            return Err(HostError::Timeout {
                what: format!(
                    "the link to {address} stayed down for {} s (last attempt: {last})",
                    opts.reconnect_for.as_secs()
                ),
                resume: resume_hint(engine),
            });
        }
    }
}

/// One request and its answer (retransmitted up to 5 times), for INFO, confirm, revert,
/// reboot and the activation commands. `accept` picks the answer it waits for; an error
/// answer is returned as [`HostError::Status`].
pub fn transact<T, L: Link + ?Sized, C: Clock + ?Sized>(
    link: &mut L,
    clock: &C,
    seq: u8,
    req: &Request<'_>,
    timeout: Duration,
    mut accept: impl FnMut(Response<'_>) -> Option<T>,
) -> Result<T, HostError> {
    let mut tx = vec![0u8; encoded_max(1100)];
    let n = req.encode(seq, &mut tx).ok_or(HostError::BadPackage)?;
    let mut dec: FrameDecoder<2600> = FrameDecoder::new();
    let mut rx = [0u8; 1024];
    let link_err = |link: &L, e: LinkError| link.failure(e.to_string());
    let wait = u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX);
    for _ in 0..5 {
        link.send(&tx[..n]).map_err(|e| link_err(link, e))?;
        let until = clock.now().saturating_add(wait);
        while clock.now() < until {
            let left = Duration::from_micros(until.saturating_sub(clock.now()));
            let got = link.recv(&mut rx, left).map_err(|e| link_err(link, e))?;
            let mut input = &rx[..got];
            while !input.is_empty() {
                let (used, frame) = dec.feed(input);
                input = &input[used..];
                if let Some(Ok(f)) = frame {
                    if let Ok((s, r)) = Response::parse(f) {
                        if s == seq {
                            if let Response::Error { status, detail, .. } = r {
                                return Err(HostError::Status { status, detail });
                            }
                            if let Some(v) = accept(r) {
                                return Ok(v);
                            }
                        }
                    }
                }
            }
        }
    }
    Err(HostError::Timeout {
        what: format!("no answer from a BlueSphere device on {}", link.name()),
        resume: String::new(),
    })
}

/// One installed image, as INFO reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotImage {
    /// Slot.
    pub slot: u8,
    /// Component name.
    pub component: String,
    /// Version.
    pub version: String,
    /// Size in bytes.
    pub size: u32,
    /// Security counter.
    pub security_counter: u32,
    /// SHA-256 from the trailer.
    pub sha256: [u8; 32],
}

/// What INFO says, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSummary {
    /// Product.
    pub product: String,
    /// Hardware.
    pub hardware: String,
    /// Chip UID.
    pub uid: Vec<u8>,
    /// `swap` or `ab`.
    pub mode: &'static str,
    /// Update phase.
    pub phase: Phase,
    /// Progress.
    pub done: u32,
    /// Progress total.
    pub total: u32,
    /// Boot slot.
    pub boot_slot: u8,
    /// The running and the other image.
    pub images: Vec<SlotImage>,
    /// A whole machine's state (`None`: a single device).
    pub machine: Option<MachineSummary>,
}

/// What MACHINE says, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSummary {
    /// Machine phase (`docs/WHOLE-MACHINE.md`).
    pub phase: &'static str,
    /// The component the phase is at.
    pub component: u8,
    /// Payload bytes taken.
    pub done: u32,
    /// Payload bytes of the package.
    pub total: u32,
    /// Every member, in install order.
    pub members: Vec<MemberSummary>,
}

/// One member of a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    /// Component name.
    pub name: String,
    /// Its update phase (`None`: it does not answer the main MCU).
    pub phase: Option<Phase>,
    /// Running version (empty: no image).
    pub version: String,
    /// Running image SHA-256.
    pub sha256: [u8; 32],
}

/// Ask the device on `link` who it is and what it runs.
pub fn info<L: Link + ?Sized, C: Clock + ?Sized>(
    link: &mut L,
    clock: &C,
) -> Result<DeviceSummary, HostError> {
    let t = Duration::from_millis(500);
    transact(
        link,
        clock,
        1,
        &Request::Hello {
            version: PROTO_VERSION,
            max_frame: 1024,
        },
        t,
        |r| matches!(r, Response::Hello { .. }).then_some(()),
    )?;
    let mut summary = transact(link, clock, 2, &Request::Info, t, |r| match r {
        Response::Info(i) => Some(DeviceSummary {
            product: i.product.into(),
            hardware: i.hardware.into(),
            uid: i.uid.to_vec(),
            mode: if i.mode == 0 { "swap" } else { "ab" },
            phase: i.phase,
            done: i.done,
            total: i.total,
            boot_slot: i.boot_slot,
            images: [i.running, i.other]
                .iter()
                .flatten()
                .map(|e| SlotImage {
                    slot: e.slot,
                    component: e.name.to_string(),
                    version: e.version.to_string(),
                    size: e.size,
                    security_counter: e.security_counter,
                    sha256: e.sha256,
                })
                .collect(),
            machine: None,
        }),
        _ => None,
    })?;
    // A machine's main MCU also reports every component; a single device does not know
    // the request.
    summary.machine = match transact(link, clock, 3, &Request::Machine, t, |r| match r {
        Response::Machine(m) => Some(MachineSummary {
            phase: MACHINE_PHASES
                .get(usize::from(m.phase))
                .copied()
                .unwrap_or("?"),
            component: m.component,
            done: m.done,
            total: m.total,
            members: m
                .members()
                .flatten()
                .map(|e| MemberSummary {
                    name: e.name.into(),
                    phase: e.phase,
                    version: e.version.into(),
                    sha256: e.sha256,
                })
                .collect(),
        }),
        _ => None,
    }) {
        Ok(m) => Some(m),
        Err(HostError::Status {
            status: Status::UnknownCommand,
            ..
        }) => None,
        Err(e) => return Err(e),
    };
    Ok(summary)
}
