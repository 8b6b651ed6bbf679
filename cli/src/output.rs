//! Text / JSON output, progress bars and exit codes.

use std::io::IsTerminal;
use std::path::Path;

use bluesphere_core::keys::KeyError;
use bluesphere_core::ops::{Error, PackageInfo, Progress};
use indicatif::{ProgressBar, ProgressStyle};

/// A failed command: a stable kind, an exit code and the error chain.
#[derive(Debug)]
pub struct Failure {
    kind: &'static str,
    code: i32,
    error: anyhow::Error,
}

impl Failure {
    pub fn new(kind: &'static str, code: i32, error: anyhow::Error) -> Self {
        Self { kind, code, error }
    }

    pub fn usage(error: anyhow::Error) -> Self {
        Self::new("usage", 2, error)
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new("internal", 1, anyhow::anyhow!("internal error: {e}"))
    }

    pub fn key(e: KeyError) -> Self {
        Self::new("key", 6, e.into())
    }

    pub fn context(self, path: &Path) -> Self {
        let ctx = path.display().to_string();
        Self {
            error: self.error.context(ctx),
            ..self
        }
    }

    /// Map a core error to its kind and exit code.
    pub fn core(e: Error) -> Self {
        let kind = e.kind();
        let code = match kind {
            "bad-signature" | "unknown-key" => 4,
            "wrong-base" | "need-base" | "wrong-hardware" | "wrong-product" | "no-component" => 5,
            _ => 3,
        };
        Self::new(kind, code, e.into())
    }
}

/// Where results go.
pub struct Out {
    json: bool,
    bars: bool,
}

impl Out {
    pub fn new(json: bool, quiet: bool) -> Self {
        Self {
            json,
            bars: !quiet && !json && std::io::stderr().is_terminal(),
        }
    }

    /// True in `--json` mode.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Human text (suppressed in JSON mode).
    pub fn text(&self, s: &str) {
        if !self.json {
            println!("{s}");
        }
    }

    pub fn bar(&self, label: &str, total: u64) -> Bar {
        if !self.bars {
            return Bar(None);
        }
        let b = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_message(label.to_string());
        Bar(Some(b))
    }

    pub fn spinner(&self, label: &str) -> Bar {
        if !self.bars {
            return Bar(None);
        }
        let b = ProgressBar::new_spinner();
        b.set_message(label.to_string());
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        Bar(Some(b))
    }

    /// Print the result or the error; return the exit code.
    pub fn finish(&self, res: Result<serde_json::Value, Failure>) -> i32 {
        match res {
            Ok(v) => {
                if self.json {
                    println!("{v}");
                }
                0
            }
            Err(f) => {
                let msg = format!("{:#}", f.error);
                if self.json {
                    println!(
                        "{}",
                        serde_json::json!({"error": {"kind": f.kind, "message": msg}})
                    );
                }
                eprintln!("error: {msg}");
                f.code
            }
        }
    }
}

pub struct Bar(Option<ProgressBar>);

impl Bar {
    pub fn event(&self, e: &Progress) {
        if let Some(b) = &self.0 {
            match e {
                Progress::Stage { name, .. } => b.set_message(name.to_string()),
                Progress::Bytes { done, total } => {
                    b.set_length(*total);
                    b.set_position(*done);
                }
            }
        }
    }

    pub fn message(&self, m: &str) {
        if let Some(b) = &self.0 {
            b.set_message(m.to_string());
        }
    }

    pub fn bytes(&self, done: u64, total: u64) {
        if let Some(b) = &self.0 {
            b.set_length(total);
            b.set_position(done);
        }
    }

    pub fn done(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// Human description of a package.
pub fn describe(info: &PackageInfo) -> String {
    let mut s = format!(
        "BlueSphere package v{} ({} bytes)\n  product   {}\n  hardware  {}\n  created   {} (unix)\n  signed by key {}\n",
        info.format_version, info.package_size, info.product_id, info.hardware_id, info.created, info.key_id
    );
    for c in &info.components {
        let r = &c.record;
        s.push_str(&format!(
            "  component {}: {:?} {} -> {}, counter {}, load 0x{:08X}\n    target  {} bytes sha256 {}\n",
            r.name,
            r.kind,
            if r.from_version.is_empty() { "-" } else { &r.from_version },
            r.to_version,
            r.security_counter,
            r.load_address,
            r.target_size,
            r.target_sha256
        ));
        if r.source_size > 0 {
            s.push_str(&format!(
                "    source  {} bytes sha256 {}...\n",
                r.source_size, r.source_hash
            ));
        }
        s.push_str(&format!(
            "    payload {} bytes ({:.2}% of target), crc32 {}, codec {:?}{}\n",
            r.payload_size,
            c.ratio * 100.0,
            r.payload_crc32,
            r.codec,
            c.stream
                .map(|h| format!(
                    ", lc={} lp={} block={} KiB",
                    h.params.lc,
                    h.params.lp,
                    h.params.block_size() / 1024
                ))
                .unwrap_or_default()
        ));
        for (n, v) in &r.dependencies {
            s.push_str(&format!("    depends {n} >= {v}\n"));
        }
    }
    s.trim_end().to_string()
}
