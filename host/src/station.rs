//! Production-line station: on each port, wait for a device, read its chip UID, issue its
//! activation code (or reuse the one the registry already holds for it), write it, read it
//! back and verify it, log pass or fail, then wait for the next device. Several ports run
//! at once (gang programming); all share the registry file, so no UID gets two codes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bluesphere_core::activation::{self, check_uid, Code, Terms};
use bluesphere_core::proto::{Request, Response, Status, PROTO_VERSION};
use p256::ecdsa::SigningKey;

use crate::driver::transact;
use crate::registry::{IssueMeta, Registry, RegistryError};
use crate::transport::{Address, Connector, Link, WallClock};
use crate::HostError;

/// Station settings.
#[derive(Debug, Clone)]
pub struct StationConfig {
    /// Devices (one per port or address).
    pub ports: Vec<Address>,
    /// Product id.
    pub product: String,
    /// Feature bits and expiry.
    pub terms: Terms,
    /// Registry file.
    pub registry: PathBuf,
    /// Station, operator, order for the audit log.
    pub meta: IssueMeta,
    /// Handle one device per port, then stop.
    pub once: bool,
    /// With `once`: how long to wait for a device.
    pub wait_for: Duration,
}

/// One device's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationRecord {
    /// Port.
    pub port: String,
    /// Chip UID (hex), if read.
    pub uid: String,
    /// Passed.
    pub pass: bool,
    /// `issued`, `reused` (registry already had it), `already-activated`, or why it failed.
    pub detail: String,
    /// The code (text form), when known.
    pub code: String,
}

#[derive(Debug)]
enum Reply {
    Bytes(Vec<u8>),
    Done,
    Error(Status),
}

fn call<L: Link + ?Sized>(
    port: &mut L,
    seq: &mut u8,
    req: &Request<'_>,
    t: Duration,
) -> Result<Reply, HostError> {
    *seq = seq.wrapping_add(1);
    transact(port, &WallClock::new(), *seq, req, t, |r| match r {
        Response::Bytes(b) => Some(Reply::Bytes(b.to_vec())),
        Response::Done { .. } | Response::Hello { .. } => Some(Reply::Done),
        _ => None,
    })
}

fn call_status<L: Link + ?Sized>(
    port: &mut L,
    seq: &mut u8,
    req: &Request<'_>,
    t: Duration,
) -> Result<Reply, HostError> {
    match call(port, seq, req, t) {
        Err(HostError::Status { status, .. }) => Ok(Reply::Error(status)),
        r => r,
    }
}

