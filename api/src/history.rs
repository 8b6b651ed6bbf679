//! History: every push and every code batch, in a local SQLite file (the CLI and the Studio
//! both record there), with a filter and a CSV export.
//!
//! Where: `$BLUESPHERE_HISTORY`, else `$XDG_DATA_HOME/bluesphere/history.sqlite`, else
//! `~/.local/share/bluesphere/history.sqlite`. A job never fails because its history could
//! not be written: it says so in a warning.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use crate::progress::{Event, Progress};
use crate::{files, Error, ErrorKind};

/// One recorded job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct HistoryEntry {
    /// When it ended (RFC 3339, UTC).
    pub time: String,
    /// `push` or `codes`.
    pub job: String,
    /// The port or device address (pushes), the registry (codes).
    pub target: String,
    /// The package file (pushes), the product (codes).
    pub subject: String,
    /// Version the device ran before (pushes).
    pub from_version: String,
    /// Version the package installs (pushes).
    pub to_version: String,
    /// `ok`, or the error kind.
    pub result: String,
    /// The device's phase and its meaning, or the error message.
    pub detail: String,
    /// Seconds.
    pub seconds: f64,
    /// Payload bytes sent (pushes).
    pub bytes: u64,
    /// Resumes: restarts and reconnections (pushes).
    pub resumes: u32,
    /// Codes issued (codes).
    pub count: u64,
}

/// The history file unless told.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("BLUESPHERE_HISTORY") {
        return PathBuf::from(p);
    }
    bluesphere_host::registry::data_dir().join("history.sqlite")
}

fn sql_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("history {}: {e}", path.display()))
}

fn open(path: &Path) -> Result<Connection, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| sql_error(path, e))?;
    }
    let conn = Connection::open(path).map_err(|e| sql_error(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| sql_error(path, e))?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS history (
            id INTEGER PRIMARY KEY, time TEXT NOT NULL, job TEXT NOT NULL, target TEXT NOT NULL,
            subject TEXT NOT NULL, from_version TEXT NOT NULL, to_version TEXT NOT NULL,
            result TEXT NOT NULL, detail TEXT NOT NULL, seconds REAL NOT NULL,
            bytes INTEGER NOT NULL, resumes INTEGER NOT NULL, count INTEGER NOT NULL)",
    )
    .map_err(|e| sql_error(path, e))?;
    Ok(conn)
}

/// Now, RFC 3339 UTC.
pub fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Record `e` in `path`.
pub fn record(path: &Path, e: &HistoryEntry) -> Result<(), Error> {
    let conn = open(path)?;
    conn.execute(
        "INSERT INTO history (time, job, target, subject, from_version, to_version, result,
            detail, seconds, bytes, resumes, count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            e.time,
            e.job,
            e.target,
            e.subject,
            e.from_version,
            e.to_version,
            e.result,
            e.detail,
            e.seconds,
            i64::try_from(e.bytes).unwrap_or(i64::MAX),
            e.resumes,
            i64::try_from(e.count).unwrap_or(i64::MAX),
        ],
    )
    .map_err(|err| sql_error(path, err))?;
    Ok(())
}

/// Record in the default history; a failure is a warning to `progress`, never an error.
pub(crate) fn record_or_warn(e: &HistoryEntry, progress: &dyn Progress) {
    let path = default_path();
    if let Err(err) = record(&path, e) {
        progress.event(Event::Warning {
            message: format!("not recorded in the history: {}", err.message),
        });
    }
}

/// Read the history.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct HistoryRequest {
    /// History file (default: [`default_path`]).
    pub path: Option<PathBuf>,
    /// Keep entries with this text in any column (case-insensitive).
    pub filter: String,
    /// At most this many, newest first (0: all).
    pub limit: u32,
    /// Also write them as CSV here.
    pub export: Option<PathBuf>,
}

