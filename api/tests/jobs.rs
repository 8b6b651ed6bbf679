//! The jobs as the CLI and the Studio call them: real files, real keys, no process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bluesphere_api::package::{self, ApplyRequest, KeygenRequest, PackRequest, VerifyRequest};
use bluesphere_api::{Cancel, ErrorKind, Event, NoProgress, NoSecrets, Passphrase};
use bluesphere_core::testkit::{evolve, firmware};

fn keys(dir: &Path) -> std::path::PathBuf {
    let key = dir.join("k.pem");
    package::keygen(
        &KeygenRequest {
            out: key.clone(),
            ..Default::default()
        },
        &NoSecrets,
    )
    .unwrap();
    key
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn pack_verify_apply_through_the_jobs() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let key = keys(p);
    let old = firmware(3, 200_000);
    let new = evolve(&old, 3);
    std::fs::write(p.join("old.bin"), &old).unwrap();
    std::fs::write(p.join("new.bin"), &new).unwrap();
    let events = Mutex::new(Vec::new());
    let sink = |e: Event| events.lock().unwrap().push(e);
    let r = package::pack(
        &PackRequest {
            new: p.join("new.bin"),
            old: Some(p.join("old.bin")),
            key: key.clone(),
            out: p.join("u.bsp"),
            product: "thermo".into(),
            from_version: "1.0.0".into(),
            to_version: "1.1.0".into(),
            ..Default::default()
        },
        &NoSecrets,
        &sink,
        &Cancel::new(),
    )
    .unwrap();
    assert_eq!(r.kind, "delta");
    assert!(r.payload_size < new.len() as u64 / 4, "{r:?}");
    let stages: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Stage { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(stages, ["read", "diff", "sign", "write"]);
    let v = package::verify(&VerifyRequest {
        package: p.join("u.bsp"),
        public: vec![p.join("k.pub.pem")],
        old: Some(p.join("old.bin")),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(v.product_id, "thermo");
    assert!(v.base.unwrap().matches);
    let a = package::apply(
        &ApplyRequest {
            package: p.join("u.bsp"),
            old: Some(p.join("old.bin")),
            out: p.join("out.bin"),
            public: vec![p.join("k.pub.pem")],
            ..Default::default()
        },
        &NoProgress,
        &Cancel::new(),
    )
    .unwrap();
    assert!(a.signature_checked);
    assert_eq!(std::fs::read(p.join("out.bin")).unwrap(), new);
    // The report serialises as the CLI's JSON and the Studio's payload.
    let j = serde_json::to_value(&a).unwrap();
    assert_eq!(j["version"], "1.1.0");
}

#[test]
fn an_output_naming_an_input_is_refused_and_nothing_changes() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let key = keys(p);
    std::fs::write(p.join("old.bin"), firmware(1, 50_000)).unwrap();
    std::fs::write(p.join("new.bin"), firmware(2, 50_000)).unwrap();
    let before = snapshot(p);
    for out in ["old.bin", "new.bin", "k.pem", "./old.bin"] {
        let e = package::pack(
            &PackRequest {
                new: p.join("new.bin"),
                old: Some(p.join("old.bin")),
                key: key.clone(),
                out: p.join(out),
                ..Default::default()
            },
            &NoSecrets,
            &NoProgress,
            &Cancel::new(),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutputConflict, "{out}: {e:?}");
        assert!(e.message.contains("is the input"), "{}", e.message);
    }
    package::pack(
        &PackRequest {
            new: p.join("new.bin"),
            key: key.clone(),
            out: p.join("full.bsp"),
            ..Default::default()
        },
        &NoSecrets,
        &NoProgress,
        &Cancel::new(),
    )
    .unwrap();
    let e = package::apply(
        &ApplyRequest {
            package: p.join("full.bsp"),
            out: p.join("full.bsp"),
            ..Default::default()
        },
        &NoProgress,
        &Cancel::new(),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::OutputConflict);
    std::fs::remove_file(p.join("full.bsp")).unwrap();
    assert_eq!(snapshot(p), before);
}

#[test]
fn an_encrypted_key_needs_a_non_empty_passphrase() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let req = KeygenRequest {
        out: p.join("e.pem"),
        encrypt: true,
        ..Default::default()
    };
    let e = package::keygen(&req, &Passphrase(String::new())).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Key);
    let e = package::keygen(&req, &NoSecrets).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Key);
    assert!(snapshot(p).is_empty(), "a refused keygen left files");
    let r = package::keygen(&req, &Passphrase("s3cret".into())).unwrap();
    assert!(r.encrypted);
    let e = package::load_private(&p.join("e.pem"), &NoSecrets).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Key);
    package::load_private(&p.join("e.pem"), &Passphrase("s3cret".into())).unwrap();
    let e = package::keygen(&req, &Passphrase("x".into())).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Exists);
}

