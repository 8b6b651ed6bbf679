//! Activation-code jobs: generate, verify, production orders, audit log, station.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bluesphere_core::activation::{self, Terms};
use bluesphere_core::package::key_id;
use bluesphere_host::codes::{date_of_days, generate, parse_uids, verify_csv, LineError};
use bluesphere_host::registry::{self, IssueMeta, Registry};
use bluesphere_host::serial::SerialConnector;
use bluesphere_host::station::{self, StationConfig};
use bluesphere_host::Address;
use serde::{Deserialize, Serialize};

use crate::files::{self, MAX_TEXT};
use crate::package::{load_private, load_publics};
use crate::progress::{Cancel, Event, Progress};
use crate::secrets::Secrets;
use crate::{Error, ErrorKind};

/// Feature bits and expiry of a code.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct TermsRequest {
    /// Feature bits.
    pub features: u32,
    /// Expiry date `YYYY-MM-DD` (the first day the code is no longer valid), or none.
    pub expires: Option<String>,
    /// Accept an expiry date that is today or past (codes that are expired when issued).
    #[serde(default)]
    pub allow_past: bool,
}

/// Who issues, for the audit log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Who {
    /// Registry file (default: [`registry::default_path`]).
    pub registry: Option<PathBuf>,
    /// Station name (default: the host name).
    pub station: Option<String>,
    /// Operator name (default: `$USER`).
    pub operator: Option<String>,
    /// Production order.
    pub order: Option<String>,
    /// Create `registry` if it does not exist (a named registry must exist otherwise, so that a
    /// mistyped path cannot start an empty one and issue a second code for a UID).
    #[serde(default)]
    pub create_registry: bool,
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (after 1970-01-01).
pub fn date_days(d: &str, what: &str) -> Result<u32, Error> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(d, &fmt)
        .map_err(|e| Error::usage(format!("{what} {d:?}: {e}")).hint("use YYYY-MM-DD"))?;
    let days = (date - time::OffsetDateTime::UNIX_EPOCH.date()).whole_days();
    u32::try_from(days)
        .ok()
        .filter(|d| *d > 0)
        .ok_or_else(|| Error::usage(format!("{what} {d}: must be after 1970-01-01")))
}

/// Today (UTC) in days since 1970-01-01.
pub fn today_days() -> u32 {
    let now = time::OffsetDateTime::now_utc().date();
    u32::try_from((now - time::OffsetDateTime::UNIX_EPOCH.date()).whole_days()).unwrap_or(0)
}

/// The registry a request names: the default one is created on first use, a named one must
/// exist unless `create`.
fn registry_at(named: Option<&Path>, create: bool) -> Result<PathBuf, Error> {
    match named {
        None => Ok(registry::default_path()),
        Some(p) if create || p.exists() => Ok(p.to_path_buf()),
        Some(p) => Err(Error::new(
            ErrorKind::Registry,
            format!(
                "no activation registry at {}; nothing was issued (a new registry would not know the codes issued before)",
                p.display()
            ),
        )
        .hint("check the registry path, or create a new registry on purpose")),
    }
}

fn terms(t: &TermsRequest) -> Result<Terms, Error> {
    let expiry_days = match &t.expires {
        None => 0,
        Some(d) => {
            let days = date_days(d, "expiry date")?;
            if days <= today_days() && !t.allow_past {
                return Err(Error::usage(format!(
                    "expiry date {d} is not in the future: the codes would be expired when issued; nothing was issued"
                ))
                .hint("give a later date, or allow a past expiry date on purpose"));
            }
            days
        }
    };
    Ok(Terms {
        features: t.features,
        expiry_days,
    })
}

fn meta(who: &Who, product: &str, kid: &str, reissue: bool) -> IssueMeta {
    IssueMeta {
        product: product.into(),
        key_id: kid.into(),
        station: who.station.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "station".into())
        }),
        operator: who
            .operator
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_default(),
        order: who.order.clone(),
        reissue,
    }
}

fn registry_path(who: &Who) -> Result<PathBuf, Error> {
    registry_at(who.registry.as_deref(), who.create_registry)
}

fn line_errors(what: &str, errors: &[LineError]) -> String {
    let mut m = format!("{} bad line(s) in {what}:", errors.len());
    for e in errors.iter().take(20) {
        m.push_str(&format!("\n  line {}: {}", e.line, e.message));
    }
    if errors.len() > 20 {
        m.push_str(&format!("\n  ... and {} more", errors.len() - 20));
    }
    m
}

/// Where the UIDs come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "from", content = "value", rename_all = "kebab-case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub enum UidSource {
    /// A file (hex, one per line, or a CSV with a `uid` column).
    File(PathBuf),
    /// The text itself (standard input, a paste).
    Text(String),
}

