//! `codes gen | verify | order | audit` and `station`: thin commands over
//! `bluesphere_host::{codes, registry, station}`.

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use bluesphere_core::activation::{self, Terms};
use bluesphere_core::package::key_id;
use bluesphere_host::codes::{generate, parse_uids, verify_csv, LineError};
use bluesphere_host::registry::{self, IssueMeta, Registry, RegistryError};
use bluesphere_host::station::{self, StationConfig, StationRecord};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::output::{Failure, Out};
use crate::{load_private, load_publics, read, write_atomic, PassArgs};

#[derive(Args, Debug)]
pub struct Who {
    /// Registry file (default: $BLUESPHERE_REGISTRY, else ~/.local/share/bluesphere/registry.sqlite).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Station name for the audit log (default: the host name).
    #[arg(long)]
    station: Option<String>,
    /// Operator name for the audit log (default: $USER).
    #[arg(long)]
    operator: Option<String>,
    /// Production order to count the codes against (see `codes order`).
    #[arg(long)]
    order: Option<String>,
}

#[derive(Args, Debug)]
pub struct TermArgs {
    /// Feature bits carried by the code (decimal or 0x hex).
    #[arg(long, default_value = "0", value_parser = parse_u32)]
    features: u32,
    /// Expiry date (YYYY-MM-DD); none by default.
    #[arg(long)]
    expires: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum CodesCmd {
    /// Issue one code per chip UID (parallel over all cores), record them in the registry.
    Gen {
        /// Signing key (PEM).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        pass: PassArgs,
        /// Product id.
        #[arg(long)]
        product: String,
        /// UIDs: a file (hex, one per line, or a CSV with a `uid` column) or `-` for stdin.
        #[arg(long)]
        uids: String,
        /// Output CSV (uid,code).
        #[arg(short, long)]
        out: PathBuf,
        /// Also write one 80-byte binary record per chip (<uid>.bin) into this directory.
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Drop repeated UIDs instead of failing.
        #[arg(long)]
        allow_duplicates: bool,
        /// Issue again to UIDs that already have a code (recorded as a re-issue).
        #[arg(long)]
        reissue: bool,
        #[command(flatten)]
        terms: TermArgs,
        #[command(flatten)]
        who: Who,
    },
    /// Check a uid,code CSV against public key(s).
    Verify {
        /// Public key(s) (PEM).
        #[arg(long = "pub", required = true)]
        public: Vec<PathBuf>,
        /// Product id.
        #[arg(long)]
        product: String,
        /// The CSV.
        codes: PathBuf,
    },
    /// Create a production order: the key may issue at most N codes under it.
    Order {
        /// Order id.
        #[arg(long)]
        order: String,
        /// Public or private key the order is for (PEM).
        #[arg(long)]
        key: PathBuf,
        /// Product id.
        #[arg(long)]
        product: String,
        /// Most codes.
        #[arg(long)]
        limit: u64,
        /// Registry file.
        #[arg(long)]
        registry: Option<PathBuf>,
    },
    /// Export the audit log (every issued code) as CSV.
    Audit {
        /// Output CSV.
        #[arg(short, long)]
        out: PathBuf,
        /// Registry file.
        #[arg(long)]
        registry: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct StationArgs {
    /// Serial port(s), one device each (repeat for a gang).
    #[arg(long = "port", required = true)]
    ports: Vec<String>,
    /// Baud rate.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// Signing key (PEM).
    #[arg(long)]
    key: PathBuf,
    #[command(flatten)]
    pass: PassArgs,
    /// Product id.
    #[arg(long)]
    product: String,
    #[command(flatten)]
    terms: TermArgs,
    #[command(flatten)]
    who: Who,
    /// One device per port, then stop (waits up to --wait seconds for it).
    #[arg(long)]
    once: bool,
    /// With --once: seconds to wait for a device.
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Append pass/fail records to this CSV log (opened before any device is touched: a
    /// station that cannot write its log does not start).
    #[arg(long)]
    log: Option<PathBuf>,
}

fn parse_u32(s: &str) -> Result<u32, String> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("not a number: {e}"))
}

fn terms(t: &TermArgs) -> Result<Terms, Failure> {
    let expiry_days = match &t.expires {
        None => 0,
        Some(d) => {
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            let date = time::Date::parse(d, &fmt)
                .map_err(|e| Failure::usage(anyhow!("--expires {d:?}: {e} (use YYYY-MM-DD)")))?;
            (date
                - time::Date::from_calendar_date(1970, time::Month::January, 1)
                    .map_err(Failure::internal)?)
            .whole_days() as u32
        }
    };
    Ok(Terms {
        features: t.features,
        expiry_days,
    })
}

fn reg_fail(e: RegistryError) -> Failure {
    let code = match e.kind() {
        "registry" => 1,
        _ => 5,
    };
    Failure::new(e.kind(), code, e.into())
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

fn line_errors(what: &str, errors: &[LineError]) -> anyhow::Error {
    let mut m = format!("{} bad line(s) in {what}:", errors.len());
    for e in errors.iter().take(20) {
        m.push_str(&format!("\n  line {}: {}", e.line, e.message));
    }
    if errors.len() > 20 {
        m.push_str(&format!("\n  ... and {} more", errors.len() - 20));
    }
    anyhow!(m)
}

pub fn run(cmd: &CodesCmd, out: &Out) -> Result<Value, Failure> {
    match cmd {
        CodesCmd::Gen {
            key,
            pass,
            product,
            uids,
            out: dest,
            bin_dir,
            allow_duplicates,
            reissue,
            terms: t,
            who,
        } => {
            let sk = load_private(key, pass)?;
            let kid = hex::encode(key_id(sk.verifying_key()));
            let terms = terms(t)?;
            let text = if uids == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| Failure::new("io", 1, e.into()))?;
                s
            } else {
                String::from_utf8(read(std::path::Path::new(uids))?)
                    .map_err(|_| Failure::new("invalid-input", 3, anyhow!("{uids} is not text")))?
            };
            let parsed = parse_uids(&text, *allow_duplicates)
                .map_err(|e| Failure::new("invalid-input", 3, line_errors(uids, &e)))?;
            if parsed.is_empty() {
                return Err(Failure::new("invalid-input", 3, anyhow!("{uids}: no UIDs")));
            }
            let list: Vec<Vec<u8>> = parsed.into_iter().map(|(_, u)| u).collect();
            let t0 = Instant::now();
            let bar = out.bar("sign", list.len() as u64);
            let codes = generate(&sk, product, terms, &list, &|n| {
                bar.bytes(n as u64, list.len() as u64)
            })
            .map_err(|e| Failure::new("invalid-input", 3, e.into()))?;
            bar.done();
            let sign_s = t0.elapsed().as_secs_f64();
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
            // Record first (all or nothing), then write the files.
            let path = who.registry.clone().unwrap_or_else(registry::default_path);
            let mut reg = Registry::open(&path).map_err(reg_fail)?;
            reg.issue(&rows, &meta(who, product, &kid, *reissue))
                .map_err(reg_fail)?;
            write_atomic(dest, csv.as_bytes())?;
            if let Some(dir) = bin_dir {
                std::fs::create_dir_all(dir).map_err(|e| Failure::new("io", 1, e.into()))?;
                for ((h, _), c) in rows.iter().zip(&codes) {
                    write_atomic(&dir.join(format!("{h}.bin")), &c.to_bytes())?;
                }
            }
            let total_s = t0.elapsed().as_secs_f64();
            out.text(&format!(
                "issued {} codes for {product} in {total_s:.2} s ({:.0} codes/s signing on {} cores); {} recorded in {}",
                codes.len(),
                codes.len() as f64 / sign_s.max(1e-9),
                std::thread::available_parallelism().map_or(1, |n| n.get()),
                dest.display(),
                path.display()
            ));
            Ok(
                json!({"ok": true, "issued": codes.len(), "out": dest, "registry": path,
                      "key_id": kid, "sign_seconds": sign_s, "seconds": total_s,
                      "codes_per_second": codes.len() as f64 / sign_s.max(1e-9)}),
            )
        }
        CodesCmd::Verify {
            public,
            product,
            codes,
        } => {
            let keys = load_publics(public)?;
            let text = String::from_utf8(read(codes)?)
                .map_err(|_| Failure::new("invalid-input", 3, anyhow!("not text")))?;
            match verify_csv(&text, product, &keys) {
                Ok(n) => {
                    out.text(&format!("all {n} codes are valid for {product}"));
                    Ok(json!({"ok": true, "valid": n, "invalid": 0}))
                }
                Err((n, errors)) => Err(Failure::new(
                    "invalid-code",
                    4,
                    line_errors(&format!("{} ({n} rows)", codes.display()), &errors),
                )),
            }
        }
        CodesCmd::Order {
            order,
            key,
            product,
            limit,
            registry: r,
        } => {
            let pem = String::from_utf8(read(key)?)
                .map_err(|_| Failure::new("key", 6, anyhow!("not PEM")))?;
            let vk = bluesphere_core::keys::load_public(&pem, None)
                .map_err(|e| Failure::key(e).context(key))?;
            let kid = hex::encode(key_id(&vk));
            let path = r.clone().unwrap_or_else(registry::default_path);
            Registry::open(&path)
                .and_then(|mut reg| reg.create_order(order, &kid, product, *limit))
                .map_err(reg_fail)?;
            out.text(&format!(
                "order {order}: key {kid} may issue {limit} codes for {product}"
            ));
            Ok(json!({"ok": true, "order": order, "key_id": kid, "limit": limit}))
        }
        CodesCmd::Audit {
            out: dest,
            registry: r,
        } => {
            let path = r.clone().unwrap_or_else(registry::default_path);
            let reg = Registry::open(&path).map_err(reg_fail)?;
            let mut buf = Vec::new();
            let n = reg.export_csv(&mut buf).map_err(reg_fail)?;
            write_atomic(dest, &buf)?;
            out.text(&format!("{n} issued codes written to {}", dest.display()));
            Ok(json!({"ok": true, "rows": n, "out": dest}))
        }
    }
}

pub fn station(a: &StationArgs, out: &Out) -> Result<Value, Failure> {
    let sk = load_private(&a.key, &a.pass)?;
    let kid = hex::encode(key_id(sk.verifying_key()));
    let cfg = StationConfig {
        ports: a.ports.clone(),
        baud: a.baud,
        product: a.product.clone(),
        terms: terms(&a.terms)?,
        registry: a
            .who
            .registry
            .clone()
            .unwrap_or_else(registry::default_path),
        meta: meta(&a.who, &a.product, &kid, false),
        once: a.once,
        wait_for: Duration::from_secs(a.wait),
    };
    // The audit log is opened before any device is touched: a station that cannot log does
    // not start. Each line is one append write (ports log from their own threads).
    let log_file = match &a.log {
        Some(path) => {
            let fh = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    Failure::new(
                        "io",
                        1,
                        anyhow::anyhow!("cannot open the station log {}: {e}", path.display()),
                    )
                })?;
            Some((path.clone(), std::sync::Mutex::new(fh)))
        }
        None => None,
    };
    let json_mode = out.is_json();
    let log = move |r: &StationRecord| {
        let line = format!(
            "{},{},{},{},{},{}\n",
            time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            r.port,
            r.uid,
            if r.pass { "pass" } else { "FAIL" },
            r.detail.replace(',', ";"),
            r.code
        );
        if !json_mode {
            print!("{line}");
        }
        if let Some((path, fh)) = &log_file {
            use std::io::Write;
            let written = match fh.lock() {
                Ok(mut fh) => fh.write_all(line.as_bytes()).and_then(|()| fh.flush()),
                Err(_) => Err(std::io::Error::other("log writer failed")),
            };
            if let Err(e) = written {
                eprintln!(
                    "warning: station log {}: {e}; this record is only on the screen: {}",
                    path.display(),
                    line.trim_end()
                );
            }
        }
    };
    let stop = AtomicBool::new(false);
    let records = station::run(&cfg, &sk, &log, &stop);
    let failed = records.iter().filter(|r| !r.pass).count();
    let v = json!({"ok": failed == 0, "devices": records.iter().map(|r| json!({
        "port": r.port, "uid": r.uid, "pass": r.pass, "detail": r.detail, "code": r.code,
    })).collect::<Vec<_>>()});
    if failed > 0 {
        let why: Vec<String> = records
            .iter()
            .filter(|r| !r.pass)
            .map(|r| format!("{} {}: {}", r.port, r.uid, r.detail))
            .collect();
        return Err(Failure::new(
            "station-failures",
            7,
            anyhow!(
                "{failed} of {} device(s) failed: {}",
                records.len(),
                why.join("; ")
            ),
        ));
    }
    Ok(v)
}
