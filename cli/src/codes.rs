//! `codes gen | verify | order | audit | stats` and `station`: arguments to requests of
//! `bluesphere_api::codes`, reports to text or JSON.

use std::io::Read as _;
use std::path::PathBuf;

use bluesphere_api::codes as jobs;
use bluesphere_api::{Cancel, Error, ErrorKind, Event, Progress};
use bluesphere_host::Address;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::output::Out;
use crate::{to_json, CliSecrets, PassArgs};

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
    /// Create the --registry file if it does not exist (a named registry must exist
    /// otherwise: a mistyped path must not start an empty one).
    #[arg(long)]
    new_registry: bool,
}

#[derive(Args, Debug)]
pub struct TermArgs {
    /// Feature bits carried by the code (decimal or 0x hex).
    #[arg(long, default_value = "0", value_parser = parse_u32)]
    features: u32,
    /// Expiry date (YYYY-MM-DD): the first day the code is no longer valid; none by default.
    #[arg(long)]
    expires: Option<String>,
    /// Accept an --expires date that is today or past (codes expired when issued).
    #[arg(long, requires = "expires")]
    allow_past: bool,
}

/// `codes gen`.
#[derive(Args, Debug)]
pub struct GenArgs {
    /// Signing key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    #[command(flatten)]
    pub pass: PassArgs,
    /// Product id.
    #[arg(long)]
    pub product: String,
    /// UIDs: a file (hex, one per line, or a CSV with a `uid` column) or `-` for stdin.
    #[arg(long)]
    pub uids: String,
    /// Output CSV (uid,code).
    #[arg(short, long)]
    pub out: PathBuf,
    /// Also write one 80-byte binary record per chip (<uid>.bin) into this directory.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Drop repeated UIDs instead of failing.
    #[arg(long)]
    pub allow_duplicates: bool,
    /// Issue again to UIDs that already have a code (recorded as a re-issue).
    #[arg(long)]
    pub reissue: bool,
    #[command(flatten)]
    pub terms: TermArgs,
    #[command(flatten)]
    pub who: Who,
}

#[derive(Subcommand, Debug)]
pub enum CodesCmd {
    /// Issue one code per chip UID (parallel over all cores), record them in the registry.
    Gen(Box<GenArgs>),
    /// Check a uid,code CSV against public key(s).
    Verify(VerifyArgs),
    /// Create a production order: the key may issue at most N codes under it.
    Order(OrderArgs),
    /// Export the audit log (every issued code) as CSV.
    Audit(AuditArgs),
    /// What the registry holds: codes issued and reissued, duplicates refused, per order and
    /// per product.
    Stats(StatsArgs),
}

/// `verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Public key(s) (PEM).
    #[arg(long = "pub", required = true)]
    public: Vec<PathBuf>,
    /// Product id.
    #[arg(long)]
    product: String,
    /// The CSV.
    codes: PathBuf,
    /// Check expiry against this date (YYYY-MM-DD) instead of today.
    #[arg(long, value_name = "DATE")]
    at: Option<String>,
}

/// `order`.
#[derive(clap::Args, Debug)]
pub struct OrderArgs {
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
    /// Create the --registry file if it does not exist.
    #[arg(long)]
    new_registry: bool,
}

/// `audit`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Output CSV.
    #[arg(short, long)]
    out: PathBuf,
    /// Registry file.
    #[arg(long)]
    registry: Option<PathBuf>,
}

/// `stats`.
#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Registry file.
    #[arg(long)]
    registry: Option<PathBuf>,
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

fn terms(t: &TermArgs) -> jobs::TermsRequest {
    jobs::TermsRequest {
        features: t.features,
        expires: t.expires.clone(),
        allow_past: t.allow_past,
    }
}

fn who(w: &Who) -> jobs::Who {
    jobs::Who {
        registry: w.registry.clone(),
        station: w.station.clone(),
        operator: w.operator.clone(),
        order: w.order.clone(),
        create_registry: w.new_registry,
    }
}