/// `codes gen`: one code per chip UID, recorded in the registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct CodesGenRequest {
    /// Signing key.
    pub key: PathBuf,
    /// Product id.
    pub product: String,
    /// UIDs.
    pub uids: UidSource,
    /// Output CSV (uid,code).
    pub out: PathBuf,
    /// Also one 80-byte binary record per chip (`<uid>.bin`) in this folder.
    pub bin_dir: Option<PathBuf>,
    /// Drop repeated UIDs instead of failing.
    pub allow_duplicates: bool,
    /// Issue again to UIDs that already have a code.
    pub reissue: bool,
    /// Terms.
    pub terms: TermsRequest,
    /// Audit fields.
    pub who: Who,
}

/// What `codes gen` issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct CodesGenReport {
    /// Always true.
    pub ok: bool,
    /// Codes issued.
    pub issued: usize,
    /// Output CSV.
    pub out: PathBuf,
    /// Registry file.
    pub registry: PathBuf,
    /// Signing key id.
    pub key_id: String,
    /// Seconds signing.
    pub sign_seconds: f64,
    /// Seconds in all.
    pub seconds: f64,
    /// Signing rate.
    pub codes_per_second: f64,
    /// Cores used.
    pub cores: usize,
}

/// Issue codes: sign them all, record them in the registry, write the outputs.
pub fn codes_gen(
    req: &CodesGenRequest,
    secrets: &dyn Secrets,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<CodesGenReport, Error> {
    let path = registry_path(&req.who)?;
    let mut inputs: Vec<&Path> = vec![&req.key, &path];
    if let UidSource::File(f) = &req.uids {
        inputs.push(f);
    }
    files::check_output(&req.out, &inputs)?;
    let sk = load_private(&req.key, secrets)?;
    let kid = hex::encode(key_id(sk.verifying_key()));
    let terms = terms(&req.terms)?;
    let (text, what) = match &req.uids {
        UidSource::File(f) => (
            files::read_text(f, "UID list", MAX_TEXT)?,
            f.display().to_string(),
        ),
        UidSource::Text(t) => (t.clone(), "the UID list".to_string()),
    };
    let parsed = parse_uids(&text, req.allow_duplicates)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, line_errors(&what, &e)))?;
    if parsed.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{what}: no UIDs"),
        ));
    }
    let list: Vec<Vec<u8>> = parsed.into_iter().map(|(_, u)| u).collect();
    let total = list.len() as u64;
    let t0 = Instant::now();
    progress.event(Event::Stage {
        name: "sign".into(),
        component: 0,
        of: 1,
    });
    let codes = generate(&sk, &req.product, terms, &list, &|n| {
        progress.event(Event::Items {
            done: n as u64,
            total,
        })
    })
    .map_err(|e| Error::new(ErrorKind::InvalidInput, crate::error::chain(&e)))?;
    let sign_s = t0.elapsed().as_secs_f64();
    cancel.check()?;
    let mut csv = String::with_capacity(list.len() * 130);
    csv.push_str("uid,code\n");
    let mut rows = Vec::with_capacity(list.len());
    for (u, c) in list.iter().zip(&codes) {
        let (h, t) = (hex::encode(u), activation::text(c));
        csv.push_str(&h);
        csv.push(',');
        csv.push_str(&t);
        csv.push('\n');
        rows.push((h, t));
    }
    // Prepare every output in full, then record the codes (all or nothing), then make the
    // outputs visible: a failure before the record leaves the registry as it was, and the
    // renames after it cannot fail for want of space or permission.
    let mut staged = vec![files::stage(&req.out, csv.as_bytes(), 0o644)?];
    if let Some(dir) = &req.bin_dir {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::new(
                ErrorKind::OutputConflict,
                format!("{} is not a folder; nothing was issued", dir.display()),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("{}: {e}; nothing was issued", dir.display()),
            )
        })?;
        for ((h, _), c) in rows.iter().zip(&codes) {
            let dest = dir.join(format!("{h}.bin"));
            files::check_output(&dest, &inputs)?;
            staged.push(files::stage(&dest, &c.to_bytes(), 0o644)?);
        }
    }
    cancel.check()?;
    let mut reg = Registry::open(&path)?;
    reg.issue(&rows, &meta(&req.who, &req.product, &kid, req.reissue))?;
    for s in staged {
        s.commit()?;
    }
    let total_s = t0.elapsed().as_secs_f64();
    crate::history::record_or_warn(
        &crate::history::HistoryEntry {
            time: crate::history::now(),
            job: "codes".into(),
            target: path.display().to_string(),
            subject: req.product.clone(),
            result: "ok".into(),
            detail: format!("{} codes written to {}", codes.len(), req.out.display()),
            seconds: total_s,
            count: codes.len() as u64,
            ..Default::default()
        },
        progress,
    );
    Ok(CodesGenReport {
        ok: true,
        issued: codes.len(),
        out: req.out.clone(),
        registry: path,
        key_id: kid,
        sign_seconds: sign_s,
        seconds: total_s,
        codes_per_second: codes.len() as f64 / sign_s.max(1e-9),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// `codes verify`: check a uid,code CSV.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CodesVerifyRequest {
    /// Public keys.
    pub public: Vec<PathBuf>,
    /// Product id.
    pub product: String,
    /// The CSV.
    pub codes: PathBuf,
    /// Check expiry against this date `YYYY-MM-DD` (default: today, UTC).
    #[serde(default)]
    pub at: Option<String>,
}

/// What `codes verify` found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodesVerifyReport {
    /// Always true (an invalid code is an error).
    pub ok: bool,
    /// Valid codes.
    pub valid: usize,
    /// Invalid codes.
    pub invalid: usize,
    /// Genuine codes that are expired on the date checked against.
    pub expired: usize,
    /// The date checked against.
    pub at: String,
}

