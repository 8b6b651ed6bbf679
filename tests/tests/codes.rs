//! Activation codes end to end: `bluesphere codes gen/verify/order/audit` with a real
//! registry file, concurrent generators, and `bluesphere station` activating virtual devices
//! over pseudo-terminal cables.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use bluesphere_tests::{bin, bluesphere, PtyCable, Run};
use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

fn uids(n: usize, seed: u64) -> Vec<String> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let y = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            format!("{x:016x}{:08x}", y as u32)
        })
        .collect()
}

fn keys(p: &Path) {
    assert_eq!(
        bluesphere(p, &["keygen", "-o", "k.pem", "--pub", "k.pub"]).code,
        0
    );
    assert_eq!(
        bluesphere(p, &["keygen", "-o", "other.pem", "--pub", "other.pub"]).code,
        0
    );
}

fn gen(p: &Path, uid_file: &str, out: &str, extra: &[&str]) -> Run {
    let mut a = vec![
        "--json",
        "codes",
        "gen",
        "--key",
        "k.pem",
        "--product",
        "thermo",
        "--uids",
        uid_file,
        "-o",
        out,
        "--registry",
        "reg.sqlite",
        "--new-registry",
        "--station",
        "line-1",
        "--operator",
        "ana",
    ];
    a.extend_from_slice(extra);
    bluesphere(p, &a)
}

