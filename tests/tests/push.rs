//! `bluesphere push` over a real pseudo-terminal cable to the virtual device
//! (`bluesphere-device serve`, a separate process) that is killed with `kill -9` at random
//! moments and restarted: the push completes and the installed image is byte-identical.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use bluesphere_core::package::sha2_digest;
use bluesphere_tests::{bin, bluesphere, device, firmware_pair, PtyCable, Run};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn serve(dir: &Path, port: &str, delay_us: &str) -> Child {
    Command::new(bin("bluesphere-device"))
        .arg("--flash")
        .arg(dir.join("dev"))
        .args([
            "--op-delay-us",
            delay_us,
            "serve",
            "--port",
            port,
            "--auto-confirm",
        ])
        .args(["--baud", "38400"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn setup(p: &Path, product: &str) -> (PathBuf, PathBuf) {
    let (old, new, _) = firmware_pair();
    assert_eq!(
        bluesphere(p, &["keygen", "-o", "k.pem", "--pub", "k.pub"]).code,
        0
    );
    let r = bluesphere(
        p,
        &[
            "pack",
            "--old",
            old.to_str().unwrap(),
            "--new",
            new.to_str().unwrap(),
            "--key",
            "k.pem",
            "-o",
            "u.bspk",
            "--product",
            product,
            "--hardware",
            "pc",
            "--from-version",
            "1.0.0",
            "--version",
            "1.1.0",
            // 4 KiB blocks: a device that loses power resumes within 4 KiB of target.
            "--block-kib",
            "4",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = device(
        p,
        &[
            "init",
            "--product",
            "qemu",
            "--hardware",
            "pc",
            "--key",
            p.join("k.pub").to_str().unwrap(),
            "--image",
            old.to_str().unwrap(),
            "--version",
            "1.0.0",
            "--uid",
            "0011223344556677",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    (old, new)
}

#[test]
fn push_survives_kill_9_of_the_device_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (_, new) = setup(p, "qemu");
    let new_bytes = std::fs::read(&new).unwrap();
    let cable = PtyCable::new();
    // A 38400-baud line (4.7 s for the 18 KB SeaBIOS delta) and a slow flash (2 ms per
    // erase or write), so the kills land in the transfer and in the swap.
    let mut dev = serve(p, &cable.device, "2000");
    let info = bluesphere(p, &["--json", "info", "--port", &cable.host]);
    assert_eq!(info.code, 0, "{info:?}");
    let i = info.json();
    assert_eq!(i["product"], "qemu");
    assert_eq!(i["uid"], "0011223344556677");
    assert_eq!(i["images"][0]["version"], "1.0.0");
    let mut host = Command::new(bin("bluesphere"))
        .args(["--json", "push", "u.bspk", "--port", &cable.host])
        .current_dir(p)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut kills = 0;
    let t = Instant::now();
    while host.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(120) {
        if kills < 4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            std::thread::sleep(Duration::from_millis(400 + x % 500));
            if host.try_wait().unwrap().is_none() {
                dev.kill().unwrap(); // SIGKILL: power cut mid-push
                dev.wait().unwrap();
                kills += 1;
                std::thread::sleep(Duration::from_millis(x % 300));
                dev = serve(p, &cable.device, "2000");
            }
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let out: Run = host.wait_with_output().unwrap().into();
    dev.kill().unwrap();
    dev.wait().unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    let r = out.json();
    eprintln!("push after {kills} kills: {r}");
    assert!(kills >= 2, "the push ended before the kills: {r}");
    assert!(r["restarts"].as_u64().unwrap() >= 1, "{r}");
    assert!(
        r["max_resume"].as_u64().unwrap() > 0,
        "resumed mid-payload: {r}"
    );
    let s = device(p, &["--json", "status"]).json();
    assert_eq!(
        s["running"]["flash_sha256"],
        hex::encode(sha2_digest(&new_bytes)),
        "{s}"
    );
    assert_eq!(s["phase"], "confirmed", "{s}");
}

#[test]
fn push_errors_say_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    setup(p, "other-product");
    let r = bluesphere(
        p,
        &["--json", "push", "u.bspk", "--port", "/dev/nonexistent-tty"],
    );
    assert_eq!(r.code, 7);
    assert_eq!(r.json()["error"]["kind"], "no-port");
    let cable = PtyCable::new();
    let mut dev = serve(p, &cable.device, "0");
    let r = bluesphere(p, &["--json", "push", "u.bspk", "--port", &cable.host]);
    dev.kill().unwrap();
    dev.wait().unwrap();
    assert_eq!(r.code, 5, "{r:?}");
    let e = &r.json()["error"];
    assert_eq!(e["kind"], "wrong-product");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("another product") && msg.contains("qemu"),
        "{msg}"
    );
    // Nothing changed on the device.
    let s = device(p, &["--json", "status"]).json();
    assert_eq!(s["phase"], "idle");
    assert_eq!(s["running"]["version"], "1.0.0");
    // A device that runs another version than the delta's base: the message names both.
    let (old, new, _) = firmware_pair();
    let r = bluesphere(
        p,
        &[
            "pack",
            "--old",
            new.to_str().unwrap(),
            "--new",
            old.to_str().unwrap(),
            "--key",
            "k.pem",
            "-o",
            "base.bspk",
            "--product",
            "qemu",
            "--hardware",
            "pc",
            "--from-version",
            "1.2.0",
            "--version",
            "1.3.0",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let mut dev = serve(p, &cable.device, "0");
    let r = bluesphere(p, &["--json", "push", "base.bspk", "--port", &cable.host]);
    dev.kill().unwrap();
    dev.wait().unwrap();
    assert_eq!(r.code, 5, "{r:?}");
    let e = &r.json()["error"];
    assert_eq!(e["kind"], "wrong-base");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("runs main 1.0.0") && msg.contains("expects 1.2.0"),
        "{msg}"
    );
    // A device whose new image is still on trial is busy: confirm or revert first.
    let r = bluesphere(
        p,
        &[
            "pack",
            "--old",
            old.to_str().unwrap(),
            "--new",
            new.to_str().unwrap(),
            "--key",
            "k.pem",
            "-o",
            "ok.bspk",
            "--product",
            "qemu",
            "--hardware",
            "pc",
            "--from-version",
            "1.0.0",
            "--version",
            "1.1.0",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = device(p, &["install", p.join("ok.bspk").to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    // Power on: the boot step installs the pending update, which then runs on trial.
    let mut dev = Command::new(bin("bluesphere-device"))
        .arg("--flash")
        .arg(p.join("dev"))
        .args(["serve", "--port", &cable.device])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let r = bluesphere(p, &["--json", "push", "base.bspk", "--port", &cable.host]);
    dev.kill().unwrap();
    dev.wait().unwrap();
    assert_eq!(r.code, 7, "{r:?}");
    let e = &r.json()["error"];
    assert_eq!(e["kind"], "device-busy");
    assert!(e["message"].as_str().unwrap().contains("on trial"), "{e}");
    // No device on the cable: a timeout that says the old firmware still runs.
    let r = bluesphere(p, &["--json", "info", "--port", &cable.host]);
    assert_eq!(r.code, 7);
    assert_eq!(r.json()["error"]["kind"], "timeout");
}