/// Check every code of a CSV.
pub fn codes_verify(req: &CodesVerifyRequest) -> Result<CodesVerifyReport, Error> {
    let keys = load_publics(&req.public)?;
    let text = files::read_text(&req.codes, "code list", MAX_TEXT)?;
    let at = match &req.at {
        Some(d) => date_days(d, "date")?,
        None => today_days(),
    };
    match verify_csv(&text, &req.product, &keys, at) {
        Ok(n) => Ok(CodesVerifyReport {
            ok: true,
            valid: n,
            invalid: 0,
            expired: 0,
            at: date_of_days(at),
        }),
        Err((n, errors)) => {
            let expired = errors.iter().filter(|e| e.expired).count();
            let kind = if expired == errors.len() {
                ErrorKind::Expired
            } else {
                ErrorKind::InvalidCode
            };
            let what = format!(
                "{} ({n} rows, checked on {})",
                req.codes.display(),
                date_of_days(at)
            );
            Err(Error::new(kind, line_errors(&what, &errors)))
        }
    }
}

/// `codes order`: a production order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrderRequest {
    /// Order id.
    pub order: String,
    /// Public or private key the order is for.
    pub key: PathBuf,
    /// Product id.
    pub product: String,
    /// Most codes.
    pub limit: u64,
    /// Registry file.
    pub registry: Option<PathBuf>,
    /// Create `registry` if it does not exist.
    #[serde(default)]
    pub create_registry: bool,
}

/// The order made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderReport {
    /// Always true.
    pub ok: bool,
    /// Order id.
    pub order: String,
    /// Key id.
    pub key_id: String,
    /// Most codes.
    pub limit: u64,
}

/// Create a production order.
pub fn codes_order(req: &OrderRequest) -> Result<OrderReport, Error> {
    let vk = load_publics(std::slice::from_ref(&req.key))?
        .into_iter()
        .next()
        .ok_or_else(|| Error::internal("no key loaded"))?;
    let kid = hex::encode(key_id(&vk));
    let path = registry_at(req.registry.as_deref(), req.create_registry)?;
    Registry::open(&path)
        .and_then(|mut reg| reg.create_order(&req.order, &kid, &req.product, req.limit))?;
    Ok(OrderReport {
        ok: true,
        order: req.order.clone(),
        key_id: kid,
        limit: req.limit,
    })
}

/// `codes audit`: every issued code as CSV.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct AuditRequest {
    /// Output CSV.
    pub out: PathBuf,
    /// Registry file.
    pub registry: Option<PathBuf>,
}

/// The export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct AuditReport {
    /// Always true.
    pub ok: bool,
    /// Rows.
    pub rows: u64,
    /// Output file.
    pub out: PathBuf,
}

/// The registry at `path` (the default one if `None`), which must exist.
fn existing_registry(path: Option<&Path>) -> Result<PathBuf, Error> {
    let path = path.map_or_else(registry::default_path, Path::to_path_buf);
    if !path.exists() {
        return Err(Error::new(
            ErrorKind::Registry,
            format!("no activation registry at {}", path.display()),
        )
        .hint("check the registry path (a registry is made by the first batch of codes)"));
    }
    Ok(path)
}

/// Export the audit log.
pub fn codes_audit(req: &AuditRequest) -> Result<AuditReport, Error> {
    let path = existing_registry(req.registry.as_deref())?;
    files::check_output(&req.out, &[&path])?;
    let reg = Registry::open(&path)?;
    let mut buf = Vec::new();
    let n = reg.export_csv(&mut buf)?;
    files::write_atomic(&req.out, &buf, 0o644)?;
    Ok(AuditReport {
        ok: true,
        rows: n,
        out: req.out.clone(),
    })
}

/// `codes stats`: what a registry holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct FiguresRequest {
    /// Registry file (default: [`registry::default_path`]).
    pub registry: Option<PathBuf>,
}

