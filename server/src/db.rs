//! The server's own database: an embedded SQLite file (WAL, durable commits) with the
//! seats it has leased, their application instances, the devices waiting, the lease
//! requests seen (replays) and the check-ins applied. Every decision reads and writes it
//! inside a `BEGIN IMMEDIATE` transaction (the writer's, [`crate::writer`], shared by the
//! decisions waiting, each in a savepoint), so seats are counted where they are taken:
//! never more than the pool, across restarts and even with two processes on one file.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS seats (
    device_key TEXT PRIMARY KEY,
    activation TEXT NOT NULL UNIQUE,
    lease_expires INTEGER,
    offline_expiry INTEGER,
    checkout TEXT UNIQUE,
    last_access INTEGER NOT NULL,
    first_taken INTEGER NOT NULL,
    client TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS instances (
    device_key TEXT NOT NULL,
    instance TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (device_key, instance)
);
CREATE TABLE IF NOT EXISTS waiters (
    device_key TEXT PRIMARY KEY,
    ticket INTEGER NOT NULL,
    seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    hash TEXT PRIMARY KEY,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkins (
    hash TEXT PRIMARY KEY,
    activation TEXT NOT NULL,
    receipt TEXT NOT NULL,
    at INTEGER NOT NULL
);
";

/// A waiting device that has not asked again for this long leaves the queue.
pub const WAITER_SECS: i64 = 120;

pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

pub fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

pub fn from_ts(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A device's seat as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub device_key: String,
    pub activation: String,
    pub lease_expires: Option<i64>,
    pub offline_expiry: Option<i64>,
    pub checkout: Option<String>,
    pub last_access: i64,
    pub first_taken: i64,
    pub client: String,
}

impl Seat {
    /// Whether it holds its seat at `now`: a live lease or an OED ahead.
    pub fn holds(&self, now: i64) -> bool {
        self.lease_expires.is_some_and(|t| t > now) || self.offline_expiry.is_some_and(|t| t > now)
    }
}

const SEAT_COLUMNS: &str = "device_key, activation, lease_expires, offline_expiry, checkout, \
                            last_access, first_taken, client";

fn seat_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Seat> {
    Ok(Seat {
        device_key: r.get(0)?,
        activation: r.get(1)?,
        lease_expires: r.get(2)?,
        offline_expiry: r.get(3)?,
        checkout: r.get(4)?,
        last_access: r.get(5)?,
        first_taken: r.get(6)?,
        client: r.get(7)?,
    })
}

pub fn seat(tx: &Transaction<'_>, device: &str) -> rusqlite::Result<Option<Seat>> {
    tx.query_row(
        &format!("SELECT {SEAT_COLUMNS} FROM seats WHERE device_key = ?1"),
        [device],
        seat_row,
    )
    .optional()
}

pub fn seat_by_checkout(tx: &Transaction<'_>, checkout: &str) -> rusqlite::Result<Option<Seat>> {
    tx.query_row(
        &format!("SELECT {SEAT_COLUMNS} FROM seats WHERE checkout = ?1"),
        [checkout],
        seat_row,
    )
    .optional()
}

pub fn seats(conn: &Connection) -> rusqlite::Result<Vec<Seat>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {SEAT_COLUMNS} FROM seats ORDER BY first_taken, device_key"
    ))?;
    stmt.query_map([], seat_row)?.collect()
}

/// Seats held at `now` by devices other than `device`, and when the first of them
/// lapses.
pub fn held_by_others(
    tx: &Transaction<'_>,
    device: &str,
    now: i64,
) -> rusqlite::Result<(u64, Option<i64>)> {
    tx.query_row(
        "SELECT count(*), min(max(coalesce(lease_expires, 0), coalesce(offline_expiry, 0))) \
         FROM seats WHERE device_key <> ?1 AND (lease_expires > ?2 OR offline_expiry > ?2)",
        params![device, now],
        |r| Ok((r.get::<_, i64>(0)?.unsigned_abs(), r.get(1)?)),
    )
}

/// Live instances of `device` other than `instance`.
pub fn other_instances(
    tx: &Transaction<'_>,
    device: &str,
    instance: &str,
    now: i64,
) -> rusqlite::Result<u64> {
    tx.query_row(
        "SELECT count(*) FROM instances WHERE device_key = ?1 AND instance <> ?2 AND expires > ?3",
        params![device, instance, now],
        |r| Ok(r.get::<_, i64>(0)?.unsigned_abs()),
    )
}

