//! `ports`, `info`, `push`: thin commands over `bluesphere-host`.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bluesphere_core::proto::{phase, PushConfig, Stage};
use bluesphere_host::serial::{self, Event, PushOptions};
use bluesphere_host::HostError;
use serde_json::{json, Value};

use crate::output::{Failure, Out};

fn fail(e: HostError) -> Failure {
    let code = match e.kind() {
        "bad-package" => 3,
        "unknown-key" | "bad-signature" => 4,
        "wrong-product" | "wrong-hardware" | "wrong-base" | "rollback" | "too-large"
        | "refused" => 5,
        _ => 7,
    };
    Failure::new(e.kind(), code, e.into())
}

pub fn ports(out: &Out) -> Result<Value, Failure> {
    let list = serial::ports().map_err(fail)?;
    if list.is_empty() {
        out.text("no serial ports found (is the device plugged in?)");
    }
    for p in &list {
        let usb = match (p.vid, p.pid) {
            (Some(v), Some(d)) => format!(
                " {v:04x}:{d:04x} {} {} serial {}",
                p.manufacturer.as_deref().unwrap_or(""),
                p.product.as_deref().unwrap_or(""),
                p.serial_number.as_deref().unwrap_or("-")
            ),
            _ => String::new(),
        };
        out.text(&format!("{} ({}){usb}", p.name, p.kind));
    }
    Ok(json!({"ports": list.iter().map(|p| json!({
        "name": p.name, "kind": p.kind, "vid": p.vid, "pid": p.pid,
        "serial_number": p.serial_number, "manufacturer": p.manufacturer, "product": p.product,
    })).collect::<Vec<_>>()}))
}

pub fn info(out: &Out, port: &str, baud: u32) -> Result<Value, Failure> {
    let d = serial::info(port, baud).map_err(fail)?;
    out.text(&format!(
        "{} {} (uid {}), {} slots, update {}",
        d.product,
        d.hardware,
        hex::encode(&d.uid),
        d.mode,
        d.phase
    ));
    for (slot, name, version, size, counter, _) in &d.images {
        let role = if *slot == d.boot_slot {
            "running"
        } else {
            "other"
        };
        out.text(&format!(
            "  slot {slot} ({role}): {name} {version}, {size} bytes, security counter {counter}"
        ));
    }
    Ok(json!({
        "product": d.product, "hardware": d.hardware, "uid": hex::encode(&d.uid),
        "mode": d.mode, "phase": d.phase, "progress": {"done": d.done, "total": d.total},
        "boot_slot": d.boot_slot,
        "images": d.images.iter().map(|(slot, name, version, size, counter, sha)| json!({
            "slot": slot, "running": *slot == d.boot_slot, "component": name,
            "version": version, "size": size, "security_counter": counter,
            "sha256": hex::encode(sha),
        })).collect::<Vec<_>>(),
    }))
}

pub fn push(
    out: &Out,
    pkg: &[u8],
    port: &str,
    baud: u32,
    reboot: bool,
    confirm: bool,
    reconnect_for: u64,
) -> Result<Value, Failure> {
    let opts = PushOptions {
        port: port.into(),
        baud,
        config: PushConfig {
            reboot,
            confirm,
            ..PushConfig::default()
        },
        reconnect_for: Duration::from_secs(reconnect_for),
    };
    let bar = out.bar("push", 0);
    let cancel = AtomicBool::new(false);
    let mut reconnects = 0u32;
    let started = std::time::Instant::now();
    let r = serial::push(
        pkg,
        &opts,
        &mut |e| match e {
            Event::Connected { product, version } => {
                bar.message(&format!("{product} {version}"));
            }
            Event::Progress {
                stage,
                acked,
                total,
                ..
            } => {
                if total > 0 {
                    bar.bytes(u64::from(acked), u64::from(total));
                }
                if stage != Stage::Data {
                    bar.message(&format!("{stage:?}").to_lowercase());
                }
            }
            Event::Reconnecting { attempt } => {
                if attempt == 1 {
                    reconnects += 1;
                    bar.message("reconnecting");
                }
            }
            Event::Reconnected => bar.message("resuming"),
        },
        &cancel,
    );
    bar.done();
    let o = r.map_err(fail)?;
    let secs = started.elapsed().as_secs_f64();
    out.text(&format!(
        "pushed {} bytes in {:.1} s{}{}; the device is now {}",
        o.payload_len,
        secs,
        if o.resumed_from > 0 {
            format!(" (resumed at byte {})", o.resumed_from)
        } else {
            String::new()
        },
        if o.restarts > 0 {
            format!(", {} reconnect(s)", o.restarts)
        } else {
            String::new()
        },
        match o.phase {
            phase::TESTING =>
                "running the new image on trial (it confirms itself, or reverts at the next reset)",
            phase::CONFIRMED => "running the new image, confirmed",
            phase::PENDING => "holding the verified update; it installs at the next reset",
            p => phase::name(p),
        }
    ));
    Ok(json!({
        "ok": true, "payload_len": o.payload_len, "resumed_from": o.resumed_from,
        "bytes_sent": o.sent, "bytes_resent": o.resent, "restarts": o.restarts,
        "max_resume": o.max_resume,
        "reconnects": reconnects, "seconds": secs, "phase": phase::name(o.phase),
    }))
}
