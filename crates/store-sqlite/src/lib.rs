//! The Store on SQLite: the embedded default.
//!
//! [`SqliteStore`] keeps Flotilla's durable state (groups and their primary, members, the sample
//! window, the decision core's memory, the event history and the operation log) in one SQLite file.
//! State survives a crash of the controller at any point:
//!
//! - every write is a single statement or one transaction, so there is never half-written state;
//! - the file is in WAL mode with `synchronous=FULL`, so a committed write (in particular an
//!   operation's intent, written before the first provider call) is on disk when the call returns;
//! - `busy_timeout` is 5 s and write transactions are `BEGIN IMMEDIATE`, so two processes (the
//!   daemon and `flotilla status`) can share the file;
//! - the database itself enforces one pending operation per group (a partial unique index), and
//!   [`Store::begin_operation`] reports a second one as [`ErrorKind::Conflict`].
//!
//! The schema lives in `migrations/*.sql`, applied in order and tracked with `PRAGMA user_version`.

mod codec;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_model::{
    AlarmState, AlarmStatus, ErrorKind, Event, EventFilter, EventKind, GroupControls, GroupId, Instance, InstanceId,
    InstanceState, OpId, OpKind, OpState, Operation, OperatorRequest, PolicyState, Sample, SeamError, Store, Timestamp,
};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

/// Schema migrations, in order; migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_name_numbers.sql"),
    include_str!("../migrations/0003_group_controls.sql"),
    include_str!("../migrations/0004_operator_requests.sql"),
    include_str!("../migrations/0005_event_data.sql"),
    include_str!("../migrations/0006_alarms.sql"),
];

/// The schema version this build writes (`PRAGMA user_version` after [`SqliteStore::open`]).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a statement waits for another connection's lock before failing as Transient.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Events kept per group by default; older ones are trimmed on insert.
pub const DEFAULT_EVENTS_KEPT: usize = 10_000;
/// Finished operations kept per group (pending ones are always kept).
pub const DEFAULT_OPERATIONS_KEPT: usize = 1_000;

/// The [`Store`] on SQLite. Cheap to share behind an `Arc`; open one per process.
///
/// The connection sits behind a `std::sync::Mutex` and every trait method locks it, does its work
/// synchronously and returns, without an `.await` in between. This is a deliberate choice over
/// `spawn_blocking` or a connection pool: the statements are small, indexed and sub-millisecond, the
/// control loop makes a handful of store calls per tick, and the lock is never held across an await
/// point, so it cannot deadlock the runtime. Two things can make a call slower: the fsync of a commit
/// (`synchronous=FULL`, milliseconds) and, rarely, waiting up to [`BUSY_TIMEOUT`] for another process
/// holding the write lock; both are bounded and acceptable on the controller's few-second tick.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: Option<PathBuf>,
    events_kept: usize,
    operations_kept: usize,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).field("events_kept", &self.events_kept).finish()
    }
}

type Result<T> = std::result::Result<T, SeamError>;

impl SqliteStore {
    /// Opens (creating the parent directory and the file if needed) and migrates the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let ctx = format!("store: open {}", path.display());
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                SeamError::invalid(format!("{ctx}: cannot create directory {}: {e}", parent.display())).with_source(e)
            })?;
        }
        // A new database is owner-only (SQLite gives its -wal and -shm files the same mode); an
        // existing one keeps the mode its owner chose.
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(SeamError::invalid(format!("{ctx}: cannot create the file: {e}")).with_source(e)),
            }
        }
        let conn = Connection::open(path).map_err(|e| open_err(&ctx, e))?;
        Self::init(conn, Some(path.to_path_buf()), &ctx)
    }

    /// A private, empty store that lives as long as this value (tests, `--dry-run`).
    pub fn open_in_memory() -> Result<Self> {
        let ctx = "store: open in-memory";
        let conn = Connection::open_in_memory().map_err(|e| db_err(ctx, e))?;
        Self::init(conn, None, ctx)
    }

    /// The file behind the store; `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Keeps at most `n` finished operations per group (default [`DEFAULT_OPERATIONS_KEPT`]);
    /// applied when the next one finishes.
    pub fn with_operations_kept(mut self, n: usize) -> Self {
        self.operations_kept = n;
        self
    }

    /// Keeps at most `n` events per group (default [`DEFAULT_EVENTS_KEPT`]); applied on the next insert.
    pub fn with_events_kept(mut self, n: usize) -> Self {
        self.events_kept = n;
        self
    }

    fn init(mut conn: Connection, path: Option<PathBuf>, ctx: &str) -> Result<Self> {
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| open_err(ctx, e))?;
        if path.is_some() {
            // Switching the journal mode takes an exclusive lock and SQLite does not always run the busy
            // handler for it (e.g. while the last connection of another process checkpoints and removes
            // the WAL on close), so a reader such as `flotilla status` could fail with "database is
            // locked" beside a busy daemon. Only switch when the file is not in WAL yet, and retry a
            // busy answer for up to BUSY_TIMEOUT. A file system without shared memory may refuse WAL
            // and stay in a rollback journal, still crash-safe with synchronous=FULL: accept it.
            retry_busy(|| {
                let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
                if !mode.eq_ignore_ascii_case("wal") {
                    let _mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
                }
                Ok(())
            })
            .map_err(|e| open_err(&format!("{ctx}: journal_mode=WAL"), e))?;
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| open_err(&format!("{ctx}: synchronous=FULL"), e))?;
        migrate(&mut conn).map_err(|e| e.context(ctx))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path,
            events_kept: DEFAULT_EVENTS_KEPT,
            operations_kept: DEFAULT_OPERATIONS_KEPT,
        })
    }

    /// A panic while the lock was held cannot leave half-written state (an open transaction is rolled
    /// back when dropped), so a poisoned lock is safe to keep using.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction. A no-op (and no write lock) when it is
