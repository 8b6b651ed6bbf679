//! The virtual device (`bluesphere-device`, the device SDK's Linux port with file-backed
//! flash) installing a real firmware delta from the public corpus while being killed with
//! `kill -9` at random moments, during the install and during the boot-time swap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use bluesphere_core::package::sha2_digest;
use bluesphere_tests::{bin, bluesphere, device, firmware_pair, root};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn status(dir: &Path) -> serde_json::Value {
    let r = device(dir, &["--json", "status"]);
    assert_eq!(r.code, 0, "{r:?}");
    r.json()
}

/// xorshift: reproducible "random" moments.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Run `args` on the device, killing it with SIGKILL after a random delay, until a run
/// completes. Returns how many runs were killed mid-way.
fn until_done(dir: &Path, args: &[&str], rng: &mut Rng, max_ms: u64, check: &dyn Fn()) -> u32 {
    let mut kills = 0;
    for attempt in 0..200 {
        let mut child = Command::new(bin("bluesphere-device"))
            .arg("--flash")
            .arg(dir.join("dev"))
            .args(["--op-delay-us", "300"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The first attempts are always cut early; later ones get longer.
        let wait = Duration::from_millis(rng.below(max_ms * (attempt + 1) / 4 + 1));
        let t = Instant::now();
        while t.elapsed() < wait {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL: a power cut
            child.wait().unwrap();
            kills += 1;
            check();
            continue;
        }
        let st = child.wait().unwrap();
        assert!(st.success(), "{args:?} failed after {kills} kills: {st:?}");
        return kills;
    }
    panic!("{args:?} never completed");
}

#[test]
fn corpus_delta_survives_kill_9_during_install_and_swap() {
    let (old, new, what) = firmware_pair();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let old_bytes = fs::read(&old).unwrap();
    let new_bytes = fs::read(&new).unwrap();
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
            "qemu",
            "--hardware",
            "pc",
            "--from-version",
            "1.16.2",
            "--version",
            "1.16.3",
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
            "1.16.2",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let old_sha = hex::encode(sha2_digest(&old_bytes));
    let new_sha = hex::encode(sha2_digest(&new_bytes));
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let pkg = p.join("u.bspk");
    let pkg = pkg.to_str().unwrap();
    // While receiving, every kill leaves the old image running and intact.
    let running_old = || {
        let s = status(p);
        assert_eq!(s["running"]["flash_sha256"], old_sha.as_str(), "{s}");
        assert_eq!(s["running"]["intact"], true, "{s}");
    };
    let install_kills = until_done(p, &["install", pkg], &mut rng, 60, &running_old);
    assert_eq!(status(p)["phase"], "pending");
    // The boot step swaps the images; kills there leave a swap the next boot finishes.
    let boot_kills = until_done(p, &["boot"], &mut rng, 400, &|| {});
    let s = status(p);
    assert_eq!(s["phase"], "testing", "{s}");
    assert_eq!(s["running"]["flash_sha256"], new_sha.as_str(), "{s}");
    assert_eq!(s["running"]["version"], "1.16.3");
    assert_eq!(
        s["other"]["flash_sha256"],
        old_sha.as_str(),
        "the old image is kept for revert"
    );
    assert_eq!(device(p, &["confirm"]).code, 0);
    assert_eq!(status(p)["phase"], "confirmed");
    let out = p.join("running.bin");
    assert_eq!(
        device(p, &["read-image", "-o", out.to_str().unwrap()]).code,
        0
    );
    assert_eq!(
        fs::read(&out).unwrap(),
        new_bytes,
        "installed image is byte-identical"
    );
    eprintln!("{what}: {install_kills} kills during install, {boot_kills} during the swap; installed and confirmed");
    assert!(
        install_kills >= 3 && boot_kills >= 3,
        "too few kills landed: {install_kills}/{boot_kills}"
    );
}

#[test]
fn unconfirmed_image_is_reverted_and_refusals_change_nothing() {
    let old = root().join("assets/sample-v1.0.0.bin");
    let new = root().join("assets/sample-v1.1.0.bin");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    assert_eq!(
        bluesphere(p, &["keygen", "-o", "k.pem", "--pub", "k.pub"]).code,
        0
    );
    assert_eq!(bluesphere(p, &["keygen", "-o", "other.pem"]).code, 0);
    for (out, key, hw) in [
        ("u.bspk", "k.pem", "revB"),
        ("other.bspk", "other.pem", "revB"),
        ("hw.bspk", "k.pem", "revC"),
    ] {
        let r = bluesphere(
            p,
            &[
                "pack",
                "--old",
                old.to_str().unwrap(),
                "--new",
                new.to_str().unwrap(),
                "--key",
                key,
                "-o",
                out,
                "--product",
                "thermo",
                "--hardware",
                hw,
                "--from-version",
                "1.0.0",
                "--version",
                "1.1.0",
            ],
        );
        assert_eq!(r.code, 0, "{r:?}");
    }
    for mode in ["swap", "ab"] {
        let _ = fs::remove_dir_all(p.join("dev"));
        let r = device(
            p,
            &[
                "init",
                "--product",
                "thermo",
                "--hardware",
                "revB",
                "--key",
                p.join("k.pub").to_str().unwrap(),
                "--image",
                old.to_str().unwrap(),
                "--version",
                "1.0.0",
                "--mode",
                mode,
            ],
        );
        assert_eq!(r.code, 0, "{r:?}");
        let flash = fs::read(p.join("dev/flash.bin")).unwrap();
        for (pkg, kind, code) in [
            ("other.bspk", "unknown-key", 4),
            ("hw.bspk", "wrong-hardware", 5),
        ] {
            let r = device(p, &["--json", "install", p.join(pkg).to_str().unwrap()]);
            assert_eq!(r.code, code, "{r:?}");
            assert_eq!(r.json()["error"]["kind"], kind);
            assert_eq!(
                fs::read(p.join("dev/flash.bin")).unwrap(),
                flash,
                "{pkg}: flash changed"
            );
        }
        assert_eq!(
            device(p, &["install", p.join("u.bspk").to_str().unwrap()]).code,
            0
        );
        let b = device(p, &["--json", "boot"]).json();
        assert_eq!(b["phase"], "testing");
        assert_eq!(b["running"]["version"], "1.1.0");
        // Reset without confirming: the next boot goes back to 1.0.0.
        let b = device(p, &["--json", "boot"]).json();
        assert_eq!(b["phase"], "reverted", "{mode}: {b}");
        assert_eq!(b["running"]["version"], "1.0.0");
        assert_eq!(b["running"]["intact"], true);
        let r = device(p, &["--json", "confirm"]);
        assert_eq!(r.code, 7);
        assert_eq!(r.json()["error"]["kind"], "wrong-phase");
    }
}
