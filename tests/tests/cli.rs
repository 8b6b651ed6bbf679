//! The `bluesphere` CLI end to end: real files, real OpenSSL, documented exit codes, and no
//! half-written output after any failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use bluesphere_core::testkit::{evolve, firmware, to_ihex};
use bluesphere_tests::{bluesphere, run, snapshot};
use std::fs;
use std::path::Path;

struct Fixture {
    dir: tempfile::TempDir,
    old: Vec<u8>,
    new: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let old = firmware(42, 96 * 1024);
    let new = evolve(&old, 42);
    fs::write(dir.path().join("old.bin"), &old).unwrap();
    fs::write(dir.path().join("new.bin"), &new).unwrap();
    let r = bluesphere(dir.path(), &["keygen", "-o", "k.pem"]);
    assert_eq!(r.code, 0, "{r:?}");
    Fixture { dir, old, new }
}

impl Fixture {
    fn p(&self) -> &Path {
        self.dir.path()
    }
    fn pack(&self, extra: &[&str]) -> i32 {
        let mut a = vec![
            "pack",
            "--old",
            "old.bin",
            "--new",
            "new.bin",
            "--key",
            "k.pem",
            "-o",
            "p.bsp",
            "--product",
            "thermo",
            "--hardware",
            "revB",
            "--from-version",
            "1.0.0",
            "--version",
            "1.1.0",
            "--counter",
            "3",
        ];
        a.extend_from_slice(extra);
        let r = bluesphere(self.p(), &a);
        assert_eq!(r.code, 0, "{r:?}");
        r.code
    }
    fn no_stray_files(&self) {
        for e in fs::read_dir(self.p()).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !n.starts_with(".bluesphere-"),
                "temporary file {n} left behind"
            );
        }
    }
}

fn err_kind(r: &bluesphere_tests::Run) -> String {
    r.json()["error"]["kind"].as_str().unwrap_or("").to_string()
}

#[test]
fn pack_inspect_verify_apply() {
    let f = fixture();
    f.pack(&["--depends", "boot>=2.1.0"]);
    let info = bluesphere(f.p(), &["--json", "inspect", "p.bsp"]).json();
    let c = &info["components"][0];
    assert_eq!(info["product_id"], "thermo");
    assert_eq!(c["kind"], "delta");
    assert_eq!(c["from_version"], "1.0.0");
    assert_eq!(c["to_version"], "1.1.0");
    assert_eq!(c["security_counter"], 3);
    assert_eq!(c["dependencies"][0][0], "boot");
    assert_eq!(c["target_size"], f.new.len());
    let ratio = c["ratio"].as_f64().unwrap();
    assert!(ratio < 0.10, "delta is {ratio} of the image");

    let v = bluesphere(
        f.p(),
        &[
            "--json",
            "verify",
            "p.bsp",
            "--pub",
            "k.pub.pem",
            "--old",
            "old.bin",
        ],
    );
    assert_eq!(v.code, 0, "{v:?}");
    assert_eq!(v.json()["base"]["matches"], true);

    let a = bluesphere(
        f.p(),
        &[
            "--json",
            "apply",
            "p.bsp",
            "--old",
            "old.bin",
            "-o",
            "out.bin",
            "--pub",
            "k.pub.pem",
        ],
    );
    assert_eq!(a.code, 0, "{a:?}");
    assert_eq!(fs::read(f.p().join("out.bin")).unwrap(), f.new);
    assert_eq!(a.json()["signature_checked"], true);

    // Human output too.
    let t = bluesphere(f.p(), &["inspect", "p.bsp"]);
    assert!(
        t.stdout.contains("component main: Delta 1.0.0 -> 1.1.0"),
        "{}",
        t.stdout
    );
    f.no_stray_files();
}