/// already there, so `flotilla status` opening the daemon's file does not contend with it.
fn migrate(conn: &mut Connection) -> Result<()> {
    let ctx = "migrate";
    let read_version =
        |c: &Connection| c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).map_err(|e| db_err(ctx, e));
    let current = read_version(conn)?;
    if current == i64::from(SCHEMA_VERSION) {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(ctx, e))?;
    // Another process may have migrated between the check above and taking the write lock.
    let current = read_version(&tx)?;
    let Ok(current) = u32::try_from(current) else {
        return Err(SeamError::bug(format!("{ctx}: schema version {current} is not valid")));
    };
    if current > SCHEMA_VERSION {
        return Err(SeamError::invalid(format!(
            "{ctx}: the database has schema version {current}, newer than this flotilla supports ({SCHEMA_VERSION}); \
             upgrade flotilla or use another state file"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql).map_err(|e| db_err(&format!("{ctx}: migration {:04}", i + 1), e))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(|e| db_err(ctx, e))?;
    tx.commit().map_err(|e| db_err(ctx, e))
}

/// Runs `f` again while it answers busy/locked, for up to [`BUSY_TIMEOUT`] in total: for the few
/// statements where SQLite returns busy without consulting the busy handler.
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    const STEP: Duration = Duration::from_millis(20);
    let attempts = BUSY_TIMEOUT.as_millis() / STEP.as_millis();
    let mut attempt = 0;
    loop {
        match f() {
            Err(e)
                if attempt < attempts
                    && matches!(sqlite_code(&e), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)) =>
            {
                attempt += 1;
                // Only while opening the store (process start-up), which may wait this long anyway.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(STEP);
            }
            other => return other,
        }
    }
}

fn sqlite_code(e: &rusqlite::Error) -> Option<ErrorCode> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    }
}

/// Opening a file that cannot be a store (not a database, not readable or writable) is a
/// configuration problem, Invalid; anything else as [`db_err`]. SQLite reads the file lazily, so
/// "not a database" shows on the first statement, not on `Connection::open`.
fn open_err(ctx: &str, e: rusqlite::Error) -> SeamError {
    match sqlite_code(&e) {
        Some(ErrorCode::CannotOpen | ErrorCode::NotADatabase | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            SeamError::invalid(format!("{ctx}: {e}")).with_source(e)
        }
        _ => db_err(ctx, e),
    }
}

