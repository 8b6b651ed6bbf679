//! Hostile inputs, one test per class of issue 14: each case runs the real `bluesphere`
//! binary on generated files and checks the exit code, the JSON error kind, the message's
//! key words and that no file changed (`refused`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::fs;
use std::path::Path;

use bluesphere_core::testkit::{evolve, firmware};
use bluesphere_tests::{bluesphere, refused, run, snapshot};

/// A folder with an old and a new image, a signing key and a delta package `p.bsp`.
fn setup() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let old = firmware(7, 64 * 1024);
    fs::write(p.join("old.bin"), &old).unwrap();
    fs::write(p.join("new.bin"), evolve(&old, 7)).unwrap();
    assert_eq!(bluesphere(p, &["keygen", "-q", "-o", "k.pem"]).code, 0);
    let r = bluesphere(
        p,
        &[
            "pack",
            "-q",
            "--old",
            "old.bin",
            "--new",
            "new.bin",
            "--key",
            "k.pem",
            "-o",
            "p.bsp",
            "--from-version",
            "1.0.0",
            "--version",
            "1.1.0",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    d
}

/// Intel HEX text of `(address, bytes)` records, 16 bytes a line, with or without its
/// end-of-file record.
fn ihex(segments: &[(u32, &[u8])], eof: bool) -> String {
    let mut out = String::new();
    let mut record = |ty: u8, addr: u16, data: &[u8]| {
        let mut b = vec![data.len() as u8, (addr >> 8) as u8, addr as u8, ty];
        b.extend_from_slice(data);
        let sum = b.iter().fold(0u8, |a, x| a.wrapping_add(*x)).wrapping_neg();
        b.push(sum);
        out.push(':');
        for x in b {
            out.push_str(&format!("{x:02X}"));
        }
        out.push('\n');
    };
    for (base, bytes) in segments {
        for (i, chunk) in bytes.chunks(16).enumerate() {
            let a = base + 16 * i as u32;
            record(4, 0, &[(a >> 24) as u8, (a >> 16) as u8]);
            record(0, a as u16, chunk);
        }
    }
    if eof {
        record(1, 0, &[]);
    }
    out
}

fn pack_args(new: &'static str) -> Vec<&'static str> {
    vec!["pack", "--new", new, "--key", "k.pem", "-o", "out.bsp"]
}

/// Class 3: an output is never one of the inputs, the registry, or a device node.
#[test]
fn class3_outputs_never_replace_inputs() {
    let d = setup();
    let p = d.path();
    let mut a = pack_args("new.bin");
    a[6] = "k.pem";
    refused(p, &a, 2, "output-conflict", &["k.pem"]);
    refused(
        p,
        &[
            "apply",
            "p.bsp",
            "--old",
            "old.bin",
            "-o",
            "old.bin",
            "--pub",
            "k.pub.pem",
        ],
        2,
        "output-conflict",
        &["old.bin"],
    );
    // The same file by another path.
    fs::hard_link(p.join("new.bin"), p.join("alias.bin")).unwrap();
    let mut a = pack_args("new.bin");
    a[6] = "alias.bin";
    refused(p, &a, 2, "output-conflict", &["alias.bin"]);
    fs::remove_file(p.join("alias.bin")).unwrap();
    fs::write(p.join("uids.txt"), "0102030405060708\n").unwrap();
    let gen = |out: &'static str| {
        vec![
            "codes",
            "gen",
            "--key",
            "k.pem",
            "--product",
            "thermo",
            "--uids",
            "uids.txt",
            "-o",
            out,
            "--registry",
            "reg.sqlite",
            "--new-registry",
        ]
    };
    refused(p, &gen("uids.txt"), 2, "output-conflict", &["uids.txt"]);
    refused(p, &gen("reg.sqlite"), 2, "output-conflict", &["reg.sqlite"]);
    refused(
        p,
        &gen("/dev/null"),
        2,
        "output-conflict",
        &["regular file"],
    );
}

/// Class 4: inputs are regular files of a sane size, checked before they are read.
#[test]
fn class4_unbounded_inputs_are_refused_before_reading() {
    let d = setup();
    let p = d.path();
    // A 3 GB sparse file: refused by its size, not read.
    let f = fs::File::create(p.join("huge.bsp")).unwrap();
    f.set_len(3 << 30).unwrap();
    drop(f);
    refused(
        p,
        &["inspect", "huge.bsp"],
        3,
        "invalid-input",
        &["3221225472 bytes", "more than"],
    );
    refused(
        p,
        &pack_args("huge.bsp"),
        3,
        "invalid-input",
        &["3221225472 bytes", "more than"],
    );
    fs::remove_file(p.join("huge.bsp")).unwrap();
    refused(
        p,
        &["inspect", "/dev/zero"],
        3,
        "invalid-input",
        &["regular file"],
    );
    // A FIFO would block a reader forever.
    assert_eq!(run(p, "mkfifo", &["pipe"]).code, 0);
    refused(
        p,
        &["inspect", "pipe"],
        3,
        "invalid-input",
        &["regular file"],
    );
    refused(p, &pack_args("pipe"), 3, "invalid-input", &["regular file"]);
}

/// Class 5: an image is exactly what the file says, or an error that says why.
#[test]
fn class5_images_are_what_the_user_gave() {
    let d = setup();
    let p = d.path();
    let app: Vec<u8> = (0..200u8).collect();
    // No end-of-file record: a truncated export.
    fs::write(p.join("cut.hex"), ihex(&[(0x0800_0000, &app)], false)).unwrap();
    refused(
        p,
        &pack_args("cut.hex"),
        3,
        "invalid-input",
        &["end-of-file", "truncated"],
    );
    // DOS padding after the end-of-file record is still HEX (not packed as text).
    let mut padded = ihex(&[(0x0800_0000, &app)], true).into_bytes();
    padded.extend_from_slice(b"\x1a\0");
    fs::write(p.join("pad.hex"), &padded).unwrap();
    let r = bluesphere(
        p,
        &[
            "--json", "pack", "--new", "pad.hex", "--key", "k.pem", "-o", "pad.bsp",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let info = bluesphere(p, &["--json", "inspect", "pad.bsp"]).json();
    assert_eq!(info["components"][0]["target_size"], 200);
    assert_eq!(info["components"][0]["load_address"], 0x0800_0000u64);
    // nRF52: application in flash plus a UICR register: segments far apart.
    let uicr = [0x00u8, 0x10, 0x00, 0x00];
    fs::write(
        p.join("nrf.hex"),
        ihex(&[(0, &app), (0x1000_1208, &uicr)], true),
    )
    .unwrap();
    refused(
        p,
        &pack_args("nrf.hex"),
        3,
        "segments",
        &[
            "0x00000000..0x000000C8",
            "0x10001208..0x1000120C",
            "--range",
        ],
    );
    let r = bluesphere(
        p,
        &[
            "--json",
            "pack",
            "--new",
            "nrf.hex",
            "--key",
            "k.pem",
            "-o",
            "nrf.bsp",
            "--range",
            "0..0x10000000",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["target_size"], 200);
    refused(
        p,
        &[
            "pack", "--new", "nrf.hex", "--key", "k.pem", "-o", "x.bsp", "--range", "9..3",
        ],
        2,
        "usage",
        &["empty"],
    );
    // An ELF object file has nothing to flash.
    let mut elf = b"\x7FELF\x01\x01\x01\x00".to_vec();
    elf.resize(64, 0);
    fs::write(p.join("obj.elf"), &elf).unwrap();
    refused(
        p,
        &pack_args("obj.elf"),
        3,
        "invalid-input",
        &["ELF", "--format bin"],
    );
}

/// Class 6: expiry dates are real, in the future unless allowed, and checked by verify.
#[test]
fn class6_activation_terms() {
    let d = setup();
    let p = d.path();
    fs::write(p.join("uids.txt"), "0102030405060708\n1112131415161718\n").unwrap();
    let gen = |expires: &'static str, extra: &[&'static str]| {
        let mut v = vec![
            "codes",
            "gen",
            "--key",
            "k.pem",
            "--product",
            "thermo",
            "--uids",
            "uids.txt",
            "-o",
            "c.csv",
            "--registry",
            "reg.sqlite",
            "--new-registry",
            "--expires",
            expires,
        ];
        v.extend_from_slice(extra);
        v
    };
    refused(
        p,
        &gen("1969-12-31", &[]),
        2,
        "usage",
        &["after 1970-01-01"],
    );
    refused(
        p,
        &gen("1970-01-01", &[]),
        2,
        "usage",
        &["after 1970-01-01"],
    );
    refused(p, &gen("2024-02-30", &[]), 2, "usage", &["YYYY-MM-DD"]);
    refused(
        p,
        &gen("2020-06-01", &[]),
        2,
        "usage",
        &["not in the future", "--allow-past"],
    );
    // Issued on purpose with a past date: verify reports them expired (kind, exit 4, date).
    let r = bluesphere(p, &gen("2020-06-01", &["--allow-past", "-q"]));
    assert_eq!(r.code, 0, "{r:?}");
    let verify = |at: Option<&'static str>| {
        let mut v = vec![
            "codes",
            "verify",
            "--pub",
            "k.pub.pem",
            "--product",
            "thermo",
            "c.csv",
        ];
        if let Some(a) = at {
            v.extend(["--at", a]);
        }
        v
    };
    refused(p, &verify(None), 4, "expired", &["expired on 2020-06-01"]);
    let r = bluesphere(p, &{
        let mut v = vec!["--json"];
        v.extend(verify(Some("2020-05-31")));
        v
    });
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["valid"], 2);
    assert_eq!(r.json()["at"], "2020-05-31");
    refused(
        p,
        &verify(Some("2020-06-01")),
        4,
        "expired",
        &["2020-06-01"],
    );
}

/// Class 7: a batch is recorded only when every output is ready; a named registry must exist.
#[test]
fn class7_batches_are_all_or_nothing() {
    let d = setup();
    let p = d.path();
    fs::write(p.join("uids.txt"), "0102030405060708\n").unwrap();
    let gen = |out: &'static str, extra: &[&'static str]| {
        let mut v = vec![
            "codes",
            "gen",
            "--key",
            "k.pem",
            "--product",
            "thermo",
            "--uids",
            "uids.txt",
            "-o",
            out,
            "--registry",
            "reg.sqlite",
        ];
        v.extend_from_slice(extra);
        v
    };
    // A mistyped registry path does not start an empty registry.
    refused(
        p,
        &gen("c.csv", &[]),
        1,
        "registry",
        &["no activation registry", "--new-registry"],
    );
    // The registry exists from now on (an order makes it).
    let r = bluesphere(
        p,
        &[
            "codes",
            "order",
            "--order",
            "o1",
            "--key",
            "k.pem",
            "--product",
            "thermo",
            "--limit",
            "10",
            "--registry",
            "reg.sqlite",
            "--new-registry",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    // Outputs that cannot be written fail before anything is recorded...
    refused(p, &gen("no-such-dir/c.csv", &[]), 1, "io", &["no-such-dir"]);
    fs::write(p.join("afile"), "x").unwrap();
    refused(
        p,
        &gen("c.csv", &["--bin-dir", "afile"]),
        2,
        "output-conflict",
        &["not a folder"],
    );
    // ...so the same UIDs can be issued right after.
    let r = bluesphere(p, &gen("c.csv", &["--bin-dir", "bins"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(p.join("bins/0102030405060708.bin").exists());
    assert!(fs::read_to_string(p.join("c.csv"))
        .unwrap()
        .contains("0102030405060708,"));
    // A registry locked by another program: a clear error after a bounded wait. (Reading
    // the registry's files here would drop this process's POSIX locks: snapshot first.)
    fs::write(p.join("uids2.txt"), "2122232425262728\n").unwrap();
    let keep = |s: Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
        s.into_iter()
            .filter(|(n, _)| !n.starts_with("reg.sqlite"))
            .collect()
    };
    let before = keep(snapshot(p));
    let conn = rusqlite::Connection::open(p.join("reg.sqlite")).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let t0 = std::time::Instant::now();
    let mut a = vec!["--json"];
    a.extend(gen("c2.csv", &[]));
    a[8] = "uids2.txt";
    let r = bluesphere(p, &a);
    drop(conn);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.json()["error"]["kind"], "registry-busy");
    assert!(r.stderr.contains("locked by another program"), "{r:?}");
    assert!(t0.elapsed().as_secs() < 60);
    assert_eq!(keep(snapshot(p)), before);
}

/// Class 8: trust is shown only where it was checked; the format's rules hold.
#[test]
fn class8_trust_is_shown_only_where_checked() {
    let d = setup();
    let p = d.path();
    let r = bluesphere(p, &["inspect", "p.bsp"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("signature not checked"), "{}", r.stdout);
    assert!(!r.stdout.contains("signed by"), "{}", r.stdout);
    let r = bluesphere(p, &["--json", "inspect", "p.bsp"]);
    assert_eq!(r.json()["signature"], "not-checked");
    let r = bluesphere(p, &["--json", "inspect", "p.bsp", "--pub", "k.pub.pem"]);
    assert_eq!(r.json()["signature"], "valid", "{r:?}");
    // Another key: inspect with it says so.
    assert_eq!(bluesphere(p, &["keygen", "-q", "-o", "other.pem"]).code, 0);
    refused(
        p,
        &["inspect", "p.bsp", "--pub", "other.pub.pem"],
        4,
        "unknown-key",
        &["key"],
    );
    // apply without a key writes nothing unless told to.
    refused(
        p,
        &["apply", "p.bsp", "--old", "old.bin", "-o", "out.bin"],
        2,
        "usage",
        &["--pub"],
    );
    let r = bluesphere(
        p,
        &[
            "--json",
            "apply",
            "p.bsp",
            "--old",
            "old.bin",
            "-o",
            "out.bin",
            "--unverified",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["signature_checked"], false);
}

/// Class 9: hostile sizes and foreign keys give clear errors, never a panic.
#[test]
fn class9_vague_errors_and_panics() {
    let d = setup();
    let p = d.path();
    refused(
        p,
        &[
            "push",
            "p.bsp",
            "--port",
            "/dev/null",
            "--reconnect-for",
            "99999999999999999",
        ],
        2,
        "usage",
        &["at most"],
    );
    for (args, name, words) in [
        (
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:1024",
            ],
            "rsa.pem",
            "an RSA",
        ),
        (
            vec!["genpkey", "-algorithm", "ED25519"],
            "ed.pem",
            "an Ed25519",
        ),
        (
            vec!["ecparam", "-name", "secp384r1", "-genkey", "-noout"],
            "p384.pem",
            "a P-384",
        ),
    ] {
        let mut a = args.clone();
        a.extend(["-out", name]);
        assert_eq!(run(p, "openssl", &a).code, 0, "{a:?}");
        let mut pk = pack_args("new.bin");
        pk[4] = name;
        refused(p, &pk, 6, "key", &[words, "P-256"]);
    }
    assert_eq!(
        run(
            p,
            "openssl",
            &["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub"]
        )
        .code,
        0
    );
    refused(
        p,
        &["verify", "p.bsp", "--pub", "rsa.pub"],
        6,
        "key",
        &["an RSA public key"],
    );
    // An empty passphrase protects nothing.
    let before = snapshot(p);
    let r = std::process::Command::new(bluesphere_tests::bin("bluesphere"))
        .args([
            "--json",
            "keygen",
            "-o",
            "e.pem",
            "--encrypt",
            "--passphrase-env",
            "EMPTY_PASS",
        ])
        .env("EMPTY_PASS", "")
        .current_dir(p)
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&r.stdout).contains("empty passphrase"));
    assert_eq!(snapshot(p), before);
    // A package whose payload is already damaged is refused before any port is opened.
    let mut pkg = fs::read(p.join("p.bsp")).unwrap();
    let n = pkg.len();
    pkg[n - 10] ^= 0x55;
    fs::write(p.join("bad.bsp"), &pkg).unwrap();
    refused(
        p,
        &["push", "bad.bsp", "--port", "/dev/no-such-port"],
        3,
        "corrupt",
        &["bad.bsp"],
    );
}

/// The folder a test works in is the only place it writes.
#[test]
fn helpers_see_every_change() {
    let d = tempfile::tempdir().unwrap();
    let p: &Path = d.path();
    fs::create_dir(p.join("sub")).unwrap();
    let a = snapshot(p);
    fs::write(p.join("sub/x"), "1").unwrap();
    assert_ne!(snapshot(p), a);
}

/// Run `bluesphere-device --json --flash DIR/dev ARGS` and check that it failed with `code`,
/// `kind` and `words`, and that nothing under `DIR` changed.
fn device_refused(dir: &Path, args: &[&str], code: i32, kind: &str, words: &[&str]) {
    let before = snapshot(dir);
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let r = bluesphere_tests::device(dir, &a);
    assert_eq!(r.code, code, "{args:?}: {r:?}");
    let j = r.json();
    assert_eq!(j["error"]["kind"], kind, "{args:?}: {r:?}");
    let m = j["error"]["message"].as_str().unwrap_or("");
    for w in words {
        assert!(m.contains(w), "{args:?}: {w:?} not in {m}");
    }
    assert_eq!(snapshot(dir), before, "{args:?} changed a file");
}

/// A virtual device (`DIR/dev`) with the old image, trusting `k.pub.pem`.
fn device_with_old(p: &Path, mode: &str) {
    let r = bluesphere_tests::device(
        p,
        &[
            "init",
            "--product",
            "generic",
            "--hardware",
            "any",
            "--key",
            "k.pub.pem",
            "--image",
            "old.bin",
            "--version",
            "1.0.0",
            "--mode",
            mode,
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
}

/// Class 1: a device is one process at a time.
#[test]
fn class1_one_process_per_device() {
    let d = setup();
    let p = d.path();
    device_with_old(p, "swap");
    let cable = bluesphere_tests::PtyCable::new();
    let serve = || {
        std::process::Command::new(bluesphere_tests::bin("bluesphere-device"))
            .arg("--flash")
            .arg(p.join("dev"))
            .args(["serve", "--port", &cable.device])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut serving = serve();
    // Wait until the server holds the device. The `status` probes hold it for a moment
    // too: a server starting during one is refused as busy (the rule under test) and
    // exits, and is then started again.
    let t0 = std::time::Instant::now();
    while bluesphere_tests::device(p, &["status"]).code == 0 {
        assert!(t0.elapsed().as_secs() < 20, "serve never took the device");
        if serving.try_wait().unwrap().is_some() {
            serving = serve();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pkg = p.join("p.bsp");
    for a in [
        vec!["install", pkg.to_str().unwrap()],
        vec!["boot"],
        vec!["confirm"],
        vec!["status"],
    ] {
        device_refused(
            p,
            &a,
            7,
            "device-busy",
            &["device busy", "one process at a time"],
        );
    }
    serving.kill().unwrap();
    serving.wait().unwrap();
    // The lock goes with the process (also on kill -9).
    let r = bluesphere_tests::device(p, &["--json", "status"]);
    assert_eq!(r.code, 0, "{r:?}");
}

/// Class 2: the device checks the image it runs; a failed init leaves nothing.
#[test]
fn class2_no_device_boots_an_image_it_has_not_checked() {
    let d = setup();
    let p = d.path();
    let flip = |slot_start: u64| {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(p.join("dev/flash.bin"))
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, slot_start + 1000).unwrap();
        b[0] ^= 0x04;
        f.write_all_at(&b, slot_start + 1000).unwrap();
    };
    for mode in ["swap", "ab"] {
        let _ = fs::remove_dir_all(p.join("dev"));
        device_with_old(p, mode);
        // Only the factory image, damaged: status says so, nothing boots, a delta is refused.
        flip(0);
        let s = bluesphere_tests::device(p, &["--json", "status"]).json();
        assert_eq!(s["running"]["intact"], false, "{s}");
        device_refused(
            p,
            &["boot"],
            7,
            "no-valid-image",
            &["no valid image", "full image"],
        );
        let pkg = p.join("p.bsp");
        device_refused(
            p,
            &["install", pkg.to_str().unwrap()],
            5,
            "installed-corrupt",
            &["full image"],
        );
        flip(0);
        // Updated and confirmed: the old image stays in the other slot. Damage the running
        // one: boot falls back to the old image and says so.
        let r = bluesphere_tests::device(p, &["install", pkg.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{mode}: {r:?}");
        assert_eq!(bluesphere_tests::device(p, &["boot"]).code, 0);
        assert_eq!(bluesphere_tests::device(p, &["confirm"]).code, 0);
        let s = bluesphere_tests::device(p, &["--json", "status"]).json();
        assert_eq!(s["running"]["version"], "1.1.0");
        let dev_json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(p.join("dev/device.json")).unwrap()).unwrap();
        let running_start = if mode == "ab" {
            dev_json["slot_size"].as_u64().unwrap()
        } else {
            0
        };
        flip(running_start);
        let r = bluesphere_tests::device(p, &["--json", "boot"]);
        assert_eq!(r.code, 0, "{mode}: {r:?}");
        let b = r.json();
        assert!(b["fell_back_from"].is_u64(), "{mode}: {b}");
        assert_eq!(b["running"]["version"], "1.0.0", "{mode}: {b}");
        assert_eq!(b["running"]["intact"], true, "{mode}: {b}");
        let r = bluesphere_tests::device(p, &["boot"]);
        assert!(r.stdout.contains("booted"), "{r:?}");
    }
    // A failed init leaves nothing behind: slot smaller than the image, hostile sizes.
    let _ = fs::remove_dir_all(p.join("dev"));
    let init = |extra: &[&'static str]| {
        let mut v = vec![
            "init",
            "--product",
            "generic",
            "--hardware",
            "any",
            "--key",
            "k.pub.pem",
            "--image",
            "old.bin",
            "--version",
            "1.0.0",
        ];
        v.extend_from_slice(extra);
        v
    };
    device_refused(
        p,
        &init(&["--slot-size", "8192"]),
        2,
        "usage",
        &["does not fit"],
    );
    device_refused(
        p,
        &init(&["--slot-size", "2147483648"]),
        2,
        "usage",
        &["at most"],
    );
    device_refused(
        p,
        &init(&["--slot-size", "1000"]),
        2,
        "usage",
        &["multiple of 4096"],
    );
    assert!(!p.join("dev").exists());
}

/// Class 9 (device side): keys, outputs and exit codes that say what happened.
#[test]
fn class9_device_errors_say_what_happened() {
    let d = setup();
    let p = d.path();
    let init = |key: &'static str| {
        vec![
            "init",
            "--product",
            "generic",
            "--hardware",
            "any",
            "--key",
            key,
            "--image",
            "old.bin",
            "--version",
            "1.0.0",
        ]
    };
    // A private key is never copied into the device.
    device_refused(p, &init("k.pem"), 6, "key", &["private key", "public keys"]);
    assert!(!p.join("dev").exists());
    device_refused(p, &["status"], 7, "no-device", &["no device"]);
    device_with_old(p, "swap");
    device_refused(
        p,
        &[
            "read-image",
            "-o",
            p.join("dev/flash.bin").to_str().unwrap(),
        ],
        2,
        "output-conflict",
        &["flash.bin"],
    );
    device_refused(p, &["confirm"], 7, "wrong-phase", &["idle"]);
    fs::write(p.join("junk.bsp"), b"BSPK junk").unwrap();
    let junk = p.join("junk.bsp");
    device_refused(
        p,
        &["install", junk.to_str().unwrap()],
        3,
        "bad-package",
        &["junk.bsp"],
    );
}
