//! The activation-code registry: every issued code with time, station, operator and key id,
//! in an SQLite file (rusqlite, SQLite compiled in). A UID gets one code per product; a second
//! one needs an explicit re-issue. Production orders cap how many codes a key may issue.
//! Several stations on one machine share the file: each batch is one `BEGIN IMMEDIATE`
//! transaction, and a unique index makes a duplicate impossible even when two batches race.
//!
//! | table | columns |
//! |---|---|
//! | `codes` | `id`, `product`, `uid` (hex), `code` (text form), `key_id` (hex), `issued_at` (RFC 3339 UTC), `station`, `operator`, `order_id`, `reissue` (0/1) |
//! | `orders` | `order_id`, `key_id`, `product`, `max_codes`, `issued` |
//!
//! Unique: `(product, uid)` among rows with `reissue = 0`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

/// Registry errors.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// SQLite failed.
    #[error("registry {path}: {source}")]
    Sql {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// Could not create the directory.
    #[error("registry directory {0}: {1}")]
    Dir(String, std::io::Error),
    /// Another program held the registry locked for longer than the wait.
    #[error("registry {path} is locked by another program (a station or a codes run) for more than {seconds} s; nothing was recorded")]
    Busy {
        /// File.
        path: String,
        /// How long it waited.
        seconds: u64,
    },
    /// Some UIDs already have codes.
    #[error("{count} UID(s) already have a code for product {product} (first: {first}); nothing was issued; issue again on purpose as a re-issue")]
    AlreadyIssued {
        /// Product.
        product: String,
        /// How many.
        count: usize,
        /// The first few.
        first: String,
    },
    /// A re-issue for a UID that never had a code.
    #[error("{0} never had a code: nothing to re-issue")]
    NotIssued(String),
    /// The production order does not exist or is for another key/product.
    #[error("production order {0}: {1}")]
    Order(String, &'static str),
    /// The production order's limit would be passed.
    #[error("production order {order} allows {max} codes, {issued} issued, {requested} more requested: nothing was issued")]
    Limit {
        /// Order.
        order: String,
        /// Cap.
        max: u64,
        /// Already issued.
        issued: u64,
        /// This batch.
        requested: u64,
    },
}

impl RegistryError {
    /// Stable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryError::Sql { .. } | RegistryError::Dir(..) => "registry",
            RegistryError::Busy { .. } => "registry-busy",
            RegistryError::AlreadyIssued { .. } => "already-issued",
            RegistryError::NotIssued(_) => "not-issued",
            RegistryError::Order(..) => "order",
            RegistryError::Limit { .. } => "order-limit",
        }
    }
}

/// Who issues, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct IssueMeta {
    /// Product id.
    pub product: String,
    /// Signing key id (hex).
    pub key_id: String,
    /// Station name.
    pub station: String,
    /// Operator name.
    pub operator: String,
    /// Production order.
    pub order: Option<String>,
    /// Issue again on purpose (each UID must have a code already).
    pub reissue: bool,
}

/// The registry file.
#[derive(Debug)]
pub struct Registry {
    conn: Connection,
    path: String,
}

/// Where the registry lives unless told: `$BLUESPHERE_REGISTRY`, else
/// `$XDG_DATA_HOME/bluesphere/registry.sqlite`, else `~/.local/share/bluesphere/registry.sqlite`.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("BLUESPHERE_REGISTRY") {
        return PathBuf::from(p);
    }
    data_dir().join("registry.sqlite")
}

/// BlueSphere's folder for what it keeps on this machine (registry, history):
/// `$XDG_DATA_HOME/bluesphere`, else `~/.local/share/bluesphere`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("bluesphere")
}