pub fn instance_expires(
    tx: &Transaction<'_>,
    device: &str,
    instance: &str,
) -> rusqlite::Result<Option<i64>> {
    tx.query_row(
        "SELECT expires FROM instances WHERE device_key = ?1 AND instance = ?2",
        params![device, instance],
        |r| r.get(0),
    )
    .optional()
}

/// The devices waiting ahead of `device` (all of them if it is not waiting), after
/// dropping those that stopped asking.
pub fn waiting_ahead(tx: &Transaction<'_>, device: &str, now: i64) -> rusqlite::Result<u64> {
    tx.execute("DELETE FROM waiters WHERE seen < ?1", [now - WAITER_SECS])?;
    tx.query_row(
        "SELECT count(*) FROM waiters WHERE device_key <> ?1 AND ticket < \
         coalesce((SELECT ticket FROM waiters WHERE device_key = ?1), 9223372036854775807)",
        [device],
        |r| Ok(r.get::<_, i64>(0)?.unsigned_abs()),
    )
}

/// Put `device` in the queue (keeping its place if it is there).
pub fn wait(tx: &Transaction<'_>, device: &str, now: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO waiters (device_key, ticket, seen) \
         VALUES (?1, (SELECT coalesce(max(ticket), 0) + 1 FROM waiters), ?2) \
         ON CONFLICT (device_key) DO UPDATE SET seen = excluded.seen",
        params![device, now],
    )?;
    Ok(())
}

pub fn stop_waiting(tx: &Transaction<'_>, device: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM waiters WHERE device_key = ?1", [device])?;
    Ok(())
}

/// Record a lease request by hash: false if it was seen before (a replay). Hashes
/// older than twice the freshness window are forgotten (older requests are stale).
pub fn first_request(tx: &Transaction<'_>, hash: &str, now: i64) -> rusqlite::Result<bool> {
    tx.execute(
        "DELETE FROM requests WHERE at < ?1",
        [now - 2 * lic_core::floating::REQUEST_WINDOW_SECS],
    )?;
    let added = tx.execute(
        "INSERT INTO requests (hash, at) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING",
        params![hash, now],
    )?;
    Ok(added == 1)
}

pub fn put_seat(tx: &Transaction<'_>, s: &Seat) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO seats (device_key, activation, lease_expires, offline_expiry, checkout, \
         last_access, first_taken, client) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (device_key) DO UPDATE SET activation = excluded.activation, \
         lease_expires = excluded.lease_expires, offline_expiry = excluded.offline_expiry, \
         checkout = excluded.checkout, last_access = excluded.last_access, \
         client = excluded.client",
        params![
            s.device_key,
            s.activation,
            s.lease_expires,
            s.offline_expiry,
            s.checkout,
            s.last_access,
            s.first_taken,
            s.client
        ],
    )?;
    Ok(())
}

pub fn put_instance(
    tx: &Transaction<'_>,
    device: &str,
    instance: &str,
    expires: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO instances (device_key, instance, expires) VALUES (?1, ?2, ?3) \
         ON CONFLICT (device_key, instance) DO UPDATE SET expires = excluded.expires",
        params![device, instance, expires],
    )?;
    Ok(())
}

/// Drop an instance (and the lapsed ones of the device); the latest expiry of those left.
pub fn drop_instance(
    tx: &Transaction<'_>,
    device: &str,
    instance: Option<&str>,
    now: i64,
) -> rusqlite::Result<Option<i64>> {
    tx.execute(
        "DELETE FROM instances WHERE device_key = ?1 AND (instance = ?2 OR expires <= ?3)",
        params![device, instance.unwrap_or(""), now],
    )?;
    tx.query_row(
        "SELECT max(expires) FROM instances WHERE device_key = ?1",
        [device],
        |r| r.get(0),
    )
}

pub fn delete_seat(tx: &Transaction<'_>, device: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM instances WHERE device_key = ?1", [device])?;
    tx.execute("DELETE FROM seats WHERE device_key = ?1", [device])?;
    Ok(())
}

/// The receipt of a check-in applied before, by the file's hash.
pub fn checkin_receipt(tx: &Transaction<'_>, hash: &str) -> rusqlite::Result<Option<String>> {
    tx.query_row(
        "SELECT receipt FROM checkins WHERE hash = ?1",
        [hash],
        |r| r.get(0),
    )
    .optional()
}

pub fn put_checkin(
    tx: &Transaction<'_>,
    hash: &str,
    activation: &str,
    receipt: &str,
    now: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO checkins (hash, activation, receipt, at) VALUES (?1, ?2, ?3, ?4)",
        params![hash, activation, receipt, now],
    )?;
    Ok(())
}
