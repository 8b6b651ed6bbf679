//! Helpers for BlueSphere's end-to-end tests: locate the built binaries, run them, check
//! their exit codes and JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

pub mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of a workspace binary built next to the running test (`target/<profile>/<name>`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        p.display()
    );
    p
}

/// Result of a command.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

impl Run {
    /// Parse stdout as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Run `bluesphere` with `args` in `dir`.
pub fn bluesphere(dir: &Path, args: &[&str]) -> Run {
    Command::new(bin("bluesphere"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bluesphere: {e}"))
        .into()
}

/// Every file under `p` (recursively, sorted) with its bytes: compare before and after a
/// command to prove it changed nothing.
pub fn snapshot(p: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let path = e.path();
            let name = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                out.push((format!("{name}/"), Vec::new()));
                walk(base, &path, out);
            } else if ty.is_file() {
                out.push((name, std::fs::read(&path).unwrap_or_default()));
            } else {
                out.push((format!("{name} (special)"), Vec::new()));
            }
        }
    }
    let mut v = Vec::new();
    walk(p, p, &mut v);
    v.sort();
    v
}

/// Run `bluesphere --json ARGS` in `dir` and check that it failed with exit `code`, JSON error
/// `kind`, a message (with its hint) holding every one of `words`, and that no file under
/// `dir` changed.
pub fn refused(dir: &Path, args: &[&str], code: i32, kind: &str, words: &[&str]) -> Run {
    let before = snapshot(dir);
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let r = bluesphere(dir, &a);
    assert_eq!(r.code, code, "{args:?}: {r:?}");
    let j = r.json();
    assert_eq!(j["error"]["kind"], kind, "{args:?}: {r:?}");
    let text = format!("{} {}", j["error"]["message"], j["error"]["hint"]);
    for w in words {
        assert!(text.contains(w), "{args:?}: {w:?} not in {text}");
    }
    assert_eq!(snapshot(dir), before, "{args:?} changed a file");
    r
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A real firmware pair from the public corpus (SeaBIOS 1.16.2 -> 1.16.3, fetched by
/// `scripts/fetch_fixtures.sh`), or, when it was not fetched (no network), a generated pair
/// of the same character: a 256 KiB image and its next version whose delta is about 20 KB,
/// large enough for the kill tests to land in the transfer and in the swap (unless
/// `BLUESPHERE_REQUIRE_FIXTURES=1`). Returns (old, new, description).
pub fn firmware_pair() -> (PathBuf, PathBuf, &'static str) {
    let d = root().join("target/fixtures/seabios");
    if d.join("old.bin").exists() && d.join("new.bin").exists() {
        return (
            d.join("old.bin"),
            d.join("new.bin"),
            "SeaBIOS 1.16.2 -> 1.16.3",
        );
    }
    assert!(
        std::env::var("BLUESPHERE_REQUIRE_FIXTURES").as_deref() != Ok("1"),
        "run scripts/fetch_fixtures.sh first"
    );
    let d = root().join("target/fixtures/synthetic");
    let (old, new) = (d.join("old.bin"), d.join("new.bin"));
    if !(old.exists() && new.exists()) {
        use bluesphere_core::testkit::{evolve, firmware};
        let a = firmware(1163, 256 * 1024);
        let mut b = evolve(&a, 1163);
        // A rewritten module: 16 KiB of new code the delta must carry.
        let fresh = firmware(1164, 16 * 1024);
        let at = 64 * 1024;
        b[at..at + fresh.len()].copy_from_slice(&fresh);
        std::fs::create_dir_all(&d).unwrap();
        // Several test binaries may get here at once: write aside, then rename.
        let tag = format!("{}-{:?}", std::process::id(), std::thread::current().id());
        for (path, bytes) in [(&old, &a), (&new, &b)] {
            let tmp = d.join(format!(".{tag}.{}.tmp", path.display().to_string().len()));
            std::fs::write(&tmp, bytes).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
    }
    (old, new, "synthetic 256 KiB pair (corpus pair not fetched)")
}

/// Run `bluesphere-device --flash DIR/dev ARGS` in `DIR`.
pub fn device(dir: &Path, args: &[&str]) -> Run {
    Command::new(bin("bluesphere-device"))
        .arg("--flash")
        .arg(dir.join("dev"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bluesphere-device: {e}"))
        .into()
}

/// Run any program in `dir`.
pub fn run(dir: &Path, prog: &str, args: &[&str]) -> Run {
    Command::new(prog)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"))
        .into()
}

/// A pseudo-terminal serial cable ([`bluesphere_host::pty::PtyCable`]) for tests.
#[derive(Debug)]
pub struct PtyCable {
    /// Path the device opens.
    pub device: String,
    /// Path the host opens.
    pub host: String,
    _cable: bluesphere_host::pty::PtyCable,
}

impl PtyCable {
    /// Make the cable.
    pub fn new() -> PtyCable {
        let c = bluesphere_host::pty::PtyCable::open().unwrap();
        PtyCable {
            device: c.device.clone(),
            host: c.host.clone(),
            _cable: c,
        }
    }
}

impl Default for PtyCable {
    fn default() -> Self {
        Self::new()
    }
}

/// True when this computer has a Bluetooth adapter (the CI machines have none).
pub fn has_bluetooth_adapter() -> bool {
    std::path::Path::new("/sys/class/bluetooth")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some())
}