/// Maps a rusqlite error: busy/locked is Transient (another process holds the lock past the busy
/// timeout), everything else is Bug (our SQL, or a damaged file).
fn db_err(ctx: &str, e: rusqlite::Error) -> SeamError {
    let ctx = if ctx.starts_with("store: ") { ctx.to_string() } else { format!("store: {ctx}") };
    let (kind, what) = match sqlite_code(&e) {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => (ErrorKind::Transient, ""),
        // Not a bug: the operator frees space and the loop goes on.
        Some(ErrorCode::DiskFull) => (ErrorKind::Transient, "the disk is full (free space, and Flotilla goes on): "),
        _ => (ErrorKind::Bug, ""),
    };
    SeamError::new(kind, format!("{ctx}: {what}{e}")).with_source(e)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

fn ts_to_sql(ctx: &str, t: Timestamp) -> Result<i64> {
    i64::try_from(t.as_millis())
        .map_err(|_| SeamError::invalid(format!("store: {ctx}: timestamp {} ms is out of range", t.as_millis())))
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Decoding helpers: bad data in a row is a Bug naming the row, never a panic.
fn bad_row(ctx: &str, row: impl std::fmt::Display, what: impl std::fmt::Display) -> SeamError {
    SeamError::bug(format!("store: {ctx}: {row}: {what}"))
}

fn ts_from_sql(ctx: &str, row: &str, column: &str, v: i64) -> Result<Timestamp> {
    u64::try_from(v).map(Timestamp).map_err(|_| bad_row(ctx, row, format!("{column} is negative ({v})")))
}

fn count_from_sql(ctx: &str, row: &str, column: &str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| bad_row(ctx, row, format!("{column} is out of range ({v})")))
}

struct RawInstance {
    id: String,
    name: String,
    state: String,
    failure_reason: Option<String>,
    address: Option<String>,
    created_at_ms: i64,
    tags_json: String,
}

struct RawOperation {
    id: i64,
    group: String,
    kind: String,
    payload_json: String,
    state: String,
    failure_reason: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

const OPERATION_COLUMNS: &str =
    "id, group_name, kind, payload_json, state, failure_reason, created_at_ms, updated_at_ms";

fn raw_operation(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawOperation> {
    Ok(RawOperation {
        id: r.get(0)?,
        group: r.get(1)?,
        kind: r.get(2)?,
        payload_json: r.get(3)?,
        state: r.get(4)?,
        failure_reason: r.get(5)?,
        created_at_ms: r.get(6)?,
        updated_at_ms: r.get(7)?,
    })
}

fn decode_operation(ctx: &str, raw: RawOperation) -> Result<Operation> {
    let row = format!("operations row {} (group {})", raw.id, raw.group);
    let kind = codec::decode_op(&raw.kind, &raw.payload_json).map_err(|what| bad_row(ctx, &row, what))?;
    let state = match raw.state.as_str() {
        "pending" => OpState::Pending,
        "done" => OpState::Done,
        "failed" => OpState::Failed(raw.failure_reason.unwrap_or_default()),
        other => return Err(bad_row(ctx, &row, format!("unknown operation state {other:?}"))),
    };
    Ok(Operation {
        id: OpId(raw.id),
        group: GroupId(raw.group),
        kind,
        state,
        created_at: ts_from_sql(ctx, &row, "created_at_ms", raw.created_at_ms)?,
        updated_at: ts_from_sql(ctx, &row, "updated_at_ms", raw.updated_at_ms)?,
    })
}

/// Reads operations. A row that cannot be read (written by a newer version, or damaged) is set
/// aside: removed from the log and kept, whole, in an error event of its group, so one bad row
/// never stops every group from resuming and deciding.
fn query_operations(conn: &Connection, ctx: &str, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Operation>> {
    let raws = {
        let mut stmt = conn.prepare_cached(sql).map_err(|e| db_err(ctx, e))?;
        stmt.query_map(params, raw_operation)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| db_err(ctx, e))?
    };
    let mut out = Vec::with_capacity(raws.len());
    for raw in raws {
        let (id, group, at) = (raw.id, raw.group.clone(), raw.updated_at_ms);
        let whole = format!("kind {:?}, state {:?}, payload {}", raw.kind, raw.state, raw.payload_json);
        match decode_operation(ctx, raw) {
            Ok(op) => out.push(op),
            Err(e) => {
                let message = format!("operation row {id} could not be read and was set aside: {e} ({whole})");
                conn.execute(
                    "INSERT INTO events (at_ms, group_name, kind, message) VALUES (?1, ?2, ?3, ?4)",
                    params![at.max(0), group, EventKind::Error.as_str(), message],
                )
                .and_then(|_| conn.execute("DELETE FROM operations WHERE id = ?1", params![id]))
                .map_err(|e| db_err(ctx, e))?;
            }
        }
    }
    Ok(out)
}

// The synchronous bodies of the trait methods (the trait methods only delegate, so no lock guard ever
// lives inside a future).
impl SqliteStore {
    fn ensure_group_sync(&self, group: &GroupId) -> Result<()> {
        self.conn()
            .execute("INSERT INTO groups (name) VALUES (?1) ON CONFLICT (name) DO NOTHING", [group.as_str()])
            .map_err(|e| db_err("ensure_group", e))?;
        Ok(())
    }

    fn groups_sync(&self) -> Result<Vec<GroupId>> {
        let ctx = "groups";
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT name FROM groups ORDER BY name").map_err(|e| db_err(ctx, e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0).map(GroupId))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| db_err(ctx, e))?;
        Ok(rows)
    }

    fn primary_sync(&self, group: &GroupId) -> Result<Option<InstanceId>> {
        let id: Option<Option<String>> = self
            .conn()
            .query_row("SELECT primary_id FROM groups WHERE name = ?1", [group.as_str()], |r| r.get(0))
            .optional()
            .map_err(|e| db_err("primary", e))?;
        Ok(id.flatten().map(InstanceId))
    }

    fn set_primary_sync(&self, group: &GroupId, id: Option<&InstanceId>) -> Result<()> {
        let changed = self
            .conn()
            .execute(
                "UPDATE groups SET primary_id = ?2 WHERE name = ?1",
                params![group.as_str(), id.map(InstanceId::as_str)],
            )
            .map_err(|e| db_err("set_primary", e))?;
        if changed == 0 {
            return Err(SeamError::not_found(format!("store: set_primary: no group {group} (ensure_group first)")));
        }
        Ok(())
    }

    fn reserve_numbers_sync(&self, base: &str, in_use: u64, count: u32) -> Result<u64> {
        let ctx = "reserve_numbers";
        let in_use =
            i64::try_from(in_use).map_err(|_| SeamError::invalid(format!("store: {ctx}: {in_use} is too large")))?;
        let mut conn = self.conn();
        // Immediate: a verb and the daemon may reserve at the same moment.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(ctx, e))?;
        let high: i64 = tx
            .query_row("SELECT high FROM name_numbers WHERE base = ?1", params![base], |r| r.get(0))
            .optional()
            .map_err(|e| db_err(ctx, e))?
            .unwrap_or(0);
        let first = high.max(in_use) + 1;
        let last = first + i64::from(count.max(1)) - 1;
        tx.execute(
            "INSERT INTO name_numbers (base, high) VALUES (?1, ?2)
             ON CONFLICT (base) DO UPDATE SET high = excluded.high",
            params![base, last],
        )
        .map_err(|e| db_err(ctx, e))?;
        tx.commit().map_err(|e| db_err(ctx, e))?;
        Ok(first as u64)
    }

    fn upsert_instance_sync(&self, i: &Instance) -> Result<()> {
        let ctx = "upsert_instance";
        let failure_reason = i.state.reason();
        self.conn()
            .execute(
                "INSERT INTO instances (group_name, id, name, state, failure_reason, address, created_at_ms, tags_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (group_name, id) DO UPDATE SET
                     name = excluded.name, state = excluded.state, failure_reason = excluded.failure_reason,
                     address = excluded.address, created_at_ms = excluded.created_at_ms, tags_json = excluded.tags_json",
                params![
                    i.group.as_str(),
                    i.id.as_str(),
                    i.name,
                    i.state.as_str(),
                    failure_reason,
                    i.address,
                    ts_to_sql(ctx, i.created_at)?,
                    codec::encode_tags(&i.tags),
                ],
            )
            .map_err(|e| db_err(ctx, e))?;
        Ok(())
    }

    fn remove_instance_sync(&self, group: &GroupId, id: &InstanceId) -> Result<()> {
        self.conn()
            .execute("DELETE FROM instances WHERE group_name = ?1 AND id = ?2", [group.as_str(), id.as_str()])
            .map_err(|e| db_err("remove_instance", e))?;
        Ok(())
    }

    fn instances_sync(&self, group: &GroupId) -> Result<Vec<Instance>> {
        let ctx = "instances";
        let raws = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, name, state, failure_reason, address, created_at_ms, tags_json
                     FROM instances WHERE group_name = ?1 ORDER BY created_at_ms, id",
                )
                .map_err(|e| db_err(ctx, e))?;
            let rows = stmt
                .query_map([group.as_str()], |r| {
                    Ok(RawInstance {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        state: r.get(2)?,
                        failure_reason: r.get(3)?,
                        address: r.get(4)?,
                        created_at_ms: r.get(5)?,
                        tags_json: r.get(6)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| db_err(ctx, e))?;
            rows
        };
        raws.into_iter()
            .map(|raw| {
                let row = format!("instances row ({group}, {})", raw.id);
                let state = InstanceState::parse(&raw.state, raw.failure_reason.as_deref())
                    .ok_or_else(|| bad_row(ctx, &row, format!("unknown instance state {:?}", raw.state)))?;
                Ok(Instance {
                    created_at: ts_from_sql(ctx, &row, "created_at_ms", raw.created_at_ms)?,
                    tags: codec::decode_tags(&raw.tags_json).map_err(|what| bad_row(ctx, &row, what))?,
                    id: InstanceId(raw.id),
                    name: raw.name,
                    group: group.clone(),
                    state,
                    address: raw.address,
                })
            })
            .collect()
    }

    fn push_samples_sync(&self, group: &GroupId, samples: &[Sample], keep: usize) -> Result<()> {
        let ctx = "push_samples";
        // Encode everything before taking the lock: a bad value fails the whole push, writing nothing.
        let rows = samples
            .iter()
            .map(|s| {
                let values = codec::encode_values(&s.values)
                    .map_err(|what| SeamError::invalid(format!("store: {ctx}: sample of {}: {what}", s.instance)))?;
                Ok((s.instance.as_str(), ts_to_sql(ctx, s.at)?, values))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(ctx, e))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO samples (group_name, instance, at_ms, values_json) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|e| db_err(ctx, e))?;
            for (instance, at_ms, values) in &rows {
                insert.execute(params![group.as_str(), instance, at_ms, values]).map_err(|e| db_err(ctx, e))?;
            }
            // Deletes the (keep+1)-th newest row and everything older; nothing when there are fewer.
            tx.prepare_cached(
                "DELETE FROM samples WHERE group_name = ?1 AND id <= (
                     SELECT id FROM samples WHERE group_name = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            )
            .and_then(|mut trim| trim.execute(params![group.as_str(), limit(keep)]))
            .map_err(|e| db_err(ctx, e))?;
        }
        tx.commit().map_err(|e| db_err(ctx, e))
    }

    fn samples_sync(&self, group: &GroupId, max: usize) -> Result<Vec<Sample>> {
        let ctx = "samples";
        let raws = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, instance, at_ms, values_json FROM samples
                     WHERE group_name = ?1 ORDER BY id DESC LIMIT ?2",
                )
                .map_err(|e| db_err(ctx, e))?;
            let rows = stmt
                .query_map(params![group.as_str(), limit(max)], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| db_err(ctx, e))?;
            rows
        };
        raws.into_iter()
            .map(|(id, instance, at_ms, values_json)| {
                let row = format!("samples row {id} (group {group})");
                Ok(Sample {
                    instance: InstanceId(instance),
                    at: ts_from_sql(ctx, &row, "at_ms", at_ms)?,
                    values: codec::decode_values(&values_json).map_err(|what| bad_row(ctx, &row, what))?,
                    // The history keeps one time per reading; only the live tick needs each value's own.
                    earlier: Vec::new(),
                })
            })
            .collect()
    }

    fn controls_sync(&self, group: &GroupId) -> Result<GroupControls> {
        let ctx = "controls";
        type Raw = (i64, i64, String, Option<String>, Option<i64>);
        let raw: Option<Raw> = self
            .conn()
            .query_row(
                "SELECT paused, dry_run, protected, request, replace_before_ms FROM group_controls WHERE group_name = ?1",
                [group.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(|e| db_err(ctx, e))?;
        let Some((paused, dry_run, protected, request, replace_before)) = raw else {
            return Ok(GroupControls::default());
        };
        let bad = |what: String| SeamError::bug(format!("store: {ctx}: group_controls row ({group}): {what}"));
        let protected: Vec<String> = serde_json::from_str(&protected).map_err(|e| bad(format!("protected: {e}")))?;
        let request = match request {
            None => None,
            Some(r) => Some(OperatorRequest::parse(&r).ok_or_else(|| bad(format!("request: {r:?}")))?),
        };
        let replace_before = match replace_before {
            None => None,
            Some(ms) => Some(Timestamp(u64::try_from(ms).map_err(|_| bad(format!("replace_before_ms: {ms}")))?)),
        };
        Ok(GroupControls {
            paused: paused != 0,
            dry_run: dry_run != 0,
            protected: protected.into_iter().map(InstanceId).collect(),
            request,
            replace_before,
        })
    }

    fn save_controls_sync(&self, group: &GroupId, c: &GroupControls) -> Result<()> {
        let ctx = "save_controls";
        let protected: Vec<&str> = c.protected.iter().map(InstanceId::as_str).collect();
        let protected = serde_json::to_string(&protected).map_err(|e| SeamError::bug(format!("store: {ctx}: {e}")))?;
        let conn = self.conn();
        let known: bool = conn
            .query_row("SELECT 1 FROM groups WHERE name = ?1", [group.as_str()], |_| Ok(()))
            .optional()
            .map_err(|e| db_err(ctx, e))?
            .is_some();
        if !known {
            return Err(SeamError::not_found(format!("store: {ctx}: no group {group} (ensure_group first)")));
        }
        conn.execute(
            "INSERT INTO group_controls (group_name, paused, dry_run, protected, request, replace_before_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (group_name) DO UPDATE SET
                 paused = excluded.paused, dry_run = excluded.dry_run, protected = excluded.protected,
                 request = excluded.request, replace_before_ms = excluded.replace_before_ms",
            params![
                group.as_str(),
                c.paused,
                c.dry_run,
                protected,
                c.request.as_ref().map(OperatorRequest::text),
                c.replace_before.map(|t| i64::try_from(t.0).unwrap_or(i64::MAX)),
            ],
        )
        .map_err(|e| db_err(ctx, e))?;
        Ok(())
    }

    fn policy_state_sync(&self, group: &GroupId) -> Result<PolicyState> {
        let ctx = "policy_state";
        type Raw = (i64, i64, i64, Option<i64>, Option<i64>);
        let raw: Option<Raw> = self
            .conn()
            .query_row(
                "SELECT up_count, down_count, last_sample_at_ms, last_scale_out_ms, last_scale_in_ms
                 FROM policy_state WHERE group_name = ?1",
                [group.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(|e| db_err(ctx, e))?;
        let Some((up, down, last_sample, out, r#in)) = raw else {
            return Ok(PolicyState::default());
        };
        let row = format!("policy_state row ({group})");
        let stamp = |column: &str, v: Option<i64>| v.map(|v| ts_from_sql(ctx, &row, column, v)).transpose();
        Ok(PolicyState {
            up_count: count_from_sql(ctx, &row, "up_count", up)?,
            down_count: count_from_sql(ctx, &row, "down_count", down)?,
            last_sample_at: ts_from_sql(ctx, &row, "last_sample_at_ms", last_sample)?,
            last_scale_out: stamp("last_scale_out_ms", out)?,
            last_scale_in: stamp("last_scale_in_ms", r#in)?,
        })
    }

    fn save_policy_state_sync(&self, group: &GroupId, s: &PolicyState) -> Result<()> {
        let ctx = "save_policy_state";
        let stamp = |t: Option<Timestamp>| t.map(|t| ts_to_sql(ctx, t)).transpose();
        self.conn()
            .execute(
                "INSERT INTO policy_state
                     (group_name, up_count, down_count, last_sample_at_ms, last_scale_out_ms, last_scale_in_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (group_name) DO UPDATE SET
                     up_count = excluded.up_count, down_count = excluded.down_count,
                     last_sample_at_ms = excluded.last_sample_at_ms,
                     last_scale_out_ms = excluded.last_scale_out_ms, last_scale_in_ms = excluded.last_scale_in_ms",
                params![
                    group.as_str(),
                    s.up_count,
                    s.down_count,
                    ts_to_sql(ctx, s.last_sample_at)?,
                    stamp(s.last_scale_out)?,
                    stamp(s.last_scale_in)?,
                ],
            )
            .map_err(|e| db_err(ctx, e))?;
        Ok(())
    }

    fn alarm_states_sync(&self, group: &GroupId) -> Result<Vec<AlarmStatus>> {
        let ctx = "alarm_states";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, state, since_ms, updated_ms, reason FROM alarm_states WHERE group_name = ?1 ORDER BY name",
            )
            .map_err(|e| db_err(ctx, e))?;
        let rows = stmt
            .query_map([group.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get::<_, String>(4)?))
            })
            .map_err(|e| db_err(ctx, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, state, since, updated, reason) = row.map_err(|e| db_err(ctx, e))?;
            let at = format!("alarm_states row ({group}, {name})");
            let state = AlarmState::parse(&state)
                .ok_or_else(|| SeamError::bug(format!("store: {ctx}: {at}: state {state:?}")))?;
            out.push(AlarmStatus {
                since: ts_from_sql(ctx, &at, "since_ms", since)?,
                updated: ts_from_sql(ctx, &at, "updated_ms", updated)?,
                name,
                state,
                reason,
            });
        }
        Ok(out)
    }

    fn save_alarm_state_sync(&self, group: &GroupId, a: &AlarmStatus) -> Result<()> {
        let ctx = "save_alarm_state";
        let conn = self.conn();
        let known = conn.query_row("SELECT 1 FROM groups WHERE name = ?1", [group.as_str()], |_| Ok(())).optional();
        if known.map_err(|e| db_err(ctx, e))?.is_none() {
            return Err(SeamError::not_found(format!("store: {ctx}: no group {group} (ensure_group first)")));
        }
        conn.execute(
            "INSERT INTO alarm_states (group_name, name, state, since_ms, updated_ms, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (group_name, name) DO UPDATE SET
                 state = excluded.state, since_ms = excluded.since_ms, updated_ms = excluded.updated_ms,
                 reason = excluded.reason",
            params![
                group.as_str(),
                a.name,
                a.state.as_str(),
                ts_to_sql(ctx, a.since)?,
                ts_to_sql(ctx, a.updated)?,
                a.reason
            ],
        )
        .map_err(|e| db_err(ctx, e))?;
        Ok(())
    }

    fn note_signal_sync(&self, key: &str, now: Timestamp, keep: Duration) -> Result<bool> {
        let ctx = "note_signal";
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(ctx, e))?;
        let horizon = ts_to_sql(ctx, now.minus(keep))?;
        tx.execute("DELETE FROM signals_seen WHERE at_ms < ?1", [horizon]).map_err(|e| db_err(ctx, e))?;
        let new = tx
            .execute(
                "INSERT INTO signals_seen (key, at_ms) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                params![key, ts_to_sql(ctx, now)?],
            )
            .map_err(|e| db_err(ctx, e))?;
        tx.commit().map_err(|e| db_err(ctx, e))?;
        Ok(new == 1)
    }

    fn record_event_sync(&self, event: &Event) -> Result<()> {
        let ctx = "record_event";
        let at_ms = ts_to_sql(ctx, event.at)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(ctx, e))?;
        tx.prepare_cached("INSERT INTO events (at_ms, group_name, kind, message, data) VALUES (?1, ?2, ?3, ?4, ?5)")
            .and_then(|mut s| {
                s.execute(params![at_ms, event.group.as_str(), event.kind.as_str(), event.message, event.data])
            })
            .map_err(|e| db_err(ctx, e))?;
        tx.prepare_cached(
            "DELETE FROM events WHERE group_name = ?1 AND id <= (
                 SELECT id FROM events WHERE group_name = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        )
        .and_then(|mut s| s.execute(params![event.group.as_str(), limit(self.events_kept)]))
        .map_err(|e| db_err(ctx, e))?;
        tx.commit().map_err(|e| db_err(ctx, e))
    }

    fn find_events_sync(&self, filter: &EventFilter, max: usize) -> Result<Vec<Event>> {
        let ctx = "find_events";
        let since = filter.since.map(|t| ts_to_sql(ctx, t)).transpose()?.unwrap_or(i64::MIN);
        let before = filter.before.map(|t| ts_to_sql(ctx, t)).transpose()?.unwrap_or(i64::MAX);
        let kind = filter.kind.map(EventKind::as_str);
        let raws = {
            let conn = self.conn();
            let map = |r: &rusqlite::Row<'_>| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            };
            // Two statements, so each walks its own index (events_group_at, events_at) newest first.
            let rows = match &filter.group {
                Some(g) => conn
                    .prepare_cached(
                        "SELECT id, at_ms, group_name, kind, message, data FROM events
                         WHERE group_name = ?1 AND at_ms >= ?2 AND at_ms < ?3 AND (?4 IS NULL OR kind = ?4)
                         ORDER BY at_ms DESC, id DESC LIMIT ?5",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![g.as_str(), since, before, kind, limit(max)], map)?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    }),
                None => conn
                    .prepare_cached(
                        "SELECT id, at_ms, group_name, kind, message, data FROM events
                         WHERE at_ms >= ?1 AND at_ms < ?2 AND (?3 IS NULL OR kind = ?3)
                         ORDER BY at_ms DESC, id DESC LIMIT ?4",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![since, before, kind, limit(max)], map)?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    }),
            };
            rows.map_err(|e| db_err(ctx, e))?
        };
        raws.into_iter()
            .map(|(id, at_ms, group, kind, message, data)| {
                let row = format!("events row {id} (group {group})");
                Ok(Event {
                    at: ts_from_sql(ctx, &row, "at_ms", at_ms)?,
                    kind: EventKind::parse(&kind)
                        .ok_or_else(|| bad_row(ctx, &row, format!("unknown event kind {kind:?}")))?,
                    group: GroupId(group),
                    message,
                    data,
                })
            })
            .collect()
    }

    fn begin_operation_sync(&self, group: &GroupId, kind: &OpKind, now: Timestamp) -> Result<Operation> {
        let ctx = "begin_operation";
        let now_ms = ts_to_sql(ctx, now)?;
        let payload = codec::encode_op(kind);
        let conn = self.conn();
        let inserted = conn
            .prepare_cached(
                "INSERT INTO operations (group_name, kind, payload_json, state, failure_reason, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, 'pending', NULL, ?4, ?4)",
            )
            .and_then(|mut s| s.execute(params![group.as_str(), kind.as_str(), payload, now_ms]));
        match inserted {
            // The lock makes the connection ours alone, so the rowid is this insert's.
            Ok(_) => Ok(Operation {
                id: OpId(conn.last_insert_rowid()),
                group: group.clone(),
                kind: kind.clone(),
                state: OpState::Pending,
                created_at: now,
                updated_at: now,
            }),
            Err(e) if is_unique_violation(&e) => {
                // Name the operation in the way, for the logs; best effort.
                let existing: Option<(i64, String)> = conn
                    .query_row(
                        "SELECT id, kind FROM operations WHERE group_name = ?1 AND state = 'pending'",
                        [group.as_str()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .ok()
                    .flatten();
                let existing = existing.map(|(id, kind)| format!(" ({} {kind})", OpId(id))).unwrap_or_default();
                Err(SeamError::new(
                    ErrorKind::Conflict,
                    format!("store: {ctx}: group {group} already has a pending operation{existing}"),
                )
                .with_source(e))
            }
            Err(e) => Err(db_err(ctx, e)),
        }
    }

    fn finish_operation_sync(&self, id: OpId, state: &OpState, now: Timestamp) -> Result<()> {
        let ctx = "finish_operation";
        let reason = match state {
            OpState::Pending => {
                return Err(SeamError::invalid(format!("store: {ctx}: {id}: cannot finish an operation as pending")));
            }
            OpState::Done => None,
            OpState::Failed(reason) => Some(reason.as_str()),
        };
        let changed = self
            .conn()
            .execute(
                "UPDATE operations SET state = ?2, failure_reason = ?3, updated_at_ms = ?4 WHERE id = ?1",
                params![id.0, state.as_str(), reason, ts_to_sql(ctx, now)?],
            )
            .map_err(|e| db_err(ctx, e))?;
        if changed == 0 {
            return Err(SeamError::not_found(format!("store: {ctx}: no operation {id}")));
        }
        // The log keeps the newest finished operations of the group; pending ones always stay.
        self.conn()
            .execute(
                "DELETE FROM operations WHERE state != 'pending'
                   AND group_name = (SELECT group_name FROM operations WHERE id = ?1)
                   AND id <= (SELECT id FROM operations WHERE state != 'pending'
                                AND group_name = (SELECT group_name FROM operations WHERE id = ?1)
                              ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                params![id.0, limit(self.operations_kept)],
            )
            .map_err(|e| db_err(ctx, e))?;
        Ok(())
    }

    fn unfinished_operations_sync(&self) -> Result<Vec<Operation>> {
        let sql = format!("SELECT {OPERATION_COLUMNS} FROM operations WHERE state = 'pending' ORDER BY id");
        query_operations(&self.conn(), "unfinished_operations", &sql, [])
    }

    fn operations_sync(&self, group: &GroupId, max: usize) -> Result<Vec<Operation>> {
        let sql = format!("SELECT {OPERATION_COLUMNS} FROM operations WHERE group_name = ?1 ORDER BY id DESC LIMIT ?2");
        query_operations(&self.conn(), "operations", &sql, params![group.as_str(), limit(max)])
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ensure_group(&self, group: &GroupId) -> Result<()> {
        self.ensure_group_sync(group)
    }
    async fn groups(&self) -> Result<Vec<GroupId>> {
        self.groups_sync()
    }
    async fn primary(&self, group: &GroupId) -> Result<Option<InstanceId>> {
        self.primary_sync(group)
    }
    async fn set_primary(&self, group: &GroupId, id: Option<&InstanceId>) -> Result<()> {
        self.set_primary_sync(group, id)
    }
    async fn reserve_numbers(&self, base: &str, in_use: u64, count: u32) -> Result<u64> {
        self.reserve_numbers_sync(base, in_use, count)
    }
    async fn controls(&self, group: &GroupId) -> Result<GroupControls> {
        self.controls_sync(group)
    }
    async fn save_controls(&self, group: &GroupId, controls: &GroupControls) -> Result<()> {
        self.save_controls_sync(group, controls)
    }
    async fn upsert_instance(&self, instance: &Instance) -> Result<()> {
        self.upsert_instance_sync(instance)
    }
    async fn remove_instance(&self, group: &GroupId, id: &InstanceId) -> Result<()> {
        self.remove_instance_sync(group, id)
    }
    async fn instances(&self, group: &GroupId) -> Result<Vec<Instance>> {
        self.instances_sync(group)
    }
    async fn push_samples(&self, group: &GroupId, samples: &[Sample], keep: usize) -> Result<()> {
        self.push_samples_sync(group, samples, keep)
    }
    async fn samples(&self, group: &GroupId, limit: usize) -> Result<Vec<Sample>> {
        self.samples_sync(group, limit)
    }
    async fn policy_state(&self, group: &GroupId) -> Result<PolicyState> {
        self.policy_state_sync(group)
    }
    async fn save_policy_state(&self, group: &GroupId, state: &PolicyState) -> Result<()> {
        self.save_policy_state_sync(group, state)
    }
    async fn record_event(&self, event: &Event) -> Result<()> {
        self.record_event_sync(event)
    }
    async fn find_events(&self, filter: &EventFilter, limit: usize) -> Result<Vec<Event>> {
        self.find_events_sync(filter, limit)
    }
    async fn begin_operation(&self, group: &GroupId, kind: &OpKind, now: Timestamp) -> Result<Operation> {
        self.begin_operation_sync(group, kind, now)
    }
    async fn finish_operation(&self, id: OpId, state: &OpState, now: Timestamp) -> Result<()> {
        self.finish_operation_sync(id, state, now)
    }
    async fn alarm_states(&self, group: &GroupId) -> Result<Vec<AlarmStatus>> {
        self.alarm_states_sync(group)
    }
    async fn save_alarm_state(&self, group: &GroupId, status: &AlarmStatus) -> Result<()> {
        self.save_alarm_state_sync(group, status)
    }
    async fn note_signal(&self, key: &str, now: Timestamp, keep: Duration) -> Result<bool> {
        self.note_signal_sync(key, now, keep)
    }
    async fn unfinished_operations(&self) -> Result<Vec<Operation>> {
        self.unfinished_operations_sync()
    }
    async fn operations(&self, group: &GroupId, limit: usize) -> Result<Vec<Operation>> {
        self.operations_sync(group, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_says_so_and_is_transient() {
        let e = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None);
        let e = db_err("push_samples", e);
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(e.message.starts_with("store: push_samples: the disk is full"), "{e}");
    }
}