/// The history, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct HistoryReport {
    /// Entries.
    pub entries: Vec<HistoryEntry>,
    /// The file read.
    pub path: PathBuf,
    /// The CSV written, if asked.
    pub exported: Option<PathBuf>,
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// List (and export) the history.
pub fn history(req: &HistoryRequest) -> Result<HistoryReport, Error> {
    let path = req.path.clone().unwrap_or_else(default_path);
    if let Some(out) = &req.export {
        files::check_output(out, &[&path])?;
    }
    let entries = if path.exists() {
        let conn = open(&path)?;
        let like = format!("%{}%", req.filter.to_lowercase());
        let limit = if req.limit == 0 {
            -1
        } else {
            i64::from(req.limit)
        };
        let mut st = conn
            .prepare(
                "SELECT time, job, target, subject, from_version, to_version, result, detail,
                        seconds, bytes, resumes, count FROM history
                 WHERE lower(time || ' ' || job || ' ' || target || ' ' || subject || ' ' ||
                       from_version || ' ' || to_version || ' ' || result || ' ' || detail) LIKE ?1
                 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(|e| sql_error(&path, e))?;
        let rows = st
            .query_map(params![like, limit], |r| {
                Ok(HistoryEntry {
                    time: r.get(0)?,
                    job: r.get(1)?,
                    target: r.get(2)?,
                    subject: r.get(3)?,
                    from_version: r.get(4)?,
                    to_version: r.get(5)?,
                    result: r.get(6)?,
                    detail: r.get(7)?,
                    seconds: r.get(8)?,
                    bytes: u64::try_from(r.get::<_, i64>(9)?).unwrap_or(0),
                    resumes: r.get(10)?,
                    count: u64::try_from(r.get::<_, i64>(11)?).unwrap_or(0),
                })
            })
            .map_err(|e| sql_error(&path, e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| sql_error(&path, e))?
    } else {
        Vec::new()
    };
    if let Some(out) = &req.export {
        let mut csv = String::from(
            "time,job,target,subject,from_version,to_version,result,detail,seconds,bytes,resumes,count\n",
        );
        for e in &entries {
            let cells = [
                csv_cell(&e.time),
                csv_cell(&e.job),
                csv_cell(&e.target),
                csv_cell(&e.subject),
                csv_cell(&e.from_version),
                csv_cell(&e.to_version),
                csv_cell(&e.result),
                csv_cell(&e.detail),
                format!("{:.3}", e.seconds),
                e.bytes.to_string(),
                e.resumes.to_string(),
                e.count.to_string(),
            ];
            csv.push_str(&cells.join(","));
            csv.push('\n');
        }
        files::write_atomic(out, csv.as_bytes(), 0o644)?;
    }
    Ok(HistoryReport {
        entries,
        path,
        exported: req.export.clone(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn record_filter_and_export() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("h.sqlite");
        for (i, result) in ["ok", "wrong-base", "ok"].iter().enumerate() {
            record(
                &path,
                &HistoryEntry {
                    time: format!("2026-12-06T10:0{i}:00Z"),
                    job: "push".into(),
                    target: "/dev/ttyUSB0".into(),
                    subject: "fw, \"1.1\".bsp".into(),
                    to_version: "1.1.0".into(),
                    result: (*result).into(),
                    bytes: 100 * i as u64,
                    ..HistoryEntry::default()
                },
            )
            .unwrap();
        }
        let all = history(&HistoryRequest {
            path: Some(path.clone()),
            ..HistoryRequest::default()
        })
        .unwrap();
        assert_eq!(all.entries.len(), 3);
        assert_eq!(all.entries[0].bytes, 200, "newest first");
        let bad = history(&HistoryRequest {
            path: Some(path.clone()),
            filter: "WRONG-base".into(),
            export: Some(d.path().join("h.csv")),
            ..HistoryRequest::default()
        })
        .unwrap();
        assert_eq!(bad.entries.len(), 1);
        let csv = std::fs::read_to_string(d.path().join("h.csv")).unwrap();
        assert_eq!(csv.lines().count(), 2);
        assert!(csv.contains("\"fw, \"\"1.1\"\".bsp\""), "{csv}");
        // The history file itself is never an export target.
        let e = history(&HistoryRequest {
            path: Some(path.clone()),
            export: Some(path.clone()),
            ..HistoryRequest::default()
        })
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutputConflict);
        // No file yet: an empty history, nothing created.
        let none = history(&HistoryRequest {
            path: Some(d.path().join("none.sqlite")),
            ..HistoryRequest::default()
        })
        .unwrap();
        assert!(none.entries.is_empty());
        assert!(!d.path().join("none.sqlite").exists());
    }
}
