//! Text / JSON output, progress bars, hints that name this CLI's flags, and the one table
//! from error kinds to exit codes.

use std::io::IsTerminal;
use std::sync::Mutex;

use bluesphere_api::{Error, ErrorKind, Event, Progress};
use indicatif::{ProgressBar, ProgressStyle};

/// The exit code of an error kind (the README's table).
pub fn exit_code(kind: ErrorKind) -> i32 {
    use ErrorKind::*;
    match kind {
        Io | Internal | Exists | Registry | RegistryBusy | RehearsalFailed => 1,
        Usage | OutputConflict => 2,
        Corrupt | Truncated | NotAPackage | UnsupportedVersion | InvalidInput | Segments
        | BadPackage => 3,
        BadSignature | UnknownKey | InvalidCode | Expired | NeedKey => 4,
        WrongBase | NeedBase | WrongHardware | WrongProduct | NoComponent | TooLarge | Rollback
        | Refused | AlreadyIssued | NotIssued | Order | OrderLimit => 5,
        Key => 6,
        NoPort | PermissionDenied | PortBusy | Port | DeviceBusy | ProtocolVersion
        | DeviceError | Timeout | StationFailures | NoBluetooth | BluetoothOff => 7,
        Cancelled => 130,
    }
}

/// The next step in this CLI's words, where it differs from the library's hint.
fn cli_hint(e: &Error) -> String {
    let m = &e.message;
    let s = match e.kind {
        ErrorKind::NeedBase => "give the installed image with --old",
        ErrorKind::NoComponent if m.contains("several") => "choose one with --component",
        ErrorKind::Exists => "choose another file name, or use --force to replace it",
        ErrorKind::Key if m.contains("encrypted") || m.contains("passphrase is needed") => {
            "use --passphrase-env VAR or --passphrase-file FILE (or run on a terminal to be asked)"
        }
        ErrorKind::AlreadyIssued => "use --reissue to issue again on purpose",
        ErrorKind::InvalidInput
            if m.contains("looks like a text file") || m.contains("no loadable segments") =>
        {
            "use --format bin if the file's bytes really are the image"
        }
        ErrorKind::Segments => {
            "choose the addresses with --range START..END (e.g. --range 0x00000000..0x00100000), or pack one component per segment"
        }
        ErrorKind::Usage if m.contains("not in the future") => {
            "give a later --expires date, or --allow-past to issue expired codes on purpose"
        }
        ErrorKind::Registry if m.contains("no activation registry") => {
            "check the --registry path, or add --new-registry to start a new registry on purpose"
        }
        ErrorKind::RegistryBusy => {
            "wait for the other station or codes run to finish (or stop it), then run this again"
        }
        ErrorKind::Expired => "check the date the codes were issued for; --at DATE checks another day",
        ErrorKind::NeedKey => "give the signer's public key with --pub, or --unverified to write it anyway",
        ErrorKind::Usage if m.contains("from version") => "give it with --from-version",
        ErrorKind::NoPort => "check the cable and `bluesphere ports`",
        _ => return e.hint.clone(),
    };
    s.to_string()
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

    /// A progress bar fed by job events (hidden unless stderr is a terminal).
    pub fn bar(&self, label: &str) -> Bar {
        if !self.bars {
            return Bar(None);
        }
        let b = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_message(label.to_string());
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        Bar(Some(Mutex::new(b)))
    }

    /// Print the result or the error; return the exit code.
    pub fn finish(&self, res: Result<serde_json::Value, Error>) -> i32 {
        match res {
            Ok(v) => {
                if self.json {
                    println!("{v}");
                }
                0
            }
            Err(e) => {
                let hint = cli_hint(&e);
                if self.json {
                    println!(
                        "{}",
                        serde_json::json!({"error": {"kind": e.kind, "message": e.message, "hint": hint}})
                    );
                }
                eprintln!("error: {}", e.message);
                if !hint.is_empty() {
                    eprintln!("  hint: {hint}");
                }
                exit_code(e.kind)
            }
        }
    }
}

pub struct Bar(Option<Mutex<ProgressBar>>);

impl Bar {
    pub fn done(&self) {
        if let Some(b) = &self.0 {
            if let Ok(b) = b.lock() {
                b.finish_and_clear();
            }
        }
    }
}

impl Progress for Bar {
    fn event(&self, e: Event) {
        let Some(b) = &self.0 else {
            if let Event::Warning { message } = e {
                eprintln!("warning: {message}");
            }
            return;
        };
        let Ok(b) = b.lock() else { return };
        match e {
            Event::Stage { name, .. } => b.set_message(name),
            Event::Bytes { done, total } | Event::Items { done, total } => {
                b.set_length(total);
                b.set_position(done);
            }
            Event::Connected { product, version } => b.set_message(format!("{product} {version}")),
            Event::Push {
                stage,
                acked,
                total,
                ..
            } => {
                if total > 0 {
                    b.set_length(total);
                    b.set_position(acked);
                }
                if stage != "data" {
                    b.set_message(stage);
                }
            }
            Event::Reconnecting { .. } => b.set_message("reconnecting"),
            Event::Reconnected => b.set_message("resuming"),
            Event::Device { .. } => {}
            Event::Warning { message } => b.println(format!("warning: {message}")),
        }
    }
}

/// Human description of a package.
pub fn describe(report: &bluesphere_api::package::InspectReport) -> String {
    use bluesphere_api::package::SignatureCheck;
    let info = &report.info;
    let signer = match report.signature {
        SignatureCheck::Valid => format!("signed by key {} (signature valid)", info.key_id),
        SignatureCheck::NotChecked => format!(
            "claims key {} (signature not checked: give --pub to check it)",
            info.key_id
        ),
    };
    let mut s = format!(
        "BlueSphere package v{} ({} bytes)\n  product   {}\n  hardware  {}\n  created   {} (unix)\n  {signer}\n",
        info.format_version, info.package_size, info.product_id, info.hardware_id, info.created
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_an_exit_code_of_the_table() {
        for k in ErrorKind::ALL {
            assert!(
                matches!(exit_code(*k), 1..=7 | 130),
                "{k}: {}",
                exit_code(*k)
            );
        }
        assert_eq!(exit_code(ErrorKind::Usage), 2);
        assert_eq!(exit_code(ErrorKind::BadSignature), 4);
    }

    /// The README's exit-code table lists every kind on the row of its code.
    #[test]
    fn the_readme_table_is_complete() {
        let readme = include_str!("../../README.md");
        for k in ErrorKind::ALL {
            let code = exit_code(*k);
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| {code} |")))
                .unwrap_or_else(|| panic!("no README row for exit code {code}"));
            assert!(
                row.contains(&format!("`{}`", k.as_str())),
                "README: `{k}` is not on the row of exit code {code}"
            );
        }
    }
}
