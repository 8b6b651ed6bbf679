//! `ports`, `scan`, `info`, `push`: arguments to requests of `bluesphere_api::device`, reports to
//! text or JSON.

use std::path::Path;

use bluesphere_api::device::{self as jobs, Target};
use bluesphere_api::{Cancel, Error};
use serde_json::{json, Value};

use crate::output::Out;
use crate::to_json;

pub fn ports(out: &Out) -> Result<Value, Error> {
    let list = jobs::devices()?;
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
        out.text(&format!("{} ({}){usb}", p.address, p.kind));
    }
    Ok(json!({"ports": list.iter().map(|p| json!({
        "name": p.address.to_string(), "kind": p.kind, "vid": p.vid, "pid": p.pid,
        "serial_number": p.serial_number, "manufacturer": p.manufacturer, "product": p.product,
    })).collect::<Vec<_>>()}))
}

pub fn scan(out: &Out, seconds: f64) -> Result<Value, Error> {
    let found = jobs::ble_scan(seconds)?;
    if found.is_empty() {
        out.text("no BlueSphere device heard over Bluetooth LE (is it advertising and in range?)");
    }
    for d in &found {
        out.text(&format!(
            "{}  {}  {}",
            d.id,
            d.rssi
                .map_or("   ? dBm".to_string(), |r| format!("{r:>4} dBm")),
            d.name.as_deref().unwrap_or("(no name yet)")
        ));
    }
    Ok(json!({ "devices": to_json(&found)? }))
}

pub fn info(out: &Out, target: &Target) -> Result<Value, Error> {
    let d = jobs::info(target)?;
    out.text(&format!(
        "{} {} (uid {}), {} slots, update {}",
        d.product, d.hardware, d.uid, d.mode, d.phase
    ));
    for i in &d.images {
        let role = if i.running { "running" } else { "other" };
        out.text(&format!(
            "  slot {} ({role}): {} {}, {} bytes, security counter {}",
            i.slot, i.component, i.version, i.size, i.security_counter
        ));
    }
    if let Some(m) = &d.machine {
        out.text(&format!("  machine: {}", m.phase));
        for c in &m.components {
            out.text(&format!(
                "    {:<12} {:<12} {}",
                c.name,
                c.phase,
                if c.version.is_empty() {
                    "(no image)"
                } else {
                    &c.version
                }
            ));
        }
    }
    to_json(&d)
}

pub fn push(
    out: &Out,
    package: &Path,
    target: Target,
    reboot: bool,
    confirm: bool,
    reconnect_for: u64,
    cancel: &Cancel,
) -> Result<Value, Error> {
    let req = jobs::PushRequest {
        package: package.to_path_buf(),
        target,
        reboot,
        confirm,
        reconnect_seconds: reconnect_for,
    };
    let bar = out.bar("push");
    let r = jobs::push(&req, &bar, cancel);
    bar.done();
    let o = r?;
    out.text(&format!(
        "pushed {} bytes in {:.1} s{}{}; the device is now {}",
        o.payload_len,
        o.seconds,
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
        o.meaning
    ));
    to_json(&o)
}