fn audit_rows(p: &Path) -> Vec<Vec<String>> {
    let r = bluesphere(
        p,
        &[
            "codes",
            "audit",
            "--registry",
            "reg.sqlite",
            "-o",
            "audit.csv",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    fs::read_to_string(p.join("audit.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

#[test]
fn generate_verify_and_refuse_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    keys(p);
    // A CSV with a uid column and MAC-style separators among plain lines.
    let list = uids(5000, 1);
    let mut csv = String::from("serial,uid\n# line comment\n");
    for (i, u) in list.iter().enumerate() {
        let u = if i % 7 == 0 {
            u.as_bytes()
                .chunks(2)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join(":")
        } else {
            u.clone()
        };
        csv.push_str(&format!("SN{i},{u}\n"));
    }
    fs::write(p.join("uids.csv"), csv).unwrap();
    let r = gen(p, "uids.csv", "codes.csv", &["--bin-dir", "bin"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["issued"], 5000);
    assert!(p.join("bin").join(format!("{}.bin", list[3])).exists());
    let r = bluesphere(
        p,
        &[
            "--json",
            "codes",
            "verify",
            "--pub",
            "k.pub",
            "--product",
            "thermo",
            "codes.csv",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["valid"], 5000);
    // Wrong key, wrong product, a code moved to another UID, a typo: each reported by line.
    let r = bluesphere(
        p,
        &[
            "codes",
            "verify",
            "--pub",
            "other.pub",
            "--product",
            "thermo",
            "codes.csv",
        ],
    );
    assert_eq!(r.code, 4);
    let r = bluesphere(
        p,
        &[
            "codes",
            "verify",
            "--pub",
            "k.pub",
            "--product",
            "thermo2",
            "codes.csv",
        ],
    );
    assert_eq!(r.code, 4);
    let text = fs::read_to_string(p.join("codes.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let code10 = lines[10].split(',').nth(1).unwrap().to_string();
    let uid11 = lines[11].split(',').next().unwrap().to_string();
    lines[11] = format!("{uid11},{code10}"); // moved
    let mut typo: Vec<char> = lines[20].chars().collect();
    let at = typo.len() - 10;
    typo[at] = if typo[at] == 'A' { 'B' } else { 'A' };
    lines[20] = typo.into_iter().collect();
    fs::write(p.join("bad.csv"), lines.join("\n")).unwrap();
    let r = bluesphere(
        p,
        &[
            "codes",
            "verify",
            "--pub",
            "k.pub",
            "--product",
            "thermo",
            "bad.csv",
        ],
    );
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains("line 12:") && r.stderr.contains("line 21:"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("2 bad line(s)"), "{}", r.stderr);

    // Hostile input lines: each reported with its line number; nothing issued.
    fs::write(
        p.join("hostile.txt"),
        format!(
            "0011223344556677\nzz11\n123\n000000000000\nffffffffffff\n\n0x\n{long}\n0011223344556677\n",
            long = "11".repeat(33)
        ),
    )
    .unwrap();
    let before = audit_rows(p).len();
    let r = gen(p, "hostile.txt", "h.csv", &[]);
    assert_eq!(r.code, 3, "{r:?}");
    let m = r.json()["error"]["message"].as_str().unwrap().to_string();
    for l in [
        "line 2:",
        "line 3:",
        "line 4:",
        "line 5:",
        "line 7:",
        "line 8:",
        "line 9: duplicate of line 1",
    ] {
        assert!(m.contains(l), "{l} missing in {m}");
    }
    assert!(!p.join("h.csv").exists());
    assert_eq!(audit_rows(p).len(), before);

    // A UID that already has a code is refused (all or nothing), unless re-issued on purpose.
    fs::write(
        p.join("again.txt"),
        format!("{}\n{}\n", uids(1, 99)[0], list[0]),
    )
    .unwrap();
    let r = gen(p, "again.txt", "again.csv", &[]);
    assert_eq!(r.code, 5, "{r:?}");
    assert_eq!(r.json()["error"]["kind"], "already-issued");
    assert_eq!(audit_rows(p).len(), before);
    fs::write(p.join("re.txt"), format!("{}\n", list[0])).unwrap();
    assert_eq!(gen(p, "re.txt", "re.csv", &["--reissue"]).code, 0);
    let rows = audit_rows(p);
    assert_eq!(rows.len(), before + 1);
    assert_eq!(rows.last().unwrap()[9], "1", "recorded as a re-issue");
    assert_eq!(rows[0][6], "line-1");
    assert_eq!(rows[0][7], "ana");
}

#[test]
fn production_orders_cap_issuance() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    keys(p);
    let r = bluesphere(
        p,
        &[
            "codes",
            "order",
            "--order",
            "PO-7",
            "--key",
            "k.pub",
            "--product",
            "thermo",
            "--limit",
            "100",
            "--registry",
            "reg.sqlite",
            "--new-registry",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let list = uids(200, 5);
    for (name, range) in [("a.txt", 0..60), ("b.txt", 60..110), ("c.txt", 110..150)] {
        fs::write(p.join(name), list[range].join("\n")).unwrap();
    }
    assert_eq!(gen(p, "a.txt", "a.csv", &["--order", "PO-7"]).code, 0);
    let r = gen(p, "b.txt", "b.csv", &["--order", "PO-7"]);
    assert_eq!(r.code, 5);
    assert_eq!(r.json()["error"]["kind"], "order-limit");
    assert_eq!(gen(p, "c.txt", "c.csv", &["--order", "PO-7"]).code, 0);
    assert_eq!(audit_rows(p).len(), 100);
    // An order for another key cannot be used.
    let r = bluesphere(
        p,
        &[
            "codes",
            "order",
            "--order",
            "PO-8",
            "--key",
            "other.pub",
            "--product",
            "thermo",
            "--limit",
            "5",
            "--registry",
            "reg.sqlite",
            "--new-registry",
        ],
    );
    assert_eq!(r.code, 0);
    fs::write(p.join("d.txt"), &list[150]).unwrap();
    let r = gen(p, "d.txt", "d.csv", &["--order", "PO-8"]);
    assert_eq!(r.json()["error"]["kind"], "order");
    // A batch of UIDs that already have codes is refused, and the refusals are counted.
    let r = gen(p, "a.txt", "again.csv", &[]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(!p.join("again.csv").exists());
    // The registry's figures: issued, refused duplicates, per order, per product.
    let r = bluesphere(p, &["--json", "codes", "stats", "--registry", "reg.sqlite"]);
    assert_eq!(r.code, 0, "{r:?}");
    let f = &r.json()["figures"];
    assert_eq!(f["issued"], 100);
    assert_eq!(f["reissued"], 0);
    assert_eq!(f["refused_duplicates"], 60);
    assert_eq!(f["orders"][0]["order"], "PO-7");
    assert_eq!(f["orders"][0]["issued"], 100);
    assert_eq!(f["orders"][0]["limit"], 100);
    assert_eq!(f["orders"][1]["order"], "PO-8");
    assert_eq!(f["orders"][1]["issued"], 0);
    assert_eq!(f["products"][0]["product"], "thermo");
    assert_eq!(f["products"][0]["issued"], 100);
    let text = bluesphere(p, &["codes", "stats", "--registry", "reg.sqlite"]);
    assert!(
        text.stdout.contains("100 codes issued")
            && text.stdout.contains("60 duplicate UIDs refused"),
        "{text:?}"
    );
    // No registry: a clear error, not an empty one made on the spot.
    let r = bluesphere(
        p,
        &["--json", "codes", "stats", "--registry", "none.sqlite"],
    );
    assert_eq!(r.json()["error"]["kind"], "registry", "{r:?}");
    assert!(!p.join("none.sqlite").exists());
}

/// Four generators at once on one registry: overlapping batches never both succeed, and no
/// UID ends up with two codes.
#[test]
fn concurrent_generators_never_issue_a_uid_twice() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    keys(p);
    let shared = uids(10, 77);
    let mut sets = Vec::new();
    for i in 0..4u64 {
        let mut own = uids(1500, 100 + i);
        if i < 3 {
            own.extend(shared.iter().cloned()); // three overlap, one does not
        }
        fs::write(p.join(format!("u{i}.txt")), own.join("\n")).unwrap();
        sets.push(own);
    }
    for round in 0..2 {
        let _ = fs::remove_file(p.join("reg.sqlite"));
        let children: Vec<_> = (0..4)
            .map(|i| {
                Command::new(bin("bluesphere"))
                    .args([
                        "--json",
                        "codes",
                        "gen",
                        "--key",
                        "k.pem",
                        "--product",
                        "thermo",
                    ])
                    .args([
                        "--uids",
                        &format!("u{i}.txt"),
                        "-o",
                        &format!("o{round}{i}.csv"),
                    ])
                    .args([
                        "--registry",
                        "reg.sqlite",
                        "--new-registry",
                        "--station",
                        &format!("s{i}"),
                    ])
                    .current_dir(p)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let results: Vec<Run> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap().into())
            .collect();
        let ok: Vec<usize> = (0..4).filter(|&i| results[i].code == 0).collect();
        for (i, r) in results.iter().enumerate() {
            if r.code != 0 {
                assert_eq!(r.json()["error"]["kind"], "already-issued", "{i}: {r:?}");
            }
        }
        assert!(ok.contains(&3), "the disjoint batch always succeeds");
        assert_eq!(
            ok.iter().filter(|&&i| i < 3).count(),
            1,
            "exactly one overlapping batch wins"
        );
        let rows = audit_rows(p);
        let expected: usize = ok.iter().map(|&i| sets[i].len()).sum();
        assert_eq!(rows.len(), expected);
        let unique: HashSet<&String> = rows.iter().map(|r| &r[2]).collect();
        assert_eq!(unique.len(), rows.len(), "a UID was issued twice");
    }
}

fn vdev(p: &Path, name: &str, uid: &str) {
    let r: Run = Command::new(bin("bluesphere-device"))
        .arg("--flash")
        .arg(p.join(name))
        .args(["init", "--product", "thermo", "--hardware", "revB", "--key"])
        .arg(p.join("k.pub"))
        .args(["--image"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/sample-v1.0.0.bin"))
        .args(["--version", "1.0.0", "--uid", uid])
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 0, "{r:?}");
}

fn serve(p: &Path, name: &str, port: &str) -> std::process::Child {
    Command::new(bin("bluesphere-device"))
        .arg("--flash")
        .arg(p.join(name))
        .args(["serve", "--port", port, "--baud", "921600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn station_activates_a_gang_of_virtual_devices() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    keys(p);
    let (a, b) = (PtyCable::new(), PtyCable::new());
    vdev(p, "d1", "0102030405060708090a0b0c");
    vdev(p, "d2", "a1a2a3a4a5a6");
    let station = |ports: &[&str]| -> Run {
        let mut args = vec!["--json", "station", "--key", "k.pem", "--product", "thermo"];
        args.extend([
            "--registry",
            "reg.sqlite",
            "--new-registry",
            "--once",
            "--wait",
            "20",
            "--log",
            "station.csv",
        ]);
        for port in ports {
            args.extend(["--port", port]);
        }
        bluesphere(p, &args)
    };
    let mut s1 = serve(p, "d1", &a.device);
    let mut s2 = serve(p, "d2", &b.device);
    let r = station(&[&a.host, &b.host]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    let devs = v["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 2);
    assert!(
        devs.iter()
            .all(|d| d["pass"] == true && d["detail"] == "issued"),
        "{v}"
    );
    // The codes on the devices verify with the public key.
    let mut csv = String::from("uid,code\n");
    for d in devs {
        csv.push_str(&format!(
            "{},{}\n",
            d["uid"].as_str().unwrap(),
            d["code"].as_str().unwrap()
        ));
    }
    fs::write(p.join("station-codes.csv"), csv).unwrap();
    let r = bluesphere(
        p,
        &[
            "codes",
            "verify",
            "--pub",
            "k.pub",
            "--product",
            "thermo",
            "station-codes.csv",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(fs::read(p.join("d1/activation.bin")).unwrap().len(), 80);
    let status = || -> Run {
        Command::new(bin("bluesphere-device"))
            .arg("--flash")
            .arg(p.join("d2"))
            .args(["--json", "status"])
            .output()
            .unwrap()
            .into()
    };
    // One process per device: while d2 serves, another command is told it is busy.
    let st = status();
    assert_eq!(st.code, 7, "{st:?}");
    assert_eq!(st.json()["error"]["kind"], "device-busy");
    s2.kill().unwrap();
    s2.wait().unwrap();
    let st = status();
    assert_eq!(st.json()["activation"]["valid"], true, "{st:?}");
    let mut s2 = serve(p, "d2", &b.device);
    // Again: already activated, nothing new in the registry.
    let r = station(&[&a.host, &b.host]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.json()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["detail"] == "already-activated"));
    assert_eq!(audit_rows(p).len(), 2);
    // A device that lost its code (flash erased) gets the registry's code back, not a new one.
    s1.kill().unwrap();
    s1.wait().unwrap();
    fs::remove_file(p.join("d1/activation.bin")).unwrap();
    let mut s1 = serve(p, "d1", &a.device);
    let r = station(&[&a.host]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["devices"][0]["detail"], "reused");
    assert_eq!(audit_rows(p).len(), 2);
    assert!(
        fs::read_to_string(p.join("station.csv"))
            .unwrap()
            .lines()
            .count()
            >= 5
    );
    // A device configured with another activation key refuses the code: a clean failure.
    s2.kill().unwrap();
    s2.wait().unwrap();
    vdev(p, "d3", "c0ffee00c0ffee00");
    let mut j: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(p.join("d3/device.json")).unwrap()).unwrap();
    j["activation_keys"] = serde_json::json!([fs::read_to_string(p.join("other.pub")).unwrap()]);
    fs::write(p.join("d3/device.json"), j.to_string()).unwrap();
    let mut s3 = serve(p, "d3", &b.device);
    let r = station(&[&b.host]);
    assert_eq!(r.code, 7, "{r:?}");
    assert!(
        r.stderr.contains("rejected the code") || r.stdout.contains("rejected the code"),
        "{r:?}"
    );
    for s in [&mut s1, &mut s3] {
        s.kill().unwrap();
        s.wait().unwrap();
    }
}

/// A station whose audit log cannot be opened does not start: a clear I/O error, before any
/// port is opened or any code issued.
#[test]
fn station_refuses_to_start_without_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    keys(p);
    let r = bluesphere(
        p,
        &[
            "--json",
            "station",
            "--key",
            "k.pem",
            "--product",
            "thermo",
            "--registry",
            "reg.sqlite",
            "--new-registry",
            "--once",
            "--log",
            "no-such-dir/station.csv",
            "--port",
            "/dev/no-such-port",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    let v = r.json();
    assert_eq!(v["error"]["kind"], "io");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("station log") && msg.contains("no-such-dir"),
        "{msg}"
    );
    assert!(!p.join("reg.sqlite").exists(), "nothing may be issued");
}

/// Code batches are recorded in the history; `bluesphere history` filters and exports it.
#[test]
fn code_batches_are_in_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    keys(p);
    fs::write(p.join("u.txt"), "0102030405060708\n1112131415161718\n").unwrap();
    let run = |args: &[&str]| -> Run {
        Command::new(bin("bluesphere"))
            .args(args)
            .env("BLUESPHERE_HISTORY", p.join("h.sqlite"))
            .current_dir(p)
            .output()
            .unwrap()
            .into()
    };
    let r = run(&[
        "codes",
        "gen",
        "--key",
        "k.pem",
        "--product",
        "thermo",
        "--uids",
        "u.txt",
        "-o",
        "c.csv",
        "--registry",
        "reg.sqlite",
        "--new-registry",
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(&["--json", "history", "--filter", "THERMO", "-o", "h.csv"]);
    assert_eq!(r.code, 0, "{r:?}");
    let e = &r.json()["entries"][0];
    assert_eq!(e["job"], "codes");
    assert_eq!(e["count"], 2);
    assert_eq!(e["result"], "ok");
    assert_eq!(
        fs::read_to_string(p.join("h.csv")).unwrap().lines().count(),
        2
    );
    let r = run(&["--json", "history", "--filter", "no-such-thing"]);
    assert_eq!(r.json()["entries"].as_array().unwrap().len(), 0);
}