/// How long an open or a batch waits for another station's transaction (theirs last
/// milliseconds; a longer lock is a stuck program and is reported).
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// A SQLite error on `path`, a lock held too long told apart.
fn sql_error(path: &str, source: rusqlite::Error) -> RegistryError {
    if is_busy(&source) {
        RegistryError::Busy {
            path: path.to_string(),
            seconds: BUSY_WAIT.as_secs(),
        }
    } else {
        RegistryError::Sql {
            path: path.to_string(),
            source,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// WAL mode (once per file: it is persistent), durable commits, the tables.
fn set_up(conn: &mut Connection) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS codes (
            id INTEGER PRIMARY KEY,
            product TEXT NOT NULL, uid TEXT NOT NULL, code TEXT NOT NULL,
            key_id TEXT NOT NULL, issued_at TEXT NOT NULL,
            station TEXT NOT NULL, operator TEXT NOT NULL, order_id TEXT,
            reissue INTEGER NOT NULL DEFAULT 0);
         CREATE UNIQUE INDEX IF NOT EXISTS one_code_per_uid ON codes(product, uid) WHERE reissue = 0;
         CREATE TABLE IF NOT EXISTS orders (
            order_id TEXT PRIMARY KEY, key_id TEXT NOT NULL, product TEXT NOT NULL,
            max_codes INTEGER NOT NULL, issued INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE IF NOT EXISTS refusals (
            id INTEGER PRIMARY KEY, product TEXT NOT NULL, uid TEXT NOT NULL,
            refused_at TEXT NOT NULL, station TEXT NOT NULL, operator TEXT NOT NULL);",
    )?;
    tx.commit()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Registry {
    /// Open (creating) the registry at `path`.
    pub fn open(path: &Path) -> Result<Registry, RegistryError> {
        let p = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| RegistryError::Dir(dir.display().to_string(), e))?;
        }
        let sql = |source| sql_error(&p, source);
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(BUSY_WAIT).map_err(sql)?;
        // Switching a new file to WAL and creating the tables can meet another connection
        // doing the same (a gang station opens one per port at once); SQLite then answers
        // "locked" at once instead of waiting, so the whole set-up is retried.
        let deadline = Instant::now() + BUSY_WAIT;
        let mut pause = Duration::from_millis(2);
        loop {
            match set_up(&mut conn) {
                Err(e) if is_busy(&e) && Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                r => break r.map_err(sql)?,
            }
        }
        Ok(Registry { conn, path: p })
    }

    fn sql(&self, source: rusqlite::Error) -> RegistryError {
        sql_error(&self.path, source)
    }

    /// Create a production order: `key_id` may issue `max` codes for `product` under it.
    pub fn create_order(
        &mut self,
        order: &str,
        key_id: &str,
        product: &str,
        max: u64,
    ) -> Result<(), RegistryError> {
        self.conn
            .execute(
                "INSERT INTO orders(order_id, key_id, product, max_codes) VALUES (?1, ?2, ?3, ?4)",
                params![order, key_id, product, max as i64],
            )
            .map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::ConstraintViolation) => {
                    RegistryError::Order(order.into(), "exists already")
                }
                _ => self.sql(e),
            })?;
        Ok(())
    }

    /// The first code issued to `uid` for `product`, if any.
    pub fn lookup(&self, product: &str, uid_hex: &str) -> Result<Option<String>, RegistryError> {
        self.conn
            .query_row(
                "SELECT code FROM codes WHERE product = ?1 AND uid = ?2 ORDER BY id DESC LIMIT 1",
                params![product, uid_hex],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Record a batch of `(uid hex, code text)`: all or nothing.
    pub fn issue(
        &mut self,
        items: &[(String, String)],
        meta: &IssueMeta,
    ) -> Result<(), RegistryError> {
        let path = self.path.clone();
        let sql = |source| sql_error(&path, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        if let Some(order) = &meta.order {
            let row: Option<(String, String, i64, i64)> = tx
                .query_row(
                    "SELECT key_id, product, max_codes, issued FROM orders WHERE order_id = ?1",
                    params![order],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(sql)?;
            let (key, product, max, issued) =
                row.ok_or(RegistryError::Order(order.clone(), "no such order"))?;
            if key != meta.key_id {
                return Err(RegistryError::Order(
                    order.clone(),
                    "belongs to another key",
                ));
            }
            if product != meta.product {
                return Err(RegistryError::Order(
                    order.clone(),
                    "is for another product",
                ));
            }
            if issued as u64 + items.len() as u64 > max as u64 {
                return Err(RegistryError::Limit {
                    order: order.clone(),
                    max: max as u64,
                    issued: issued as u64,
                    requested: items.len() as u64,
                });
            }
            tx.execute(
                "UPDATE orders SET issued = issued + ?1 WHERE order_id = ?2",
                params![items.len() as i64, order],
            )
            .map_err(sql)?;
        }
        let at = now_rfc3339();
        let mut dups = Vec::new();
        {
            let mut exists = tx
                .prepare_cached(
                    "SELECT 1 FROM codes WHERE product = ?1 AND uid = ?2 AND reissue = 0",
                )
                .map_err(sql)?;
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO codes(product, uid, code, key_id, issued_at, station, operator, order_id, reissue)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(sql)?;
            for (uid, code) in items {
                if meta.reissue && !exists.exists(params![meta.product, uid]).map_err(sql)? {
                    return Err(RegistryError::NotIssued(uid.clone()));
                }
                let r = ins.execute(params![
                    meta.product,
                    uid,
                    code,
                    meta.key_id,
                    at,
                    meta.station,
                    meta.operator,
                    meta.order,
                    i64::from(meta.reissue)
                ]);
                match r {
                    Ok(_) => {}
                    Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                        dups.push(uid.clone())
                    }
                    Err(e) => return Err(sql(e)),
                }
            }
        }
        if !dups.is_empty() {
            // The batch is rolled back; the refusals are kept (for the registry's figures).
            drop(tx);
            self.record_refusals(&dups, meta, &at)?;
            return Err(RegistryError::AlreadyIssued {
                product: meta.product.clone(),
                count: dups.len(),
                first: dups.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            });
        }
        tx.commit().map_err(sql)?;
        Ok(())
    }

    /// The audit log as CSV (`id,product,uid,code,key_id,issued_at,station,operator,order_id,reissue`);
    /// the number of rows.
    pub fn export_csv(&self, out: &mut dyn std::io::Write) -> Result<u64, RegistryError> {
        let mut st = self
            .conn
            .prepare("SELECT id, product, uid, code, key_id, issued_at, station, operator, COALESCE(order_id, ''), reissue FROM codes ORDER BY id")
            .map_err(|e| self.sql(e))?;
        let _ = writeln!(
            out,
            "id,product,uid,code,key_id,issued_at,station,operator,order_id,reissue"
        );
        let mut rows = st.query([]).map_err(|e| self.sql(e))?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(|e| self.sql(e))? {
            let f = |i: usize| -> String { r.get::<_, String>(i).unwrap_or_default() };
            let id: i64 = r.get(0).unwrap_or_default();
            let re: i64 = r.get(9).unwrap_or_default();
            let _ = writeln!(
                out,
                "{id},{},{},{},{},{},{},{},{},{re}",
                csv(&f(1)),
                f(2),
                f(3),
                f(4),
                f(5),
                csv(&f(6)),
                csv(&f(7)),
                csv(&f(8))
            );
            n += 1;
        }
        Ok(n)
    }

    /// Number of rows with `reissue = 0` per (product, uid) above one: must be 0 (for tests).
    pub fn duplicate_count(&self) -> Result<u64, RegistryError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM (SELECT product, uid FROM codes WHERE reissue = 0 GROUP BY product, uid HAVING COUNT(*) > 1)",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.sql(e))
    }

    /// Remember UIDs refused because they already had a code.
    fn record_refusals(
        &mut self,
        uids: &[String],
        meta: &IssueMeta,
        at: &str,
    ) -> Result<(), RegistryError> {
        let path = self.path.clone();
        let sql = |source| sql_error(&path, source);
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO refusals(product, uid, refused_at, station, operator)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql)?;
            for uid in uids {
                ins.execute(params![meta.product, uid, at, meta.station, meta.operator])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// What the registry holds: codes issued (first issues and reissues), UIDs refused as
    /// duplicates, and per production order and per product the codes issued.
    pub fn figures(&self) -> Result<Figures, RegistryError> {
        let sql = |e| self.sql(e);
        let one = |q: &str| -> Result<u64, RegistryError> {
            self.conn
                .query_row(q, [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(sql)
        };
        let issued = one("SELECT COUNT(*) FROM codes WHERE reissue = 0")?;
        let reissued = one("SELECT COUNT(*) FROM codes WHERE reissue = 1")?;
        let refused = one("SELECT COUNT(*) FROM refusals")?;
        let mut orders = Vec::new();
        {
            let mut q = self
                .conn
                .prepare("SELECT order_id, product, key_id, max_codes, issued FROM orders ORDER BY order_id")
                .map_err(sql)?;
            let rows = q
                .query_map([], |r| {
                    Ok(OrderFigures {
                        order: r.get(0)?,
                        product: r.get(1)?,
                        key_id: r.get(2)?,
                        limit: r.get::<_, i64>(3)? as u64,
                        issued: r.get::<_, i64>(4)? as u64,
                    })
                })
                .map_err(sql)?;
            for row in rows {
                orders.push(row.map_err(sql)?);
            }
        }
        let mut products = Vec::new();
        {
            let mut q = self
                .conn
                .prepare(
                    "SELECT product, SUM(reissue = 0), SUM(reissue = 1) FROM codes
                     GROUP BY product ORDER BY product",
                )
                .map_err(sql)?;
            let rows = q
                .query_map([], |r| {
                    Ok(ProductFigures {
                        product: r.get(0)?,
                        issued: r.get::<_, i64>(1)? as u64,
                        reissued: r.get::<_, i64>(2)? as u64,
                    })
                })
                .map_err(sql)?;
            for row in rows {
                products.push(row.map_err(sql)?);
            }
        }
        Ok(Figures {
            issued,
            reissued,
            refused_duplicates: refused,
            orders,
            products,
        })
    }

    /// Rows in `codes`.
    pub fn count(&self) -> Result<u64, RegistryError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM codes", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.sql(e))
    }
}

/// The registry's figures ([`Registry::figures`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Figures {
    /// Codes issued (first issues).
    pub issued: u64,
    /// Codes issued again to a UID that had one.
    pub reissued: u64,
    /// UIDs refused because they already had a code.
    pub refused_duplicates: u64,
    /// Per production order.
    pub orders: Vec<OrderFigures>,
    /// Per product.
    pub products: Vec<ProductFigures>,
}

/// One production order's figures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct OrderFigures {
    /// Order id.
    pub order: String,
    /// Product.
    pub product: String,
    /// Key id (hex).
    pub key_id: String,
    /// Most codes.
    pub limit: u64,
    /// Codes issued.
    pub issued: u64,
}

/// One product's figures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct ProductFigures {
    /// Product id.
    pub product: String,
    /// Codes issued (first issues).
    pub issued: u64,
    /// Codes issued again.
    pub reissued: u64,
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    /// The figures count first issues, reissues and refused duplicates (a refused batch
    /// leaves no code, only its refusals), per order and per product.
    #[test]
    fn figures_count_issues_refusals_orders_and_products() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(&dir.path().join("r.sqlite")).unwrap();
        let empty = reg.figures().unwrap();
        assert_eq!(
            (empty.issued, empty.reissued, empty.refused_duplicates),
            (0, 0, 0)
        );
        reg.create_order("PO-1", "k", "pump", 10).unwrap();
        let meta = |product: &str, order: Option<&str>, reissue: bool| IssueMeta {
            product: product.into(),
            key_id: "k".into(),
            order: order.map(String::from),
            reissue,
            ..IssueMeta::default()
        };
        let items = |uids: &[&str]| -> Vec<(String, String)> {
            uids.iter()
                .map(|u| (u.to_string(), format!("c-{u}")))
                .collect()
        };
        reg.issue(
            &items(&["01", "02", "03"]),
            &meta("pump", Some("PO-1"), false),
        )
        .unwrap();
        reg.issue(&items(&["01"]), &meta("fan", None, false))
            .unwrap();
        // "02" and "03" already have codes: the whole batch is refused, "04" included.
        let e = reg.issue(&items(&["02", "03", "04"]), &meta("pump", None, false));
        assert!(
            matches!(e, Err(RegistryError::AlreadyIssued { count: 2, .. })),
            "{e:?}"
        );
        reg.issue(&items(&["01"]), &meta("pump", None, true))
            .unwrap();
        let f = reg.figures().unwrap();
        assert_eq!((f.issued, f.reissued, f.refused_duplicates), (4, 1, 2));
        assert_eq!(
            f.orders,
            vec![OrderFigures {
                order: "PO-1".into(),
                product: "pump".into(),
                key_id: "k".into(),
                limit: 10,
                issued: 3
            }]
        );
        let by: Vec<(String, u64, u64)> = f
            .products
            .iter()
            .map(|p| (p.product.clone(), p.issued, p.reissued))
            .collect();
        assert_eq!(by, vec![("fan".into(), 1, 0), ("pump".into(), 3, 1)]);
        assert_eq!(reg.count().unwrap(), 5);
    }

    /// A gang station opens the registry from one thread per port at the same instant, on a
    /// file that may not exist yet: every open must succeed (it once failed with "database is
    /// locked" while another connection was switching the new file to WAL).
    #[test]
    fn many_opens_at_once_on_a_new_file_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..40 {
            let path = dir.path().join(format!("r{round}.sqlite"));
            let n = 8;
            let gate = Arc::new(Barrier::new(n));
            let errors: Vec<String> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..n)
                    .map(|i| {
                        let (path, gate) = (path.clone(), gate.clone());
                        s.spawn(move || {
                            gate.wait();
                            let mut reg = Registry::open(&path).map_err(|e| e.to_string())?;
                            let meta = IssueMeta {
                                product: "p".into(),
                                key_id: "k".into(),
                                ..IssueMeta::default()
                            };
                            reg.issue(&[(format!("{i:02x}"), format!("c{i}"))], &meta)
                                .map_err(|e| e.to_string())
                        })
                    })
                    .collect();
                hs.into_iter()
                    .filter_map(|h| h.join().unwrap().err())
                    .collect()
            });
            assert!(errors.is_empty(), "round {round}: {errors:?}");
            let reg = Registry::open(&path).unwrap();
            for i in 0..n {
                assert_eq!(
                    reg.lookup("p", &format!("{i:02x}")).unwrap(),
                    Some(format!("c{i}"))
                );
            }
        }
    }
}