/// A registry's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct FiguresReport {
    /// Registry file.
    pub registry: PathBuf,
    /// Codes issued, reissued, refused duplicates, per order and per product.
    pub figures: registry::Figures,
}

/// Read a registry's figures.
pub fn codes_figures(req: &FiguresRequest) -> Result<FiguresReport, Error> {
    let path = existing_registry(req.registry.as_deref())?;
    let figures = Registry::open(&path)?.figures()?;
    Ok(FiguresReport {
        registry: path,
        figures,
    })
}

/// `station`: activate every device that appears.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct StationRequest {
    /// Devices, one per port.
    pub ports: Vec<Address>,
    /// Baud rate.
    pub baud: u32,
    /// Signing key.
    pub key: PathBuf,
    /// Product id.
    pub product: String,
    /// Terms.
    pub terms: TermsRequest,
    /// Audit fields.
    pub who: Who,
    /// One device per port, then stop.
    pub once: bool,
    /// With `once`: how long to wait for a device.
    pub wait_seconds: u64,
    /// Append one CSV line per device to this log (opened before any device is touched: a
    /// station that cannot log does not start).
    pub log: Option<PathBuf>,
}

/// One line of the station log: `time,port,uid,pass|FAIL,detail,code`.
pub fn station_log_line(r: &station::StationRecord) -> String {
    format!(
        "{},{},{},{},{},{}\n",
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        r.port,
        r.uid,
        if r.pass { "pass" } else { "FAIL" },
        r.detail.replace(',', ";"),
        r.code
    )
}

/// One device's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct StationDevice {
    /// Port.
    pub port: String,
    /// Chip UID.
    pub uid: String,
    /// Passed.
    pub pass: bool,
    /// What happened.
    pub detail: String,
    /// The code.
    pub code: String,
}

/// Every device the station handled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct StationReport {
    /// No device failed.
    pub ok: bool,
    /// Devices.
    pub devices: Vec<StationDevice>,
}

/// Run the station until cancelled (or one device per port with `once`). Every device is
/// reported as an [`Event::Device`] when it is done; failures make the job an error of kind
/// [`ErrorKind::StationFailures`] after all ports stopped.
pub fn station(
    req: &StationRequest,
    secrets: &dyn Secrets,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<StationReport, Error> {
    let sk = load_private(&req.key, secrets)?;
    let kid = hex::encode(key_id(sk.verifying_key()));
    let cfg = StationConfig {
        ports: req.ports.clone(),
        product: req.product.clone(),
        terms: terms(&req.terms)?,
        registry: registry_path(&req.who)?,
        meta: meta(&req.who, &req.product, &kid, false),
        once: req.once,
        wait_for: Duration::from_secs(req.wait_seconds),
    };
    let log_file = match &req.log {
        Some(path) => {
            let fh = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Io,
                        format!("cannot open the station log {}: {e}", path.display()),
                    )
                })?;
            Some((path.clone(), std::sync::Mutex::new(fh)))
        }
        None => None,
    };
    let log = |r: &station::StationRecord| {
        if let Some((path, fh)) = &log_file {
            use std::io::Write;
            let line = station_log_line(r);
            // One append write per record, under a lock: ports log from their own threads.
            let written = match fh.lock() {
                Ok(mut fh) => fh.write_all(line.as_bytes()).and_then(|()| fh.flush()),
                Err(_) => Err(std::io::Error::other("log writer failed")),
            };
            if let Err(e) = written {
                progress.event(Event::Warning {
                    message: format!(
                        "station log {}: {e}; this record is only on the screen: {}",
                        path.display(),
                        line.trim_end()
                    ),
                });
            }
        }
        progress.event(Event::Device {
            port: r.port.clone(),
            uid: r.uid.clone(),
            pass: r.pass,
            detail: r.detail.clone(),
            code: r.code.clone(),
        })
    };
    let connector = SerialConnector { baud: req.baud };
    let records = station::run(&cfg, &connector, &sk, &log, cancel.flag());
    let devices: Vec<StationDevice> = records
        .iter()
        .map(|r| StationDevice {
            port: r.port.clone(),
            uid: r.uid.clone(),
            pass: r.pass,
            detail: r.detail.clone(),
            code: r.code.clone(),
        })
        .collect();
    let failed: Vec<&StationDevice> = devices.iter().filter(|d| !d.pass).collect();
    if !failed.is_empty() {
        let why: Vec<String> = failed
            .iter()
            .map(|d| format!("{} {}: {}", d.port, d.uid, d.detail))
            .collect();
        return Err(Error::new(
            ErrorKind::StationFailures,
            format!(
                "{} of {} device(s) failed: {}",
                failed.len(),
                devices.len(),
                why.join("; ")
            ),
        ));
    }
    Ok(StationReport { ok: true, devices })
}