/// Cancel a 64 MiB pack a moment after it started: `Cancelled` long before the pack would
/// have finished, and no output.
#[test]
fn cancelling_a_64_mib_pack_stops_it_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let key = keys(p);
    let old = firmware(7, 64 << 20);
    let new = evolve(&old, 7);
    std::fs::write(p.join("old.bin"), &old).unwrap();
    std::fs::write(p.join("new.bin"), &new).unwrap();
    drop((old, new));
    let req = PackRequest {
        new: p.join("new.bin"),
        old: Some(p.join("old.bin")),
        key,
        out: p.join("big.bsp"),
        ..Default::default()
    };
    let cancel = Cancel::new();
    let diff_started = Mutex::new(None);
    let on_event = |e: Event| {
        if matches!(&e, Event::Stage { name, .. } if name == "diff") {
            *diff_started.lock().unwrap() = Some(Instant::now());
        }
    };
    let (r, cancelled_at) = std::thread::scope(|s| {
        let job = s.spawn(|| package::pack(&req, &NoSecrets, &on_event, &cancel));
        while diff_started.lock().unwrap().is_none() && !job.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(300));
        let at = Instant::now();
        cancel.cancel();
        (job.join().unwrap(), at)
    });
    let after = cancelled_at.elapsed();
    let e = r.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Cancelled, "{e:?}");
    assert!(!p.join("big.bsp").exists());
    assert!(
        std::fs::read_dir(p).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".bluesphere")),
        "a temporary file was left"
    );
    println!("64 MiB pack: Cancelled {after:?} after the cancel");
    // The job answers at once, even while its build is in the source's suffix sort (which
    // cannot stop midway and ends on the build's own thread).
    assert!(after < Duration::from_secs(2), "took {after:?}");
}

/// Apply stops between payload chunks when cancelled, and writes nothing.
#[test]
fn a_cancelled_apply_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let key = keys(p);
    let old = firmware(8, 400_000);
    let new = evolve(&old, 8);
    std::fs::write(p.join("old.bin"), &old).unwrap();
    std::fs::write(p.join("new.bin"), &new).unwrap();
    package::pack(
        &PackRequest {
            new: p.join("new.bin"),
            old: Some(p.join("old.bin")),
            key: key.clone(),
            out: p.join("u.bsp"),
            from_version: "1.0.0".into(),
            ..Default::default()
        },
        &NoSecrets,
        &NoProgress,
        &Cancel::new(),
    )
    .unwrap();
    let cancel = Cancel::new();
    let seen = Mutex::new(0u32);
    let c2 = cancel.clone();
    // Cancel at the first progress event: the next chunk is not decoded.
    let sink = |e: Event| {
        if let Event::Bytes { .. } = e {
            *seen.lock().unwrap() += 1;
            c2.cancel();
        }
    };
    let e = package::apply(
        &ApplyRequest {
            package: p.join("u.bsp"),
            old: Some(p.join("old.bin")),
            out: p.join("out.bin"),
            public: vec![p.join("k.pub.pem")],
            ..Default::default()
        },
        &sink,
        &cancel,
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Cancelled);
    assert!(!p.join("out.bin").exists());
}