#[test]
fn full_image_package() {
    let f = fixture();
    let r = bluesphere(
        f.p(),
        &[
            "pack",
            "--new",
            "new.bin",
            "--key",
            "k.pem",
            "-o",
            "full.bsp",
            "--profile",
            "small",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = bluesphere(
        f.p(),
        &["apply", "full.bsp", "-o", "out.bin", "--pub", "k.pub.pem"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(fs::read(f.p().join("out.bin")).unwrap(), f.new);
}

#[test]
fn intel_hex_input_keeps_the_base_address() {
    let f = fixture();
    fs::write(f.p().join("old.hex"), to_ihex(&f.old, 0x0800_0000)).unwrap();
    fs::write(f.p().join("new.hex"), to_ihex(&f.new, 0x0800_0000)).unwrap();
    let r = bluesphere(
        f.p(),
        &[
            "pack", "--old", "old.hex", "--new", "new.hex", "--key", "k.pem", "-o", "h.bsp",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let info = bluesphere(f.p(), &["--json", "inspect", "h.bsp"]).json();
    assert_eq!(info["components"][0]["load_address"], 0x0800_0000u64);
    // The HEX and the BIN of the same image are the same base.
    let r = bluesphere(
        f.p(),
        &[
            "apply",
            "h.bsp",
            "--old",
            "old.bin",
            "-o",
            "out.bin",
            "--unverified",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(fs::read(f.p().join("out.bin")).unwrap(), f.new);
    // A broken HEX names its line.
    let mut hex = to_ihex(&f.old, 0).into_bytes();
    let second_line = hex.iter().position(|&b| b == b'\n').unwrap() + 1;
    hex[second_line + 12] = if hex[second_line + 12] == b'0' {
        b'1'
    } else {
        b'0'
    };
    fs::write(f.p().join("bad.hex"), hex).unwrap();
    let r = bluesphere(
        f.p(),
        &["pack", "--new", "bad.hex", "--key", "k.pem", "-o", "x.bsp"],
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
    assert!(!f.p().join("x.bsp").exists());
}

/// Our signature verifies with `openssl dgst -verify`; OpenSSL keys (SEC1 and PKCS#8,
/// plain and encrypted) sign packages that we verify; OpenSSL reads our key files.
#[test]
fn openssl_interoperates_both_ways() {
    let f = fixture();
    let p = f.p();
    f.pack(&[]);
    // Ours -> OpenSSL: export the signed region and a DER signature, verify with openssl.
    let pkg = fs::read(p.join("p.bsp")).unwrap();
    let parsed = bluesphere_core::package::Package::parse(&pkg).unwrap();
    fs::write(p.join("region.bin"), parsed.signed_region()).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(parsed.signature()).unwrap();
    fs::write(p.join("sig.der"), sig.to_der().as_bytes()).unwrap();
    let r = run(
        p,
        "openssl",
        &[
            "dgst",
            "-sha256",
            "-verify",
            "k.pub.pem",
            "-signature",
            "sig.der",
            "region.bin",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Verified OK"), "{r:?}");
    // OpenSSL reads our private and public keys.
    assert_eq!(
        run(p, "openssl", &["pkey", "-in", "k.pem", "-noout"]).code,
        0
    );
    assert_eq!(
        run(
            p,
            "openssl",
            &["pkey", "-pubin", "-in", "k.pub.pem", "-noout"]
        )
        .code,
        0
    );
    let r = bluesphere(p, &["keygen", "-o", "enc.pem", "--passphrase-env", "PW"]);
    assert_eq!(r.code, 6, "no PW variable: {r:?}");
    let r = std::process::Command::new(bluesphere_tests::bin("bluesphere"))
        .args([
            "keygen",
            "-o",
            "enc.pem",
            "--encrypt",
            "--passphrase-env",
            "PW",
        ])
        .env("PW", "s3cret")
        .current_dir(p)
        .output()
        .unwrap();
    assert!(r.status.success());
    let r = run(
        p,
        "openssl",
        &["pkey", "-in", "enc.pem", "-passin", "pass:s3cret", "-noout"],
    );
    assert_eq!(r.code, 0, "openssl cannot read our encrypted key: {r:?}");

    // OpenSSL -> ours.
    let mk = [
        (
            "sec1.pem",
            vec![
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-out",
                "sec1.pem",
            ],
        ),
        (
            "p8.pem",
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "p8.pem",
            ],
        ),
        (
            "p8enc.pem",
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-aes256",
                "-pass",
                "pass:pw",
                "-out",
                "p8enc.pem",
            ],
        ),
    ];
    for (name, args) in mk {
        let r = run(p, "openssl", &args);
        assert_eq!(r.code, 0, "{r:?}");
        let pass_args: Vec<&str> = if name == "p8enc.pem" {
            fs::write(p.join("pw.txt"), "pw\n").unwrap();
            vec!["--passphrase-file", "pw.txt"]
        } else {
            vec![]
        };
        let pubname = format!("{name}.pub");
        let r = run(
            p,
            "openssl",
            &[
                "pkey", "-in", name, "-passin", "pass:pw", "-pubout", "-out", &pubname,
            ],
        );
        assert_eq!(r.code, 0, "{r:?}");
        let mut a = vec![
            "pack", "--old", "old.bin", "--new", "new.bin", "--key", name, "-o", "o.bsp",
        ];
        a.extend(pass_args);
        let r = bluesphere(p, &a);
        assert_eq!(r.code, 0, "{name}: {r:?}");
        let r = bluesphere(p, &["verify", "o.bsp", "--pub", &pubname]);
        assert_eq!(r.code, 0, "{name}: {r:?}");
    }
}

#[test]
fn bad_inputs_fail_clearly_and_write_nothing() {
    let f = fixture();
    let p = f.p();
    f.pack(&[]);
    let pkg = fs::read(p.join("p.bsp")).unwrap();

    let check = |args: &[&str], code: i32, kind: &str, needle: &str| {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let r = bluesphere(p, &a);
        assert_eq!(r.code, code, "{args:?}: {r:?}");
        assert_eq!(err_kind(&r), kind, "{args:?}: {r:?}");
        assert!(
            r.stderr.contains(needle),
            "{args:?}: stderr lacks {needle:?}: {}",
            r.stderr
        );
        assert!(!p.join("out.bin").exists(), "{args:?} left an output file");
    };

    fs::write(p.join("trunc.bsp"), &pkg[..pkg.len() / 2]).unwrap();
    check(
        &[
            "apply",
            "trunc.bsp",
            "--old",
            "old.bin",
            "-o",
            "out.bin",
            "--unverified",
        ],
        3,
        "truncated",
        "truncated",
    );

    let mut flip = pkg.clone();
    flip[16 + 7 + 5] ^= 4; // after "thermo", "revB": the creation time, structurally valid; only the signature catches it
    fs::write(p.join("flip.bsp"), &flip).unwrap();
    check(
        &[
            "apply",
            "flip.bsp",
            "--old",
            "old.bin",
            "-o",
            "out.bin",
            "--pub",
            "k.pub.pem",
        ],
        4,
        "bad-signature",
        "signature is invalid",
    );

    let mut pflip = pkg.clone();
    let n = pflip.len();
    pflip[n - 10] ^= 4;
    fs::write(p.join("pflip.bsp"), &pflip).unwrap();
    check(
        &[
            "apply",
            "pflip.bsp",
            "--old",
            "old.bin",
            "-o",
            "out.bin",
            "--unverified",
        ],
        3,
        "corrupt",
        "CRC-32 mismatch",
    );

    let mut huge = pkg.clone();
    huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes()); // payload area: 4 GiB
    fs::write(p.join("huge.bsp"), &huge).unwrap();
    check(&["inspect", "huge.bsp"], 3, "truncated", "needs 4294");

    check(
        &["inspect", "old.bin"],
        3,
        "not-a-package",
        "not a BlueSphere package",
    );

    let r = bluesphere(p, &["keygen", "-o", "other.pem"]);
    assert_eq!(r.code, 0);
    check(
        &["verify", "p.bsp", "--pub", "other.pub.pem"],
        4,
        "unknown-key",
        "unknown key",
    );

    check(
        &[
            "apply",
            "p.bsp",
            "--old",
            "new.bin",
            "-o",
            "out.bin",
            "--unverified",
        ],
        5,
        "wrong-base",
        "expects version 1.0.0",
    );
    check(
        &["apply", "p.bsp", "-o", "out.bin", "--unverified"],
        5,
        "need-base",
        "--old",
    );
    check(
        &[
            "apply",
            "p.bsp",
            "--old",
            "old.bin",
            "-o",
            "out.bin",
            "--hardware",
            "revC",
            "--unverified",
        ],
        5,
        "wrong-hardware",
        "revB",
    );
    check(
        &[
            "verify",
            "p.bsp",
            "--pub",
            "k.pub.pem",
            "--product",
            "kettle",
        ],
        5,
        "wrong-product",
        "thermo",
    );
    check(
        &["pack", "--new", "k.pem", "--key", "k.pem", "-o", "out.bin"],
        3,
        "invalid-input",
        "PEM",
    );
    fs::write(p.join("empty.bin"), b"").unwrap();
    check(
        &[
            "pack",
            "--new",
            "empty.bin",
            "--key",
            "k.pem",
            "-o",
            "out.bin",
        ],
        3,
        "invalid-input",
        "empty",
    );
    check(
        &[
            "pack", "--new", "new.bin", "--key", "old.bin", "-o", "out.bin",
        ],
        6,
        "key",
        "PEM",
    );
    check(
        &[
            "pack",
            "--new",
            "new.bin",
            "--key",
            "k.pub.pem",
            "-o",
            "out.bin",
        ],
        6,
        "key",
        "public key",
    );
    check(
        &[
            "pack",
            "--new",
            "new.bin",
            "--key",
            "missing.pem",
            "-o",
            "out.bin",
        ],
        1,
        "io",
        "cannot read missing.pem",
    );
    check(
        &[
            "pack",
            "--new",
            "new.bin",
            "--key",
            "k.pem",
            "-o",
            "out.bin",
            "--version",
            "1.2",
        ],
        2,
        "usage",
        "semantic version",
    );

    // Wrong passphrase.
    let r = std::process::Command::new(bluesphere_tests::bin("bluesphere"))
        .args([
            "keygen",
            "-o",
            "e.pem",
            "--encrypt",
            "--passphrase-env",
            "PW",
        ])
        .env("PW", "right")
        .current_dir(p)
        .output()
        .unwrap();
    assert!(r.status.success());
    fs::write(p.join("wrong.txt"), "wrong\n").unwrap();
    check(
        &[
            "pack",
            "--new",
            "new.bin",
            "--key",
            "e.pem",
            "--passphrase-file",
            "wrong.txt",
            "-o",
            "out.bin",
        ],
        6,
        "key",
        "wrong passphrase",
    );

    // A failed apply leaves an existing output untouched.
    fs::write(p.join("keep.bin"), b"precious").unwrap();
    let r = bluesphere(
        p,
        &[
            "apply",
            "p.bsp",
            "--old",
            "new.bin",
            "-o",
            "keep.bin",
            "--unverified",
        ],
    );
    assert_eq!(r.code, 5);
    assert_eq!(fs::read(p.join("keep.bin")).unwrap(), b"precious");
    // keygen never overwrites a key by accident.
    let r = bluesphere(p, &["keygen", "-o", "k.pem"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("refusing to overwrite"), "{}", r.stderr);
    f.no_stray_files();
}

/// An ELF with nothing to flash (kernel modules, GPU firmware files) is refused as an image;
/// `--format bin` packs the file's bytes as they are.
#[test]
fn elf_without_loadable_segments_needs_format_bin() {
    let f = fixture();
    let p = f.p();
    let mut old = b"\x7FELF\x02\x01\x01\x00".to_vec();
    old.extend_from_slice(&f.old);
    let mut new = b"\x7FELF\x02\x01\x01\x00".to_vec();
    new.extend_from_slice(&f.new);
    fs::write(p.join("old.elf"), &old).unwrap();
    fs::write(p.join("new.elf"), &new).unwrap();
    let r = bluesphere(
        p,
        &[
            "--json", "pack", "--old", "old.elf", "--new", "new.elf", "--key", "k.pem", "-o",
            "e.bsp",
        ],
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(r.json()["error"]["kind"], "invalid-input");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ELF"),
        "{r:?}"
    );
    assert!(!p.join("e.bsp").exists());
    let r = bluesphere(
        p,
        &[
            "pack", "--old", "old.elf", "--new", "new.elf", "--key", "k.pem", "-o", "e.bsp",
            "--format", "bin",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = bluesphere(
        p,
        &[
            "apply",
            "e.bsp",
            "--old",
            "old.elf",
            "-o",
            "out.elf",
            "--format",
            "bin",
            "--pub",
            "k.pub.pem",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(fs::read(p.join("out.elf")).unwrap(), new);
}

/// Outputs that would replace an input, outputs that are devices, inputs that are devices,
/// and argument errors in `--json` mode: the documented exit code and kind, and no file
/// changed.
#[test]
fn outputs_never_replace_inputs_and_devices_are_refused() {
    let f = fixture();
    let p = f.p();
    f.pack(&[]);
    let before = snapshot(p);
    let check = |args: &[&str], code: i32, kind: &str, needle: &str| {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let r = bluesphere(p, &a);
        assert_eq!(r.code, code, "{args:?}: {r:?}");
        assert_eq!(err_kind(&r), kind, "{args:?}: {r:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert_eq!(snapshot(p), before, "{args:?} changed a file");
    };
    let pack = |out: &'static str| {
        vec![
            "pack", "--old", "old.bin", "--new", "new.bin", "--key", "k.pem", "-o", out,
        ]
    };
    for out in ["old.bin", "new.bin", "k.pem", "./old.bin"] {
        check(&pack(out), 2, "output-conflict", "is the input");
    }
    check(
        &pack("/dev/null"),
        2,
        "output-conflict",
        "not a regular file",
    );
    check(
        &[
            "apply",
            "p.bsp",
            "--old",
            "old.bin",
            "-o",
            "p.bsp",
            "--unverified",
        ],
        2,
        "output-conflict",
        "is the input",
    );
    check(
        &["inspect", "/dev/zero"],
        3,
        "invalid-input",
        "not a regular file",
    );
    check(&["pack", "--nope"], 2, "usage", "unexpected argument");
    check(
        &[
            "pack",
            "--new",
            "new.bin",
            "--key",
            "k.pem",
            "-o",
            "x.bsp",
            "--block-kib",
            "3",
        ],
        2,
        "usage",
        "power of two",
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}

/// `rehearse`: power cuts on simulated flash, every one survived; a package the device would
/// refuse is said so before any cut.
#[test]
fn rehearse_survives_power_cuts_and_refuses_a_wrong_base() {
    let f = fixture();
    f.pack(&[]);
    let p = f.p();
    let r = bluesphere(
        p,
        &[
            "--json",
            "rehearse",
            "p.bsp",
            "--old",
            "old.bin",
            "--pub",
            "k.pub.pem",
            "--cuts",
            "30",
            "--seed",
            "4",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["survived"], 30, "{j}");
    assert_eq!(j["ok"], true);
    assert!(j["flash_ops"].as_u64().unwrap() > 30, "{j}");
    assert_eq!(
        j["old_kept"].as_u64().unwrap() + j["new_installed"].as_u64().unwrap(),
        30
    );
    let before = snapshot(p);
    let r = bluesphere(
        p,
        &[
            "--json",
            "rehearse",
            "p.bsp",
            "--old",
            "new.bin",
            "--pub",
            "k.pub.pem",
            "--cuts",
            "3",
        ],
    );
    assert_eq!(r.code, 5, "{r:?}");
    assert_eq!(err_kind(&r), "refused");
    assert!(r.stdout.contains("base image"), "{r:?}");
    assert_eq!(snapshot(p), before);
}

/// A release manifest makes one package of several components (a delta for the main MCU
/// with the best profile, a full image for a module with the small one), with paths relative
/// to the manifest; every component inspects, verifies and applies; a bad manifest is a
/// clear usage error and writes nothing.
#[test]
fn release_manifest_packs_several_components() {
    let f = fixture();
    let p = f.p();
    fs::create_dir_all(p.join("rel")).unwrap();
    let ble = firmware(7, 20 * 1024);
    fs::write(p.join("rel/ble-2.0.0.bin"), &ble).unwrap();
    fs::write(
        p.join("rel/release.toml"),
        r#"product = "thermo"
hardware = "revB"
key = "../k.pem"
out = "release.bsp"

[[component]]
name = "main"
old = "../old.bin"
new = "../new.bin"
from = "1.0.0"
to = "1.1.0"
counter = 3
depends = ["ble>=2.0.0"]

[[component]]
name = "ble"
new = "ble-2.0.0.bin"
to = "2.0.0"
profile = "small"
load_address = 0x1000
"#,
    )
    .unwrap();
    let r = bluesphere(p, &["--json", "pack", "--manifest", "rel/release.toml"]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["components"][0]["name"], "main");
    assert_eq!(j["components"][0]["kind"], "delta");
    assert_eq!(j["components"][0]["profile"], "best");
    assert_eq!(j["components"][1]["name"], "ble");
    assert_eq!(j["components"][1]["kind"], "full");
    assert_eq!(j["components"][1]["profile"], "small");
    assert!(p.join("rel/release.bsp").exists());

    let info = bluesphere(
        p,
        &["--json", "inspect", "rel/release.bsp", "--pub", "k.pub.pem"],
    )
    .json();
    assert_eq!(info["components"].as_array().unwrap().len(), 2);
    assert_eq!(info["components"][0]["dependencies"][0][0], "ble");
    assert_eq!(info["components"][1]["load_address"], 0x1000);
    let v = bluesphere(
        p,
        &[
            "--json",
            "verify",
            "rel/release.bsp",
            "--pub",
            "k.pub.pem",
            "--old",
            "old.bin",
            "--component",
            "main",
        ],
    );
    assert_eq!(v.code, 0, "{v:?}");
    for (comp, old, want) in [("main", Some("old.bin"), &f.new), ("ble", None, &ble)] {
        let mut a = vec![
            "apply",
            "rel/release.bsp",
            "--component",
            comp,
            "-o",
            "out.bin",
            "--pub",
            "k.pub.pem",
        ];
        if let Some(o) = old {
            a.extend_from_slice(&["--old", o]);
        }
        let r = bluesphere(p, &a);
        assert_eq!(r.code, 0, "{comp}: {r:?}");
        assert_eq!(&fs::read(p.join("out.bin")).unwrap(), want, "{comp}");
    }
    // `apply --all`: every image into a folder, the delta's base given by component.
    let r = bluesphere(
        p,
        &[
            "--json",
            "apply",
            "rel/release.bsp",
            "--all",
            "-o",
            "images",
            "--old-of",
            "main=old.bin",
            "--pub",
            "k.pub.pem",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["images"][1]["component"], "ble");
    assert_eq!(fs::read(p.join("images/main.bin")).unwrap(), f.new);
    assert_eq!(fs::read(p.join("images/ble.bin")).unwrap(), ble);
    // Without the main component's base nothing at all is written (not even ble.bin).
    let r = bluesphere(
        p,
        &[
            "--json",
            "apply",
            "rel/release.bsp",
            "--all",
            "-o",
            "partial",
            "--pub",
            "k.pub.pem",
        ],
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(!p.join("partial").exists(), "{r:?}");
    // A package whose component is named like a path cannot write outside the folder.
    fs::write(
        p.join("rel/evil.toml"),
        "product = \"t\"\nhardware = \"h\"\n[[component]]\nname = \"../escape\"\nnew = \"ble-2.0.0.bin\"\nto = \"1.0.0\"\n",
    )
    .unwrap();
    let r = bluesphere(
        p,
        &[
            "pack",
            "--manifest",
            "rel/evil.toml",
            "--key",
            "k.pem",
            "-o",
            "evil.bsp",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    bluesphere_tests::refused(
        p,
        &[
            "apply",
            "evil.bsp",
            "--all",
            "-o",
            "images",
            "--pub",
            "k.pub.pem",
        ],
        3,
        "invalid-input",
        &["cannot be a file name", "--component"],
    );
    assert!(!p.join("escape.bin").exists());

    // `-o` overrides the manifest's `out`; the text names every component.
    let t = bluesphere(
        p,
        &["pack", "--manifest", "rel/release.toml", "-o", "two.bsp"],
    );
    assert_eq!(t.code, 0, "{t:?}");
    assert!(
        t.stdout.contains("2 components") && t.stdout.contains("ble 2.0.0 (full, small profile)"),
        "{}",
        t.stdout
    );

    // Bad manifests: a misspelt field (with its line), `old` without `from`, no components,
    // an output that names an input, and the single-image options beside --manifest.
    let bad = |name: &str, text: &str| fs::write(p.join("rel").join(name), text).unwrap();
    bad(
        "typo.toml",
        "product = \"thermo\"\nhardware = \"revB\"\nkey = \"../k.pem\"\n\n[[component]]\nname = \"main\"\nnew = \"../new.bin\"\nto = \"1.1.0\"\nprofil = \"small\"\n",
    );
    bluesphere_tests::refused(
        p,
        &["pack", "--manifest", "rel/typo.toml", "-o", "x.bsp"],
        2,
        "usage",
        &["profil", "line 9"],
    );
    bad(
        "nofrom.toml",
        "product = \"t\"\nhardware = \"h\"\n[[component]]\nname = \"main\"\nold = \"../old.bin\"\nnew = \"../new.bin\"\nto = \"1.1.0\"\n",
    );
    bluesphere_tests::refused(
        p,
        &[
            "pack",
            "--manifest",
            "rel/nofrom.toml",
            "--key",
            "k.pem",
            "-o",
            "x.bsp",
        ],
        2,
        "usage",
        &["`old` and `from` go together"],
    );
    bad("empty.toml", "product = \"t\"\nhardware = \"h\"\n");
    bluesphere_tests::refused(
        p,
        &[
            "pack",
            "--manifest",
            "rel/empty.toml",
            "--key",
            "k.pem",
            "-o",
            "x.bsp",
        ],
        2,
        "usage",
        &["no [[component]]"],
    );
    bluesphere_tests::refused(
        p,
        &[
            "pack",
            "--manifest",
            "rel/release.toml",
            "-o",
            "rel/ble-2.0.0.bin",
        ],
        2,
        "output-conflict",
        &["ble-2.0.0.bin"],
    );
    let r = bluesphere(
        p,
        &[
            "--json",
            "pack",
            "--manifest",
            "rel/release.toml",
            "--new",
            "new.bin",
        ],
    );
    assert_eq!(r.code, 2, "{r:?}");
    f.no_stray_files();
}

/// A computer without Bluetooth (this one and CI's: no adapter, no BlueZ) gets a clear
/// message from `scan` and what to do, never a crash; with an adapter the scan runs.
#[test]
fn scan_says_when_there_is_no_bluetooth() {
    let f = fixture();
    let p = f.p();
    let r = bluesphere(p, &["--json", "scan", "--timeout", "1"]);
    let has_adapter = bluesphere_tests::has_bluetooth_adapter();
    if has_adapter {
        let kind = r.json()["error"]["kind"].clone();
        assert!(r.code == 0 || kind == "bluetooth-off", "{r:?}");
    } else {
        assert_eq!(r.code, 7, "{r:?}");
        let j = r.json();
        assert_eq!(j["error"]["kind"], "no-bluetooth", "{j}");
        assert!(
            j["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Bluetooth is not available"),
            "{j}"
        );
        assert!(
            j["error"]["hint"].as_str().unwrap().contains("USB-serial"),
            "{j}"
        );
        let t = bluesphere(p, &["scan", "--timeout", "1"]);
        assert_eq!(t.code, 7);
        assert!(t.stderr.contains("Bluetooth is not available"), "{t:?}");
        assert!(!t.stderr.contains("panicked"), "{t:?}");
    }
    let u = bluesphere(p, &["scan", "--timeout", "-1"]);
    assert_eq!(u.code, 2, "{u:?}");
}

/// `info` and `push` take a serial port or a Bluetooth LE device, exactly one; without
/// Bluetooth they say so (exit 7) and nothing is written.
#[test]
fn info_and_push_over_ble_say_when_there_is_no_bluetooth() {
    let f = fixture();
    let p = f.p();
    let none = bluesphere(p, &["--json", "info"]);
    assert_eq!(none.code, 2, "{none:?}");
    let both = bluesphere(
        p,
        &["info", "--port", "/dev/null", "--ble", "AA:BB:CC:DD:EE:FF"],
    );
    assert_eq!(both.code, 2, "{both:?}");
    let has_adapter = bluesphere_tests::has_bluetooth_adapter();
    if has_adapter {
        return;
    }
    for args in [
        &["--json", "info", "--ble", "AA:BB:CC:DD:EE:FF"][..],
        &[
            "--json",
            "push",
            "nothing.bsp",
            "--ble",
            "AA:BB:CC:DD:EE:FF",
        ][..],
    ] {
        let r = bluesphere(p, args);
        let j = r.json();
        // push checks the package first: a missing file is a usage/io error before Bluetooth.
        if args[1] == "push" {
            assert_ne!(r.code, 0, "{r:?}");
            continue;
        }
        assert_eq!(r.code, 7, "{r:?}");
        assert_eq!(j["error"]["kind"], "no-bluetooth", "{j}");
        assert!(!r.stderr.contains("panicked"), "{r:?}");
    }
    // The virtual device serves on a port or over Bluetooth LE, not both.
    let d = bluesphere_tests::device(p, &["serve", "--ble", "--port", "auto"]);
    assert_eq!(d.code, 2, "{d:?}");
    f.no_stray_files();
}

/// Ctrl-C during a long pack: the job ends as `cancelled` (exit 130, the JSON error says
/// so) at once, with no package and no temporary file, and the inputs untouched.
#[test]
fn ctrl_c_cancels_a_long_pack_and_writes_nothing() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let f = fixture();
    // One byte in 16 changed: nothing anchors, the whole source is sorted and every
    // difference coded (several seconds), so the pack is still running when Ctrl-C comes.
    let old = firmware(16, 32 << 20);
    let mut new = old.clone();
    for b in new.iter_mut().step_by(16) {
        *b ^= 0x5A;
    }
    fs::write(f.p().join("big-old.bin"), &old).unwrap();
    fs::write(f.p().join("big-new.bin"), &new).unwrap();
    let before = snapshot(f.p());
    let child = Command::new(bluesphere_tests::bin("bluesphere"))
        .args([
            "--json",
            "pack",
            "--old",
            "big-old.bin",
            "--new",
            "big-new.bin",
            "--key",
            "k.pem",
            "-o",
            "big.bsp",
        ])
        .current_dir(f.p())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(130),
        "{stdout} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["error"]["kind"], "cancelled", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("nothing was written"),
        "{v}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // No file added, removed or changed (no package, no temporary file, inputs as they were).
    assert!(snapshot(f.p()) == before, "the directory changed");
    f.no_stray_files();
    println!("Ctrl-C: cancelled {took:?} after the signal");
}