/// Run the station until `stop` (or, with `once`, one device per port). `log` gets every
/// record as it happens.
pub fn run<K: Connector + Sync>(
    cfg: &StationConfig,
    connector: &K,
    key: &SigningKey,
    log: &(dyn Fn(&StationRecord) + Sync),
    stop: &AtomicBool,
) -> Vec<StationRecord> {
    std::thread::scope(|s| {
        let hs: Vec<_> = cfg
            .ports
            .iter()
            .map(|p| s.spawn(move || port_loop(cfg, connector, key, p, log, stop)))
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn port_loop<K: Connector>(
    cfg: &StationConfig,
    connector: &K,
    key: &SigningKey,
    address: &Address,
    log: &(dyn Fn(&StationRecord) + Sync),
    stop: &AtomicBool,
) -> Vec<StationRecord> {
    let mut out = Vec::new();
    let path = address.to_string();
    let path = path.as_str();
    let started = Instant::now();
    let fail = |uid: &str, detail: String| StationRecord {
        port: path.into(),
        uid: uid.into(),
        pass: false,
        detail,
        code: String::new(),
    };
    let mut reg = match Registry::open(&cfg.registry) {
        Ok(r) => r,
        Err(e) => {
            let r = fail("", e.to_string());
            log(&r);
            return vec![r];
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if cfg.once && started.elapsed() > cfg.wait_for {
            let r = fail("", format!("no device answered on {path}"));
            log(&r);
            out.push(r);
            break;
        }
        let Ok(mut port) = connector.open(address) else {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        };
        let mut seq = 0u8;
        let t = Duration::from_millis(400);
        let hello = Request::Hello {
            version: PROTO_VERSION,
            max_frame: 1024,
        };
        if call(&mut port, &mut seq, &hello, t).is_err() {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        let r = one_device(cfg, key, &mut reg, &mut port, &mut seq, path);
        log(&r);
        let uid = r.uid.clone();
        out.push(r);
        if cfg.once {
            break;
        }
        // Wait until this device is gone (or replaced) before the next one.
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(300));
            match call(
                &mut port,
                &mut seq,
                &Request::ReadUid,
                Duration::from_millis(200),
            ) {
                Ok(Reply::Bytes(b)) if hex::encode(&b) == uid => continue,
                _ => break,
            }
        }
    }
    out
}

fn one_device<L: Link + ?Sized>(
    cfg: &StationConfig,
    key: &SigningKey,
    reg: &mut Registry,
    port: &mut L,
    seq: &mut u8,
    path: &str,
) -> StationRecord {
    let t = Duration::from_millis(500);
    let vk = *key.verifying_key();
    let mut rec = StationRecord {
        port: path.into(),
        uid: String::new(),
        pass: false,
        detail: String::new(),
        code: String::new(),
    };
    let uid = match call(port, seq, &Request::ReadUid, t) {
        Ok(Reply::Bytes(b)) => b,
        other => {
            rec.detail = format!("cannot read the chip UID: {other:?}");
            return rec;
        }
    };
    rec.uid = hex::encode(&uid);
    if let Err(e) = check_uid(&uid) {
        rec.detail = e.to_string();
        return rec;
    }
    // Already activated with a valid code?
    if let Ok(Reply::Bytes(b)) = call_status(port, seq, &Request::ReadCode, t) {
        if let Ok(c) = Code::from_bytes(&b) {
            if c.verify(&cfg.product, &uid, &[vk]).is_ok() {
                rec.pass = true;
                rec.detail = "already-activated".into();
                rec.code = activation::text(&c);
                return rec;
            }
        }
    }
    // The registry's code for this UID, or a new one (recorded before it is written).
    let (code, how) = match issue_or_reuse(cfg, key, reg, &uid) {
        Ok(x) => x,
        Err(e) => {
            rec.detail = e.to_string();
            return rec;
        }
    };
    rec.code = activation::text(&code);
    let bytes = code.to_bytes();
    match call_status(port, seq, &Request::WriteCode { code: &bytes }, t) {
        Ok(Reply::Done) => {}
        Ok(Reply::Error(Status::AlreadyActivated)) => {
            rec.detail = "the device holds another activation code".into();
            return rec;
        }
        Ok(Reply::Error(Status::BadCode)) => {
            rec.detail =
                "the device rejected the code (is it configured for this product and key?)".into();
            return rec;
        }
        other => {
            rec.detail = format!("writing the code failed: {other:?}");
            return rec;
        }
    }
    match call_status(port, seq, &Request::ReadCode, t) {
        Ok(Reply::Bytes(b)) if b == bytes => {
            if code.verify(&cfg.product, &uid, &[vk]).is_ok() {
                rec.pass = true;
                rec.detail = how.into();
            } else {
                rec.detail = "read back, but the code does not verify".into();
            }
        }
        other => rec.detail = format!("read-back differs: {other:?}"),
    }
    rec
}

fn issue_or_reuse(
    cfg: &StationConfig,
    key: &SigningKey,
    reg: &mut Registry,
    uid: &[u8],
) -> Result<(Code, &'static str), String> {
    let vk = key.verifying_key();
    let uid_hex = hex::encode(uid);
    for _ in 0..2 {
        if let Some(text) = reg
            .lookup(&cfg.product, &uid_hex)
            .map_err(|e| e.to_string())?
        {
            let c = Code::from_text(&text, vk).map_err(|e| e.to_string())?;
            return Ok((c, "reused"));
        }
        let c = activation::issue(key, &cfg.product, uid, cfg.terms).map_err(|e| e.to_string())?;
        match reg.issue(&[(uid_hex.clone(), activation::text(&c))], &cfg.meta) {
            Ok(()) => return Ok((c, "issued")),
            // Another station issued it a moment ago: use that one.
            Err(RegistryError::AlreadyIssued { .. }) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("registry race did not settle".into())
}
