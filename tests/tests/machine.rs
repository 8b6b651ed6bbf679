//! Whole-machine update end to end: three virtual devices (the main MCU's firmware, a radio
//! module, a data partition) made into one virtual machine (`bluesphere-device machine`),
//! served on a real pseudo-terminal; one `bluesphere push` of a 3-component package made
//! from a release manifest installs all of them, and `machine status` shows every component.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use bluesphere_core::package::sha2_digest;
use bluesphere_core::testkit::{evolve, firmware};
use bluesphere_tests::{bin, bluesphere, firmware_pair, PtyCable, Run};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

fn vdev(p: &Path, flash: &str, args: &[&str]) -> Run {
    Command::new(bin("bluesphere-device"))
        .arg("--flash")
        .arg(p.join(flash))
        .args(args)
        .current_dir(p)
        .output()
        .unwrap()
        .into()
}

fn init(p: &Path, dir: &str, component: &str, image: &str, mode: &str) {
    let r = vdev(
        p,
        dir,
        &[
            "init",
            "--product",
            "coffee",
            "--hardware",
            "rev3",
            "--key",
            "k.pub",
            "--image",
            image,
            "--version",
            "1.0.0",
            "--component",
            component,
            "--mode",
            mode,
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
}

#[test]
fn one_push_installs_every_component_of_a_virtual_machine() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (old, new, _) = firmware_pair();
    fs::copy(&old, p.join("main-1.0.0.bin")).unwrap();
    fs::copy(&new, p.join("main-1.1.0.bin")).unwrap();
    let radio_old = firmware(31, 24 * 1024);
    let radio_new = evolve(&radio_old, 31);
    let data_old = firmware(32, 8 * 1024);
    let data_new = firmware(33, 9 * 1024);
    fs::write(p.join("radio-1.0.0.bin"), &radio_old).unwrap();
    fs::write(p.join("radio-1.1.0.bin"), &radio_new).unwrap();
    fs::write(p.join("data-1.0.0.bin"), &data_old).unwrap();
    fs::write(p.join("data-1.1.0.bin"), &data_new).unwrap();
    assert_eq!(
        bluesphere(p, &["keygen", "-o", "k.pem", "--pub", "k.pub"]).code,
        0
    );
    init(p, "m/main", "main", "main-1.0.0.bin", "swap");
    init(p, "m/radio", "radio", "radio-1.0.0.bin", "ab");
    init(p, "m/data", "data", "data-1.0.0.bin", "ab");

    // Members that do not make a machine are refused before anything is written.
    let r = vdev(p, "m", &["machine", "init", "--member", "local:main=radio"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("holds component \"radio\""), "{r:?}");
    assert!(!p.join("m/machine.json").exists());
    let r = vdev(p, "m", &["machine", "init", "--member", "local:main=../x"]);
    assert_eq!(r.code, 2, "{r:?}");

    let r = vdev(
        p,
        "m",
        &[
            "--json",
            "machine",
            "init",
            "--member",
            "local:main=main",
            "--member",
            "module:radio=radio",
            "--member",
            "local:data=data",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");

    fs::write(
        p.join("release.toml"),
        r#"product = "coffee"
hardware = "rev3"
key = "k.pem"
out = "release.bsp"

[[component]]
name = "main"
old = "main-1.0.0.bin"
new = "main-1.1.0.bin"
from = "1.0.0"
to = "1.1.0"
depends = ["radio>=1.1.0"]

[[component]]
name = "radio"
old = "radio-1.0.0.bin"
new = "radio-1.1.0.bin"
from = "1.0.0"
to = "1.1.0"
profile = "small"

[[component]]
name = "data"
new = "data-1.1.0.bin"
to = "1.1.0"
"#,
    )
    .unwrap();
    let r = bluesphere(p, &["--json", "pack", "--manifest", "release.toml"]);
    assert_eq!(r.code, 0, "{r:?}");

    let cable = PtyCable::new();
    let mut m = Command::new(bin("bluesphere-device"))
        .arg("--flash")
        .arg(p.join("m"))
        .args([
            "machine",
            "serve",
            "--port",
            &cable.device,
            "--auto-confirm",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A package with a component this machine has no member for: refused before anything
    // is written, naming the component.
    let gps = fs::read_to_string(p.join("release.toml"))
        .unwrap()
        .replace("out = \"release.bsp\"", "out = \"gps.bsp\"")
        + "\n[[component]]\nname = \"gps\"\nnew = \"data-1.1.0.bin\"\nto = \"1.0.0\"\n";
    fs::write(p.join("gps.toml"), gps).unwrap();
    assert_eq!(bluesphere(p, &["pack", "--manifest", "gps.toml"]).code, 0);
    let r = bluesphere(p, &["--json", "push", "gps.bsp", "--port", &cable.host]);
    assert_ne!(r.code, 0, "{r:?}");
    let e = r.json();
    assert_eq!(e["error"]["kind"], "refused", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("component gps"),
        "{e}"
    );

    // INFO on the machine's port: its identity and, with MACHINE, every component.
    let i = bluesphere(p, &["--json", "info", "--port", &cable.host]);
    assert_eq!(i.code, 0, "{i:?}");
    let i = i.json();
    assert_eq!(i["machine"]["phase"], "idle", "{i}");
    let names: Vec<_> = i["machine"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["version"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [("main", "1.0.0"), ("radio", "1.0.0"), ("data", "1.0.0")]
    );
    let r = bluesphere(p, &["--json", "push", "release.bsp", "--port", &cable.host]);
    let after = bluesphere(p, &["--json", "info", "--port", &cable.host]).json();
    assert_eq!(after["machine"]["phase"], "committed", "{after}");
    assert!(
        after["machine"]["components"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["version"] == "1.1.0" && c["phase"] == "confirmed"),
        "{after}"
    );
    let _ = m.kill();
    let out = m.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(r.code, 0, "{r:?}\nmachine log:\n{log}");
    assert_eq!(r.json()["phase"], "confirmed", "{r:?}");
    eprintln!("push: {}\nmachine log:\n{log}", r.stdout);

    let s = vdev(p, "m", &["--json", "machine", "status"]);
    assert_eq!(s.code, 0, "{s:?}");
    let s = s.json();
    assert_eq!(s["phase"], "committed", "{s}");
    let want = [
        ("main", fs::read(&new).unwrap()),
        ("radio", radio_new),
        ("data", data_new),
    ];
    for (i, (name, bytes)) in want.iter().enumerate() {
        let m = &s["members"][i];
        assert_eq!(m["name"], *name, "{s}");
        assert_eq!(m["device"]["phase"], "confirmed", "{s}");
        assert_eq!(m["device"]["running"]["version"], "1.1.0", "{s}");
        assert_eq!(
            m["device"]["running"]["flash_sha256"],
            hex::encode(sha2_digest(bytes)),
            "{name}: {s}"
        );
    }
    assert_eq!(s["members"][1]["module"], true);
}