pub fn run(cmd: &CodesCmd, out: &Out, cancel: &Cancel) -> Result<Value, Error> {
    match cmd {
        CodesCmd::Gen(g) => {
            let GenArgs {
                key,
                pass,
                product,
                uids,
                out: dest,
                bin_dir,
                allow_duplicates,
                reissue,
                terms: t,
                who: w,
            } = &**g;
            let uids = if uids == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| Error::new(ErrorKind::Io, format!("standard input: {e}")))?;
                jobs::UidSource::Text(s)
            } else {
                jobs::UidSource::File(PathBuf::from(uids))
            };
            let req = jobs::CodesGenRequest {
                key: key.clone(),
                product: product.clone(),
                uids,
                out: dest.clone(),
                bin_dir: bin_dir.clone(),
                allow_duplicates: *allow_duplicates,
                reissue: *reissue,
                terms: terms(t),
                who: who(w),
            };
            let bar = out.bar("sign");
            let r = jobs::codes_gen(&req, &CliSecrets(pass), &bar, cancel);
            bar.done();
            let r = r?;
            out.text(&format!(
                "issued {} codes for {product} in {:.2} s ({:.0} codes/s signing on {} cores); {} recorded in {}",
                r.issued,
                r.seconds,
                r.codes_per_second,
                r.cores,
                r.out.display(),
                r.registry.display()
            ));
            to_json(&r)
        }
        CodesCmd::Verify(VerifyArgs {
            public,
            product,
            codes,
            at,
        }) => {
            let r = jobs::codes_verify(&jobs::CodesVerifyRequest {
                public: public.clone(),
                product: product.clone(),
                codes: codes.clone(),
                at: at.clone(),
            })?;
            out.text(&format!(
                "all {} codes are valid for {product} on {}",
                r.valid, r.at
            ));
            to_json(&r)
        }
        CodesCmd::Order(OrderArgs {
            order,
            key,
            product,
            limit,
            registry: r,
            new_registry,
        }) => {
            let rep = jobs::codes_order(&jobs::OrderRequest {
                order: order.clone(),
                key: key.clone(),
                product: product.clone(),
                limit: *limit,
                registry: r.clone(),
                create_registry: *new_registry,
            })?;
            out.text(&format!(
                "order {order}: key {} may issue {limit} codes for {product}",
                rep.key_id
            ));
            to_json(&rep)
        }
        CodesCmd::Audit(AuditArgs {
            out: dest,
            registry: r,
        }) => {
            let rep = jobs::codes_audit(&jobs::AuditRequest {
                out: dest.clone(),
                registry: r.clone(),
            })?;
            out.text(&format!(
                "{} issued codes written to {}",
                rep.rows,
                dest.display()
            ));
            to_json(&rep)
        }
        CodesCmd::Stats(StatsArgs { registry: r }) => {
            let rep = jobs::codes_figures(&jobs::FiguresRequest {
                registry: r.clone(),
            })?;
            let f = &rep.figures;
            let mut text = format!(
                "registry {}: {} codes issued, {} reissued, {} duplicate UIDs refused",
                rep.registry.display(),
                f.issued,
                f.reissued,
                f.refused_duplicates
            );
            for p in &f.products {
                text += &format!(
                    "\n  product {}: {} issued, {} reissued",
                    p.product, p.issued, p.reissued
                );
            }
            for o in &f.orders {
                text += &format!(
                    "\n  order {} ({}, key {}): {} of {} issued",
                    o.order, o.product, o.key_id, o.issued, o.limit
                );
            }
            out.text(&text);
            to_json(&rep)
        }
    }
}

/// Prints each device's log line as it is done (text mode).
struct StationPrinter {
    json: bool,
}

impl Progress for StationPrinter {
    fn event(&self, e: Event) {
        match e {
            Event::Device {
                port,
                uid,
                pass,
                detail,
                code,
            } if !self.json => {
                print!(
                    "{}",
                    jobs::station_log_line(&bluesphere_host::station::StationRecord {
                        port,
                        uid,
                        pass,
                        detail,
                        code,
                    })
                );
            }
            Event::Warning { message } => eprintln!("warning: {message}"),
            _ => {}
        }
    }
}

pub fn station(a: &StationArgs, out: &Out, cancel: &Cancel) -> Result<Value, Error> {
    let req = jobs::StationRequest {
        ports: a.ports.iter().map(|p| Address::parse(p)).collect(),
        baud: a.baud,
        key: a.key.clone(),
        product: a.product.clone(),
        terms: terms(&a.terms),
        who: who(&a.who),
        once: a.once,
        wait_seconds: a.wait,
        log: a.log.clone(),
    };
    let printer = StationPrinter {
        json: out.is_json(),
    };
    let r = jobs::station(&req, &CliSecrets(&a.pass), &printer, cancel)?;
    to_json(&r)
}
