//! Batch activation codes: read chip UIDs, sign in parallel, check CSV files.

use bluesphere_core::activation::{self, check_uid, Code, Terms};
use p256::ecdsa::{SigningKey, VerifyingKey};

/// A problem on one input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// The code is genuine but expired on the day checked against.
    pub expired: bool,
}

/// Parse UIDs: one hex UID per line (`0x` prefix, `:`/`-`/space separators allowed), or a CSV
/// whose header names a `uid` column (else the first column). Blank lines and `#` comments
/// are skipped. Duplicates are errors unless `allow_duplicates` (then later copies are
/// dropped). Returns `(line, uid)` pairs, or every bad line.
pub fn parse_uids(
    text: &str,
    allow_duplicates: bool,
) -> Result<Vec<(usize, Vec<u8>)>, Vec<LineError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashMap::new();
    let mut column: Option<usize> = None;
    let mut first = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = l.split(',').map(str::trim).collect();
        if first {
            first = false;
            if let Some(c) = cells.iter().position(|c| c.eq_ignore_ascii_case("uid")) {
                column = Some(c);
                continue;
            }
        }
        let cell = cells.get(column.unwrap_or(0)).copied().unwrap_or("");
        match parse_uid(cell) {
            Ok(uid) => {
                if let Some(prev) = seen.get(&uid) {
                    if !allow_duplicates {
                        errors.push(LineError {
                            expired: false,
                            line,
                            message: format!("duplicate of line {prev}"),
                        });
                    }
                    continue;
                }
                seen.insert(uid.clone(), line);
                out.push((line, uid));
            }
            Err(message) => errors.push(LineError {
                line,
                message,
                expired: false,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// One UID in hex.
pub fn parse_uid(cell: &str) -> Result<Vec<u8>, String> {
    let c = cell.trim();
    let c = c
        .strip_prefix("0x")
        .or_else(|| c.strip_prefix("0X"))
        .unwrap_or(c);
    let hex: String = c
        .chars()
        .filter(|ch| !matches!(ch, ':' | '-' | ' '))
        .collect();
    if hex.is_empty() {
        return Err("empty UID".into());
    }
    if let Some(bad) = hex.chars().find(|ch| !ch.is_ascii_hexdigit()) {
        return Err(format!("{bad:?} is not a hex digit in {cell:?}"));
    }
    if !hex.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits in {cell:?}"));
    }
    let uid = hex::decode(&hex).map_err(|e| e.to_string())?;
    check_uid(&uid).map_err(|e| e.to_string())?;
    Ok(uid)
}

/// Sign a code for every UID, on all cores; `progress(done)` is called as batches finish.
pub fn generate(
    key: &SigningKey,
    product: &str,
    terms: Terms,
    uids: &[Vec<u8>],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Code>, activation::CodeError> {
    let signer = activation::BatchSigner::new(key);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    let per = uids.len().div_ceil(threads).max(1);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let parts: Vec<Result<Vec<Code>, activation::CodeError>> = std::thread::scope(|s| {
        let hs: Vec<_> = uids
            .chunks(per)
            .map(|chunk| {
                let (done, signer) = (&done, &signer);
                s.spawn(move || {
                    let mut v = Vec::with_capacity(chunk.len());
                    for part in chunk.chunks(1024) {
                        v.extend(signer.sign(product, part, terms)?);
                        let d = done.fetch_add(part.len(), std::sync::atomic::Ordering::Relaxed);
                        progress(d + part.len());
                    }
                    Ok(v)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or(Err(activation::CodeError::Malformed("worker failed")))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(uids.len());
    for p in parts {
        all.extend(p?);
    }
    Ok(all)
}

/// Check a `uid,code` CSV against `keys` on day `at_days` (since 1970-01-01); returns the
/// number of valid rows, or every bad line. A code expires at the start of its expiry day.
pub fn verify_csv(
    text: &str,
    product: &str,
    keys: &[VerifyingKey],
    at_days: u32,
) -> Result<usize, (usize, Vec<LineError>)> {
    let rows: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .filter(|(_, l)| !l.to_ascii_lowercase().starts_with("uid,"))
        .collect();
    let check = |(line, l): &(usize, &str)| -> Option<LineError> {
        let err = |m: String| {
            Some(LineError {
                line: *line,
                message: m,
                expired: false,
            })
        };
        let mut cells = l.split(',').map(str::trim);
        let (Some(u), Some(c)) = (cells.next(), cells.next()) else {
            return err("expected uid,code".into());
        };
        let uid = match parse_uid(u) {
            Ok(x) => x,
            Err(m) => return err(m),
        };
        // The text form carries no key id: try each key, report the first key's verdict.
        let mut first_err = None;
        for k in keys {
            let r = Code::from_text(c, k).and_then(|code| {
                code.verify(product, &uid, std::slice::from_ref(k))
                    .map(|()| code.terms.expiry_days)
            });
            match r {
                Ok(0) => return None,
                Ok(expiry) if expiry > at_days => return None,
                Ok(expiry) => {
                    return Some(LineError {
                        line: *line,
                        message: format!("genuine, but expired on {}", date_of_days(expiry)),
                        expired: true,
                    })
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        err(first_err.map_or("no public key".into(), |e| e.to_string()))
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(1);
    let per = rows.len().div_ceil(threads).max(1);
    let errors: Vec<LineError> = std::thread::scope(|s| {
        let hs: Vec<_> = rows
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().filter_map(check).collect::<Vec<_>>()))
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    if errors.is_empty() {
        Ok(rows.len())
    } else {
        Err((rows.len(), errors))
    }
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (civil calendar, proleptic Gregorian).
pub fn date_of_days(days: u32) -> String {
    let d = time::OffsetDateTime::UNIX_EPOCH.date() + time::Duration::days(i64::from(days));
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}
