//! The portal's decisions about device files, as pure functions of what the portal
//! recorded and what the file says (the way `lic_core::rules` decides a device's
//! license): does a file continue the device's journal, is it from a store restored after
//! the account was closed, what usage does it add, may the totals take it, does a request
//! carry what the policy binds to, may a license take another activation under its churn
//! policy; and about edits of a license: how many seats, which status, which devices are
//! out of date. The write jobs and operations in `ops` apply these answers; the tests
//! here hold each rule without a database.
//!
//! Everything in a device-signed file is the customer's claim: these functions decide
//! from the portal's own records and the policy, never from what the file asks for.

use std::collections::BTreeMap;

use lic_core::format::{
    Bytes32, FileKind, Fingerprint, JournalHead, License, MAX_COUNTER, Refresh,
};

/// How a device file relates to the journal head the portal recorded for its activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// It continues the head: the next file, or a later one whose trail holds the head
    /// (the files between were not uploaded, which is fine).
    Continues,
    /// An older file of the device's own history (the head named it), uploaded late: its
    /// counters are not newer than the head's, nothing to suspect.
    Late,
    /// It cannot continue the head: a replayed or older file, a restored backup or a
    /// cloned machine. The reason is for staff.
    Fork(String),
    /// It is further ahead of the head than its trail reaches, so whether it continues
    /// the head cannot be told: counted, but flagged.
    Gap { skipped: u64 },
}

/// Whether a file (journal `file`, hash `file_hash`) continues the head recorded for its
/// activation: sequence `head_seq`, hash `head`, and the history the head named (`known`,
/// see [`known_history`]).
///
/// A file of sequence `head_seq + 1` must name the head as `prev`. A later file must hold
/// the head in its trail, at the place of sequence `head_seq` (the trail's first entry is
/// the file before `prev`). A file below the head is a late upload if the head named it,
/// and a fork otherwise; a file at the head's sequence is a fork (the head itself was
/// applied before and never gets here).
pub fn journal_link(
    head_seq: u64,
    head: &Bytes32,
    known: &[Bytes32],
    file: &JournalHead,
    file_hash: &Bytes32,
    kind: FileKind,
) -> Link {
    if file.seq < head_seq && known.contains(file_hash) {
        return Link::Late;
    }
    if file.seq <= head_seq {
        return Link::Fork(format!(
            "a {kind} with journal sequence {} arrived after sequence {head_seq}: a replayed \
             file, a restored backup or a cloned machine",
            file.seq
        ));
    }
    let skipped = file.seq - head_seq - 1;
    if skipped == 0 {
        return if file.prev == *head {
            Link::Continues
        } else {
            Link::Fork(format!(
                "a {kind} continues the journal from another file than the last one seen \
                 (sequence {}): a restored backup or a cloned machine",
                file.seq
            ))
        };
    }
    // The hash of sequence `head_seq` is the trail's entry `skipped - 1`.
    match usize::try_from(skipped - 1)
        .ok()
        .and_then(|i| file.trail.get(i))
    {
        Some(at_head) if at_head == head => Link::Continues,
        Some(_) => Link::Fork(format!(
            "a {kind} of sequence {} descends from another file than the last one seen \
             (sequence {head_seq}): a restored backup or a cloned machine",
            file.seq
        )),
        None => Link::Gap { skipped },
    }
}

/// The hashes the portal learns from a file it accepts as the new head: the files
/// before it (its `prev`, then its trail), newest first. Kept to recognise a late upload
/// of one of them.
pub fn known_history(file: &JournalHead) -> Vec<Bytes32> {
    std::iter::once(file.prev)
        .chain(file.trail.iter().copied())
        .collect()
}

/// What a device file for an activation the device itself closed (its deactivation file
/// was applied) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterClose {
    /// One of the files written before the deactivation, uploaded late: the deactivation's
    /// final counters already hold what it says. Nothing to do, nothing to suspect.
    Superseded,
    /// Written after the deactivation, or not part of the history the deactivation named:
    /// the store was restored from a backup taken before it (or cloned), and kept using the
    /// license. The reason is for staff.
    RestoredStore(String),
}

/// Decide about a device file (sequence `file_seq`, hash `file_hash`) arriving after the
/// device's own deactivation file closed the account. `head_seq` is the deactivation's
/// sequence, `known` the history it named ([`known_history`]).
pub fn after_close(
    head_seq: u64,
    known: &[Bytes32],
    file_seq: u64,
    file_hash: &Bytes32,
    kind: FileKind,
) -> AfterClose {
    if file_seq < head_seq && known.contains(file_hash) {
        return AfterClose::Superseded;
    }
    let why = if file_seq > head_seq {
        format!(
            "a {kind} of sequence {file_seq} was written after the device's deactivation \
             (sequence {head_seq}) closed the account: the store was restored from a backup \
             (or cloned) and the license kept in use"
        )
    } else {
        format!(
            "a {kind} of sequence {file_seq} is not part of the history the device's \
             deactivation (sequence {head_seq}) named: a store restored from a backup or \
             cloned before the deactivation"
        )
    };
    AfterClose::RestoredStore(why)
}

/// What a feature's cumulative counter in a device file adds to what was reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    /// Nothing new.
    Same,
    /// This many units more than last reported.
    Add(u64),
    /// Lower than last reported: never subtracted (a restored backup or a cloned machine).
    WentBack,
}

/// `cumulative` against the last reported value of the same counter.
pub fn usage_delta(reported: u64, cumulative: u64) -> Delta {
    match cumulative.cmp(&reported) {
        std::cmp::Ordering::Equal => Delta::Same,
        std::cmp::Ordering::Greater => Delta::Add(cumulative - reported),
        std::cmp::Ordering::Less => Delta::WentBack,
    }
}

/// A counter or total beyond [`MAX_COUNTER`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    pub feature: String,
    /// What the value would have become.
    pub value: u128,
}

/// The license's new total for a feature: `total + delta`, within [`MAX_COUNTER`].
pub fn add_total(feature: &str, total: u64, delta: u64) -> Result<u64, OutOfRange> {
    let sum = u128::from(total) + u128::from(delta);
    u64::try_from(sum)
        .ok()
        .filter(|s| *s <= MAX_COUNTER)
        .ok_or(OutOfRange {
            feature: feature.into(),
            value: sum,
        })
}

/// The usage a file adds: per feature, the delta against `reported` (absent: 0), the
/// features whose counters went back, or the first counter or total that would leave
/// the range. `totals` are the license's totals now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Usage {
    /// (feature, new cumulative reported, delta) for each feature that grew.
    pub grows: Vec<(String, u64, u64)>,
    /// Features whose cumulative counter is below the last reported one.
    pub went_back: Vec<String>,
}

/// Decide the usage of a file's `counters`, given the activation's last `reported`
/// counters and the license's `totals`.
pub fn usage(
    counters: &BTreeMap<String, u64>,
    reported: &BTreeMap<String, u64>,
    totals: &BTreeMap<String, u64>,
) -> Result<Usage, OutOfRange> {
    let mut out = Usage::default();
    for (feature, cumulative) in counters {
        if *cumulative > MAX_COUNTER {
            return Err(OutOfRange {
                feature: feature.clone(),
                value: u128::from(*cumulative),
            });
        }
        match usage_delta(reported.get(feature).copied().unwrap_or(0), *cumulative) {
            Delta::Same => {}
            Delta::WentBack => out.went_back.push(feature.clone()),
            Delta::Add(delta) => {
                add_total(feature, totals.get(feature).copied().unwrap_or(0), delta)?;
                out.grows.push((feature.clone(), *cumulative, delta));
            }
        }
    }
    Ok(out)
}

/// The components the policy's match rule requires that a request's fingerprint lacks.
/// The license carries the policy's rule as it is, so a request without them is refused:
/// a license bound to nothing could be copied to any machine.
pub fn missing_components(required: &[String], fingerprint: &Fingerprint) -> Vec<String> {
    required
        .iter()
        .filter(|c| !fingerprint.contains_key(*c))
        .cloned()
        .collect()
}

/// The churn policy refuses the next activation of a license: `count` deactivations in
/// the period, the oldest of them at `oldest` (seconds since the epoch; none for a policy
/// that allows no deactivation at all); the next activation is allowed once that one is a
/// period old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChurnRefused {
    pub count: i64,
    pub oldest: Option<i64>,
}

/// May the license take another activation under its churn policy (at most `max`
/// deactivations per period)? `recent`: the times of the license's deactivations within
/// the period before now, oldest first. Only the next *activation* is refused: a
/// deactivation is never refused (it gives a seat back).
pub fn churn(max: i64, recent: &[i64]) -> Result<(), ChurnRefused> {
    let count = i64::try_from(recent.len()).unwrap_or(i64::MAX);
    if count < max {
        return Ok(());
    }
    Err(ChurnRefused {
        count,
        oldest: recent.first().copied(),
    })
}

/// What the license's row and the device's seat are when an activation request is
/// applied (read inside the write, with the license locked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatAsk<'a> {
    /// The license is active (not revoked or suspended).
    pub license_active: bool,
    /// The copy of the license the request's license file was made from is the license as
    /// it is now (its revision did not change since the copy was read).
    pub license_current: bool,
    pub seats: i64,
    pub seats_used: i64,
    /// The activation that holds a seat of the license for this device key, if any.
    pub held_by_device: Option<&'a str>,
    /// This very request was applied before.
    pub applied_before: bool,
    /// The churn policy's answer (`Ok` where the policy has none).
    pub churn: Result<(), ChurnRefused>,
    /// A license-level limit the license's reported total has reached, where reaching
    /// one refuses seats (see [`total_reached`]).
    pub total_reached: Option<&'a OverTotal>,
}

/// The answer to an activation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatAnswer {
    /// The request was applied before: answer with the license issued then.
    AlreadyApplied,
    /// The license was edited since the copy the license file was made from: make it
    /// again from the license as it is now.
    StaleLicense,
    /// The license is not active (revoked or suspended): no seat is taken or renewed.
    Revoked,
    /// The device holds a seat already (a reset or restored store asks again): the seat
    /// is reissued to it, no second seat is taken.
    Reissue(String),
    /// The license's reported total has reached a license-level limit: no new seat and
    /// no reissue.
    TotalReached(OverTotal),
    /// The churn policy refuses the next activation for now.
    TooManyDeactivations(ChurnRefused),
    /// Every seat is taken.
    NoSeatLeft,
    /// A pool: fewer seats are free than it asks for.
    TooFewSeats { free: i64 },
    /// A pool: the device holds a seat of the license by other means (a floating seat).
    DeviceHasSeat(String),
    /// A pool: another device holds the license's pool (this activation).
    PoolHeld(String),
    /// Take a seat (or, for a pool, its seats).
    Take,
}

/// May this request take a seat? A device never holds two seats of one license; a
/// request applied before gets its first answer again, even after a revocation, a
/// suspension or an edit; a license file made from an older copy of the license is made
/// again; the churn policy is asked only for a new seat.
pub fn seat(ask: &SeatAsk<'_>) -> SeatAnswer {
    if ask.applied_before {
        SeatAnswer::AlreadyApplied
    } else if !ask.license_current {
        SeatAnswer::StaleLicense
    } else if !ask.license_active {
        SeatAnswer::Revoked
    } else if let Some(reached) = ask.total_reached {
        SeatAnswer::TotalReached(reached.clone())
    } else if let Some(id) = ask.held_by_device {
        SeatAnswer::Reissue(id.to_string())
    } else if let Err(refused) = ask.churn {
        SeatAnswer::TooManyDeactivations(refused)
    } else if ask.seats_used >= ask.seats {
        SeatAnswer::NoSeatLeft
    } else {
        SeatAnswer::Take
    }
}

/// The seats of `seats_used` an active activation holds: a pool's `pool_seats`, a
/// node-locked activation's one (`node_locked`: made by an activation request), none for
/// a floating seat (held by its lease or OED, counted from those).
pub fn seats_held(pool_seats: Option<i64>, node_locked: bool) -> i64 {
    match pool_seats {
        Some(n) => n,
        None if node_locked => 1,
        None => 0,
    }
}

/// What an on-premise floating server's request for a pool asks, beyond [`SeatAsk`]
/// (whose `seats_used` counts node-locked seats and pools' seats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAsk<'a> {
    /// The seats the pool asks to hold (at least one).
    pub wanted: i64,
    /// Seats held now by floating leases and checkouts.
    pub leased: i64,
    /// The device's active activation (`held_by_device`) is a pool.
    pub device_is_pool: bool,
    /// Another device's active pool of the license.
    pub other_pool: Option<&'a str>,
}

/// The seats of a license free for a pool: its seats less those held by node-locked
/// activations and pools (`used`) and by floating leases and checkouts (`leased`).
pub fn free_seats(seats: i64, used: i64, leased: i64) -> i64 {
    seats.saturating_sub(used).saturating_sub(leased).max(0)
}

/// May this pool request take its seats? As [`seat`] for what every request is asked
/// (applied before, a stale copy, revoked, a total reached, churn); then: the server that
/// holds the pool gets it again (reissued, with the seats it holds), a device that holds
/// a seat by other means is refused, a license holds one pool at a time, and the pool
/// takes its seats only when that many are free.
pub fn pool_seat(ask: &SeatAsk<'_>, pool: &PoolAsk<'_>) -> SeatAnswer {
    if ask.applied_before {
        SeatAnswer::AlreadyApplied
    } else if !ask.license_current {
        SeatAnswer::StaleLicense
    } else if !ask.license_active {
        SeatAnswer::Revoked
    } else if let Some(reached) = ask.total_reached {
        SeatAnswer::TotalReached(reached.clone())
    } else if let Some(id) = ask.held_by_device {
        if pool.device_is_pool {
            SeatAnswer::Reissue(id.to_string())
        } else {
            SeatAnswer::DeviceHasSeat(id.to_string())
        }
    } else if let Some(other) = pool.other_pool {
        SeatAnswer::PoolHeld(other.to_string())
    } else if let Err(refused) = ask.churn {
        SeatAnswer::TooManyDeactivations(refused)
    } else {
        let free = free_seats(ask.seats, ask.seats_used, pool.leased);
        if pool.wanted > free {
            SeatAnswer::TooFewSeats { free }
        } else {
            SeatAnswer::Take
        }
    }
}

/// May a pool holding `current` seats hold `wanted` now? Its own seats count as free;
/// the rest as for a new pool. `Err(free)`: the most it may hold.
pub fn pool_resize(
    seats: i64,
    used: i64,
    leased: i64,
    current: i64,
    wanted: i64,
) -> Result<(), i64> {
    let free = free_seats(seats, used.saturating_sub(current), leased);
    if wanted <= free { Ok(()) } else { Err(free) }
}

/// A license-level consumption limit and the license's reported total for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverTotal {
    pub feature: String,
    pub total: u64,
    pub limit: u64,
}

/// The license-level limits that the license's reported totals have reached (total at
/// or beyond the limit: nothing more may be used), by feature.
pub fn total_reached(
    limits: &BTreeMap<String, u64>,
    totals: &BTreeMap<String, u64>,
) -> Vec<OverTotal> {
    limits
        .iter()
        .filter_map(|(feature, limit)| {
            let total = totals.get(feature).copied().unwrap_or(0);
            (total >= *limit).then(|| OverTotal {
                feature: feature.clone(),
                total,
                limit: *limit,
            })
        })
        .collect()
}

/// The license-level limits a file's usage goes beyond: the license's total for a feature
/// grows (`grows`: feature, delta) and is beyond the limit after — every such file, not
/// only the first to pass it.
pub fn total_passed(
    limits: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
    grows: &[(String, u64)],
) -> Vec<OverTotal> {
    grows
        .iter()
        .filter_map(|(feature, delta)| {
            let limit = *limits.get(feature)?;
            let was = before.get(feature).copied().unwrap_or(0);
            let now = was.saturating_add(*delta);
            (now > limit && *delta > 0).then(|| OverTotal {
                feature: feature.clone(),
                total: now,
                limit,
            })
        })
        .collect()
}

/// Why an edit's number of seats is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatsRefused {
    /// A license has at least one seat.
    BelowOne,
    /// Fewer seats than devices holding one: the devices keep their seats (the portal
    /// cannot take a license file back), so the count would be a lie. Deactivate devices
    /// first (their deactivation files, or a server-side deactivation), then lower it.
    InUse { in_use: i64 },
}

/// May a license have `seats` seats now that `in_use` of its seats are held? Raising is
/// always fine; lowering down to the seats in use is fine (the license is then full).
pub fn seats_change(seats: i64, in_use: i64) -> Result<(), SeatsRefused> {
    if seats < 1 {
        Err(SeatsRefused::BelowOne)
    } else if seats < in_use {
        Err(SeatsRefused::InUse { in_use })
    } else {
        Ok(())
    }
}

/// The statuses a license has: `active`, `suspended` (no new seats, no reissues, no
/// refreshes, until it is active again) and `revoked` (the same, for good).
pub const LICENSE_STATUSES: [&str; 3] = ["active", "suspended", "revoked"];

/// May an edit take a license's status from `from` to `to`? Between `active` and
/// `suspended` either way; a revocation is made by revoking (it needs its own command and
/// cannot be undone), and a revoked license is not changed at all. The reason is for the
/// person who asked.
pub fn status_change(from: &str, to: &str) -> Result<(), String> {
    match (from, to) {
        ("revoked", _) => Err(
            "the license is revoked, which is final: it cannot be edited; create a new \
             license"
                .into(),
        ),
        (_, "revoked") => Err(
            "a license is revoked with `lic-portal license revoke` (POST \
             /api/v1/licenses/{id}/revoke), which cannot be undone; to stop it for a while, \
             set the status to suspended"
                .into(),
        ),
        (_, "active" | "suspended") => Ok(()),
        (_, other) => Err(format!(
            "{other:?} is not a status an edit can set: give active or suspended"
        )),
    }
}

/// What a device's license says it may use: its features and its expiry (seconds since
/// the epoch; none: no expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlements {
    pub features: lic_core::format::Features,
    pub expires: Option<i64>,
}

/// What a license grants an activation made at `activated`: the license's own features
/// (else the policy's), and its fixed expiry (else the policy's validity from the
/// activation, else none).
pub fn granted(
    license_features: Option<&lic_core::format::Features>,
    policy_features: &lic_core::format::Features,
    license_expires: Option<i64>,
    validity_days: Option<i64>,
    activated: i64,
) -> Entitlements {
    Entitlements {
        features: license_features.unwrap_or(policy_features).clone(),
        expires: license_expires.or_else(|| {
            validity_days.map(|days| activated.saturating_add(days.saturating_mul(86_400)))
        }),
    }
}

/// What differs between what a device was last issued (its license, or its last
/// refresh) and what its license grants now: `features` and/or `expires`. Empty: the
/// device is up to date.
pub fn out_of_date(issued: &Entitlements, granted: &Entitlements) -> Vec<&'static str> {
    let mut out = Vec::new();
    if issued.features != granted.features {
        out.push("features");
    }
    if issued.expires != granted.expires {
        out.push("expires");
    }
    out
}

/// May a device's seat be given again to its new request (a reset or restored store)?
/// The seat must still be active — freed meanwhile, the request must take a seat of its
/// own — and the license made for it carries the usage reported so far as the device's
/// counters (`carried`): if a report arrived since it was read, the device would count
/// that usage twice. The reason is the answer to the device when refused.
pub fn reissue(
    state: Option<&str>,
    reported: &BTreeMap<String, u64>,
    carried: &BTreeMap<String, u64>,
) -> Result<(), &'static str> {
    if state != Some("active") {
        return Err(
            "the device's seat was freed while its request was applied; upload the \
                    request again to take a seat",
        );
    }
    if reported != carried {
        return Err(
            "a usage report for the device's seat arrived while its request was \
                    applied; upload the request again",
        );
    }
    Ok(())
}

/// What a reissued license carries over for a device that holds its seat already: the
/// entitlements in force for it — those of the last refresh it was given, else those of
/// its first license — not what a new license would grant (a reset store must not
/// restart a trial or lift an edit the device never received), and the serial of its
/// last refresh (installing an older one again is a rollback). The caller sets the
/// counters (the usage reported so far).
pub fn carry_over(license: &mut License, first: Option<&License>, last_refresh: Option<&Refresh>) {
    if let Some(o) = first {
        license.features = o.features.clone();
        license.expires = o.expires;
        license.offline_expiry = o.offline_expiry;
        license.clock_tolerance = o.clock_tolerance;
        license.license_type = o.license_type;
    }
    if let Some(r) = last_refresh {
        license.features = r.features.clone();
        license.expires = r.expires;
        license.offline_expiry = r.offline_expiry;
        license.clock_tolerance = r.clock_tolerance;
        license.license_type = r.license_type;
        license.serial = r.serial;
    }
}

// ----- floating seats (the protocol's rules are lic_core::floating's) ---------------------

/// One device waiting for a seat of a pool (`lic lease --wait`), as the portal recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    pub device: String,
    /// Its place: lower is earlier.
    pub ticket: i64,
    /// When it last asked (seconds).
    pub seen: i64,
}

/// A pool's queue as one device sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// Live waiters ahead of the device (all live waiters, if it is not queued).
    pub ahead: u64,
    /// The device's ticket, if it waits (and asked recently enough to keep its place).
    pub mine: Option<i64>,
    /// The ticket a newcomer gets.
    pub next_ticket: i64,
    /// Whether some waiter stopped asking (its row can go).
    pub dead: bool,
}

/// The queue of a pool as `device` sees it at `now`: a waiter keeps its place while it
/// asks again within two lease periods (a `lic lease --wait` asks far more often); first
/// come, first served. A device that stopped asking for longer lost its place.
pub fn queue(waiters: &[Waiter], device: &str, now: i64, lease_secs: u64) -> Queue {
    let window = i64::try_from(lease_secs.saturating_mul(2)).unwrap_or(i64::MAX);
    let live = |w: &Waiter| w.seen > now.saturating_sub(window);
    let mine = waiters
        .iter()
        .find(|w| w.device == device && live(w))
        .map(|w| w.ticket);
    let ahead = waiters
        .iter()
        .filter(|w| w.device != device && live(w))
        .filter(|w| mine.is_none_or(|t| w.ticket < t))
        .count() as u64;
    Queue {
        ahead,
        mine,
        next_ticket: waiters.iter().map(|w| w.ticket).max().unwrap_or(0) + 1,
        dead: waiters.iter().any(|w| !live(w)),
    }
}

/// The application instances holding a device's seat (or its use of a floating feature),
/// as one of them (`me`) sees them at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instances {
    /// Live instances other than `me`.
    pub others: u64,
    /// Whether `me` holds a live lease.
    pub mine: bool,
    /// When the others' leases lapse, the latest first.
    pub others_until: Option<i64>,
}

/// The instances of (instance, lease end) as `me` sees them at `now`.
pub fn instances(rows: &[(String, i64)], me: &str, now: i64) -> Instances {
    let others: Vec<i64> = rows
        .iter()
        .filter(|(i, expires)| i != me && *expires > now)
        .map(|(_, e)| *e)
        .collect();
    Instances {
        others: others.len() as u64,
        mine: rows.iter().any(|(i, e)| i == me && *e > now),
        others_until: others.into_iter().max(),
    }
}

/// The Offline Expiry Date a device's seat keeps when a lease is granted or renewed: a
/// checkout's OED still ahead stays (an online lease never shortens it; the policy's OED
/// on every lease may lengthen it), else the lease's own OED (the policy's "always set an
/// OED", or none). Also whether the seat is still checked out.
pub fn seat_oed(
    checked_out: bool,
    current: Option<i64>,
    lease_oed: Option<i64>,
    now: i64,
) -> (Option<i64>, bool) {
    match current.filter(|t| checked_out && *t > now) {
        Some(t) => (Some(lease_oed.map_or(t, |l| l.max(t))), true),
        None => (lease_oed, false),
    }
}

/// What releasing one instance's lease does to the device's seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Whether the instance held a live lease.
    pub released: bool,
    /// The seat's lease end after it: the other instances' latest, or none (the seat is
    /// free, unless a checkout's OED is ahead).
    pub lease_expires: Option<i64>,
}

/// Release instance `me` at `now`.
pub fn release(rows: &[(String, i64)], me: &str, now: i64) -> Released {
    let seen = instances(rows, me, now);
    Released {
        released: seen.mine,
        lease_expires: seen.others_until,
    }
}

/// Why a seat is reclaimed at `now` (None: it is kept). Only a seat held now is reclaimed
/// (a lapsed lease holds nothing: there is nothing to free); lic_core decides whether it
/// is inactive, counting from when reclamation was enabled at the earliest, and keeps a
/// checkout until its OED.
pub fn reclaim(
    rule: &lic_core::floating::Reclamation,
    last_accessed: i64,
    lease_expires: Option<i64>,
    offline_expiry: Option<i64>,
    now: i64,
) -> Option<String> {
    let at = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
    let holder = lic_core::floating::Holder {
        lease_expires: lease_expires.map(at),
        offline_expiry: offline_expiry.map(at),
    };
    if !holder.holds(at(now))
        || !lic_core::floating::reclaimable(
            rule,
            at(last_accessed),
            offline_expiry.map(at),
            at(now),
        )
    {
        return None;
    }
    let since = at(last_accessed).max(rule.enabled_since);
    Some(format!(
        "inactive since {}: no heartbeat or validation for more than the policy's {} s",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        rule.inactivity_secs
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reissue_carries_the_reported_usage_of_a_seat_still_held() {
        let reported: BTreeMap<String, u64> = [("exports".to_string(), 7)].into();
        assert_eq!(reissue(Some("active"), &reported, &reported), Ok(()));
    }

    #[test]
    fn a_reissue_is_refused_when_the_seat_was_freed_meanwhile() {
        let none = BTreeMap::new();
        let refused = reissue(Some("deactivated"), &none, &none).unwrap_err();
        assert!(refused.contains("take a seat"), "{refused}");
        assert!(reissue(None, &none, &none).is_err());
    }

    #[test]
    fn a_reissue_is_refused_when_usage_arrived_after_its_counters_were_read() {
        let carried: BTreeMap<String, u64> = [("exports".to_string(), 7)].into();
        let reported: BTreeMap<String, u64> = [("exports".to_string(), 9)].into();
        let refused = reissue(Some("active"), &reported, &carried).unwrap_err();
        assert!(refused.contains("usage report"), "{refused}");
    }

    fn at(secs: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(secs, 0).unwrap()
    }

    fn features(names: &[&str]) -> lic_core::format::Features {
        names
            .iter()
            .map(|n| (n.to_string(), lic_core::format::Feature::default()))
            .collect()
    }

    /// A license as a new request would get it: today's entitlements, serial 1.
    fn fresh() -> License {
        License {
            pool: None,
            pool_seats: None,
            license_id: "lic_1".into(),
            activation_id: "act_1".into(),
            product: "photo-pro".into(),
            device_key: h(1),
            fingerprint: Default::default(),
            match_rule: lic_core::format::MatchRule {
                required: Vec::new(),
                max_changed: 0,
            },
            features: features(&["export-pdf", "new-feature"]),
            license_type: lic_core::format::LicenseType::Trial,
            issued: at(900),
            not_before: at(900),
            expires: Some(at(5_000)),
            offline_expiry: None,
            clock_tolerance: 60,
            serial: 1,
            request_nonce: lic_core::format::Nonce([0; 16]),
            counters: Default::default(),
        }
    }

    #[test]
    fn a_reissue_carries_the_first_licenses_entitlements_not_todays() {
        let first = License {
            features: features(&["export-pdf"]),
            expires: Some(at(2_000)),
            ..fresh()
        };
        let mut reissued = fresh();
        carry_over(&mut reissued, Some(&first), None);
        assert_eq!(reissued.features, first.features);
        assert_eq!(
            reissued.expires,
            Some(at(2_000)),
            "a trial does not restart"
        );
        assert_eq!(reissued.serial, 1);
    }

    #[test]
    fn a_reissue_carries_the_last_refresh_and_its_serial() {
        let refresh = Refresh {
            pool_seats: None,
            license_id: "lic_1".into(),
            activation_id: "act_1".into(),
            product: "photo-pro".into(),
            device_key: h(1),
            serial: 3,
            features: features(&["export-pdf", "batch-jobs"]),
            license_type: lic_core::format::LicenseType::TimeLimited,
            expires: Some(at(9_000)),
            offline_expiry: Some(at(8_000)),
            clock_tolerance: 120,
            clock_floor: None,
            reason: "renewal".into(),
            issued: at(1_000),
        };
        let mut reissued = fresh();
        carry_over(&mut reissued, Some(&fresh()), Some(&refresh));
        assert_eq!(reissued.features, refresh.features);
        assert_eq!(
            (
                reissued.expires,
                reissued.offline_expiry,
                reissued.clock_tolerance
            ),
            (Some(at(9_000)), Some(at(8_000)), 120)
        );
        assert_eq!(
            reissued.license_type,
            lic_core::format::LicenseType::TimeLimited
        );
        assert_eq!(
            reissued.serial, 3,
            "an older refresh installed again is a rollback"
        );
    }

    #[test]
    fn a_reissue_with_nothing_issued_before_keeps_the_new_license() {
        let mut reissued = fresh();
        carry_over(&mut reissued, None, None);
        assert_eq!(reissued, fresh());
    }

    fn ask() -> SeatAsk<'static> {
        SeatAsk {
            license_active: true,
            license_current: true,
            seats: 2,
            seats_used: 1,
            held_by_device: None,
            applied_before: false,
            churn: Ok(()),
            total_reached: None,
        }
    }

    #[test]
    fn a_license_total_reached_refuses_new_seats_and_reissues() {
        let reached = OverTotal {
            feature: "render-minutes".into(),
            total: 100,
            limit: 100,
        };
        for held in [None, Some("act_1")] {
            let ask = SeatAsk {
                total_reached: Some(&reached),
                held_by_device: held,
                ..ask()
            };
            assert_eq!(seat(&ask), SeatAnswer::TotalReached(reached.clone()));
        }
        // A request applied before still gets its answer.
        let again = SeatAsk {
            total_reached: Some(&reached),
            applied_before: true,
            ..ask()
        };
        assert_eq!(seat(&again), SeatAnswer::AlreadyApplied);
    }

    #[test]
    fn a_license_total_is_reached_at_its_limit() {
        let limits: BTreeMap<String, u64> =
            [("minutes".to_string(), 100), ("jobs".to_string(), 5)].into();
        let totals: BTreeMap<String, u64> =
            [("minutes".to_string(), 99), ("jobs".to_string(), 5)].into();
        assert_eq!(
            total_reached(&limits, &totals),
            [OverTotal {
                feature: "jobs".into(),
                total: 5,
                limit: 5
            }]
        );
        assert!(total_reached(&limits, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn a_report_that_takes_a_license_total_past_its_limit_is_found() {
        let limits: BTreeMap<String, u64> = [("minutes".to_string(), 100)].into();
        let before: BTreeMap<String, u64> = [("minutes".to_string(), 90)].into();
        assert!(total_passed(&limits, &before, &[("minutes".into(), 10)]).is_empty());
        assert_eq!(
            total_passed(&limits, &before, &[("minutes".into(), 11)]),
            [OverTotal {
                feature: "minutes".into(),
                total: 101,
                limit: 100
            }]
        );
        // Every report beyond it is found, not only the first one to pass it.
        let past: BTreeMap<String, u64> = [("minutes".to_string(), 120)].into();
        assert_eq!(
            total_passed(&limits, &past, &[("minutes".into(), 1)]).len(),
            1
        );
        assert!(total_passed(&limits, &past, &[("other".into(), 1)]).is_empty());
    }

    fn pool(wanted: i64) -> PoolAsk<'static> {
        PoolAsk {
            wanted,
            leased: 0,
            device_is_pool: false,
            other_pool: None,
        }
    }

    #[test]
    fn a_pool_takes_its_seats_only_when_that_many_are_free() {
        // 2 seats, 1 held by a pool or node-locked device: 1 free.
        assert_eq!(pool_seat(&ask(), &pool(1)), SeatAnswer::Take);
        assert_eq!(
            pool_seat(&ask(), &pool(2)),
            SeatAnswer::TooFewSeats { free: 1 }
        );
        // Live floating leases count too.
        let leased = PoolAsk {
            leased: 1,
            ..pool(1)
        };
        assert_eq!(
            pool_seat(&ask(), &leased),
            SeatAnswer::TooFewSeats { free: 0 }
        );
        // More held than there are (seats lowered) is nothing free, not less than none.
        assert_eq!(free_seats(2, 3, 1), 0);
    }

    #[test]
    fn a_license_holds_one_pool_and_a_device_with_a_seat_holds_none() {
        let other = PoolAsk {
            other_pool: Some("act_9"),
            ..pool(1)
        };
        assert_eq!(
            pool_seat(&ask(), &other),
            SeatAnswer::PoolHeld("act_9".into())
        );
        let has_seat = SeatAsk {
            held_by_device: Some("act_1"),
            ..ask()
        };
        assert_eq!(
            pool_seat(&has_seat, &pool(1)),
            SeatAnswer::DeviceHasSeat("act_1".into())
        );
        // The server that holds the pool gets it again, even when the license is full.
        let again = PoolAsk {
            device_is_pool: true,
            ..pool(5)
        };
        let full = SeatAsk {
            seats_used: 2,
            held_by_device: Some("act_1"),
            ..ask()
        };
        assert_eq!(
            pool_seat(&full, &again),
            SeatAnswer::Reissue("act_1".into())
        );
    }

    #[test]
    fn a_pool_request_applied_before_or_on_a_revoked_license_is_answered_as_any() {
        let before = SeatAsk {
            license_active: false,
            applied_before: true,
            ..ask()
        };
        assert_eq!(pool_seat(&before, &pool(1)), SeatAnswer::AlreadyApplied);
        let revoked = SeatAsk {
            license_active: false,
            ..ask()
        };
        assert_eq!(pool_seat(&revoked, &pool(1)), SeatAnswer::Revoked);
    }

    #[test]
    fn a_deactivation_frees_the_seats_the_activation_held() {
        assert_eq!(seats_held(Some(5), false), 5);
        assert_eq!(seats_held(None, true), 1);
        assert_eq!(seats_held(None, false), 0);
    }

    #[test]
    fn a_pool_grows_into_free_seats_and_counts_its_own_as_free() {
        // 10 seats; the pool holds 4, leases 3: the pool may hold up to 7.
        assert_eq!(pool_resize(10, 4, 3, 4, 7), Ok(()));
        assert_eq!(pool_resize(10, 4, 3, 4, 8), Err(7));
        // Shrinking is always fine.
        assert_eq!(pool_resize(10, 4, 3, 4, 1), Ok(()));
    }

    #[test]
    fn a_request_takes_a_free_seat() {
        assert_eq!(seat(&ask()), SeatAnswer::Take);
    }

    #[test]
    fn no_seat_is_taken_when_every_seat_is_used() {
        let full = SeatAsk {
            seats_used: 2,
            ..ask()
        };
        assert_eq!(seat(&full), SeatAnswer::NoSeatLeft);
        // (More used than there are, after the seats were lowered, is full too.)
        let over = SeatAsk {
            seats_used: 3,
            ..ask()
        };
        assert_eq!(seat(&over), SeatAnswer::NoSeatLeft);
    }

    #[test]
    fn a_device_that_holds_a_seat_is_reissued_it_even_when_the_license_is_full() {
        let held = SeatAsk {
            seats_used: 2,
            held_by_device: Some("act_1"),
            ..ask()
        };
        assert_eq!(seat(&held), SeatAnswer::Reissue("act_1".into()));
    }

    #[test]
    fn a_request_applied_before_gets_its_answer_again_even_after_a_revocation() {
        for held in [None, Some("act_1")] {
            let again = SeatAsk {
                license_active: false,
                held_by_device: held,
                applied_before: true,
                ..ask()
            };
            assert_eq!(seat(&again), SeatAnswer::AlreadyApplied);
        }
    }

    #[test]
    fn a_revoked_license_neither_gives_nor_reissues_a_seat() {
        for held in [None, Some("act_1")] {
            let revoked = SeatAsk {
                license_active: false,
                held_by_device: held,
                ..ask()
            };
            assert_eq!(seat(&revoked), SeatAnswer::Revoked);
        }
    }

    #[test]
    fn the_churn_policy_refuses_a_new_seat_but_not_a_reissue() {
        let refused = ChurnRefused {
            count: 3,
            oldest: Some(10),
        };
        let churned = SeatAsk {
            churn: Err(refused),
            ..ask()
        };
        assert_eq!(seat(&churned), SeatAnswer::TooManyDeactivations(refused));
        let held = SeatAsk {
            held_by_device: Some("act_1"),
            ..churned
        };
        assert_eq!(seat(&held), SeatAnswer::Reissue("act_1".into()));
    }

    #[test]
    fn a_license_file_made_from_an_older_copy_of_the_license_is_made_again() {
        let stale = SeatAsk {
            license_current: false,
            ..ask()
        };
        assert_eq!(seat(&stale), SeatAnswer::StaleLicense);
        // Also for a device that holds a seat, and before a suspension is told.
        for held in [None, Some("act_1")] {
            let stale = SeatAsk {
                license_current: false,
                license_active: false,
                held_by_device: held,
                ..ask()
            };
            assert_eq!(seat(&stale), SeatAnswer::StaleLicense);
        }
        // A request applied before gets its answer, whatever changed since.
        let again = SeatAsk {
            license_current: false,
            applied_before: true,
            ..ask()
        };
        assert_eq!(seat(&again), SeatAnswer::AlreadyApplied);
    }

    #[test]
    fn seats_go_down_to_the_seats_in_use_and_never_below_one() {
        assert_eq!(seats_change(5, 3), Ok(()));
        assert_eq!(seats_change(3, 3), Ok(()));
        assert_eq!(seats_change(1, 0), Ok(()));
        assert_eq!(seats_change(2, 3), Err(SeatsRefused::InUse { in_use: 3 }));
        assert_eq!(seats_change(0, 0), Err(SeatsRefused::BelowOne));
        assert_eq!(seats_change(-1, 0), Err(SeatsRefused::BelowOne));
    }

    #[test]
    fn an_edit_moves_between_active_and_suspended_and_never_touches_a_revocation() {
        assert_eq!(status_change("active", "suspended"), Ok(()));
        assert_eq!(status_change("suspended", "active"), Ok(()));
        assert_eq!(status_change("active", "active"), Ok(()));
        let revoke = status_change("active", "revoked").unwrap_err();
        assert!(revoke.contains("license revoke"), "{revoke}");
        for to in ["active", "suspended", "revoked"] {
            let undo = status_change("revoked", to).unwrap_err();
            assert!(undo.contains("final"), "{undo}");
        }
        let unknown = status_change("active", "paused").unwrap_err();
        assert!(unknown.contains("\"paused\""), "{unknown}");
    }

    #[test]
    fn a_license_grants_its_own_entitlements_else_its_policys() {
        let pdf: lic_core::format::Features =
            [("export-pdf".to_string(), Default::default())].into();
        let none = lic_core::format::Features::new();
        let g = granted(Some(&pdf), &none, Some(500), Some(10), 100);
        assert_eq!(g.features, pdf);
        assert_eq!(g.expires, Some(500));
        let g = granted(None, &pdf, None, Some(10), 100);
        assert_eq!(g.features, pdf);
        assert_eq!(g.expires, Some(100 + 10 * 86_400));
        assert_eq!(granted(None, &none, None, None, 100).expires, None);
    }

    #[test]
    fn a_device_is_out_of_date_when_its_features_or_expiry_differ() {
        let pdf: lic_core::format::Features =
            [("export-pdf".to_string(), Default::default())].into();
        let issued = Entitlements {
            features: pdf.clone(),
            expires: Some(100),
        };
        assert!(out_of_date(&issued, &issued.clone()).is_empty());
        let later = Entitlements {
            expires: Some(200),
            ..issued.clone()
        };
        assert_eq!(out_of_date(&issued, &later), ["expires"]);
        let never = Entitlements {
            expires: None,
            ..issued.clone()
        };
        assert_eq!(out_of_date(&issued, &never), ["expires"]);
        let fewer = Entitlements {
            features: Default::default(),
            expires: None,
        };
        assert_eq!(out_of_date(&issued, &fewer), ["features", "expires"]);
    }

    #[test]
    fn churn_allows_fewer_deactivations_than_the_policy_and_refuses_at_it() {
        assert_eq!(churn(3, &[]), Ok(()));
        assert_eq!(churn(3, &[10, 20]), Ok(()));
        assert_eq!(
            churn(3, &[10, 20, 30]),
            Err(ChurnRefused {
                count: 3,
                oldest: Some(10)
            })
        );
        // A policy of no deactivations at all refuses the first reactivation after one.
        assert_eq!(
            churn(0, &[]),
            Err(ChurnRefused {
                count: 0,
                oldest: None
            })
        );
    }

    fn h(n: u8) -> Bytes32 {
        Bytes32([n; 32])
    }

    fn journal(seq: u64, prev: u8, trail: &[u8]) -> JournalHead {
        JournalHead {
            seq,
            prev: h(prev),
            trail: trail.iter().map(|n| h(*n)).collect(),
        }
    }

    const K: FileKind = FileKind::UsageReport;

    /// `journal_link` for a file whose hash the head never named.
    fn link(head_seq: u64, head: &Bytes32, file: &JournalHead, kind: FileKind) -> Link {
        journal_link(head_seq, head, &[], file, &h(200), kind)
    }

    #[test]
    fn an_older_file_the_head_named_is_late_not_a_fork() {
        let known = [h(3), h(2)];
        assert_eq!(
            journal_link(4, &h(4), &known, &journal(3, 2, &[]), &h(3), K),
            Link::Late
        );
        // The same sequence, another file: a fork.
        assert!(matches!(
            journal_link(4, &h(4), &known, &journal(3, 2, &[]), &h(33), K),
            Link::Fork(_)
        ));
    }

    #[test]
    fn the_next_file_continues_the_head_it_names() {
        assert_eq!(link(4, &h(4), &journal(5, 4, &[3, 2]), K), Link::Continues);
        assert!(matches!(
            link(4, &h(4), &journal(5, 9, &[]), K),
            Link::Fork(_)
        ));
    }

    #[test]
    fn a_file_at_or_below_the_head_is_a_fork() {
        for seq in [1, 4] {
            assert!(matches!(
                link(4, &h(4), &journal(seq, 3, &[]), K),
                Link::Fork(_)
            ));
        }
    }

    #[test]
    fn skipped_files_link_through_the_trail() {
        // Head 4; the device wrote 5, 6 and uploads 7: prev = 6, trail = [5, 4, 3, …].
        assert_eq!(
            link(4, &h(4), &journal(7, 6, &[5, 4, 3]), K),
            Link::Continues
        );
    }

    #[test]
    fn a_restored_store_that_wrote_past_the_head_is_a_fork_not_a_gap() {
        // Head 4 (h4). The store was restored to 3 and wrote 4', 5', 6': the file of
        // sequence 6 names 5' and carries [4', 3, …] — not h4 where sequence 4 belongs.
        assert!(matches!(
            link(4, &h(4), &journal(6, 15, &[14, 3, 2]), K),
            Link::Fork(_)
        ));
    }

    #[test]
    fn a_file_further_ahead_than_its_trail_reaches_is_a_gap() {
        assert_eq!(
            link(4, &h(4), &journal(9, 8, &[7, 6]), K),
            Link::Gap { skipped: 4 }
        );
    }

    #[test]
    fn late_files_of_the_closed_history_are_superseded_others_are_a_restored_store() {
        let known = [h(4), h(3)];
        assert_eq!(after_close(5, &known, 4, &h(4), K), AfterClose::Superseded);
        assert!(matches!(
            after_close(5, &known, 4, &h(40), K),
            AfterClose::RestoredStore(_)
        ));
        assert!(matches!(
            after_close(5, &known, 6, &h(4), K),
            AfterClose::RestoredStore(_)
        ));
        assert!(matches!(
            after_close(5, &known, 5, &h(5), K),
            AfterClose::RestoredStore(_)
        ));
    }

    #[test]
    fn usage_adds_what_is_new_and_never_subtracts() {
        assert_eq!(usage_delta(5, 5), Delta::Same);
        assert_eq!(usage_delta(5, 8), Delta::Add(3));
        assert_eq!(usage_delta(8, 5), Delta::WentBack);
        let counters = [
            ("a".to_string(), 10),
            ("b".to_string(), 1),
            ("c".to_string(), 7),
        ]
        .into();
        let reported = [
            ("a".to_string(), 4),
            ("b".to_string(), 3),
            ("c".to_string(), 7),
        ]
        .into();
        let u = usage(&counters, &reported, &BTreeMap::new()).unwrap();
        assert_eq!(u.grows, [("a".to_string(), 10, 6)]);
        assert_eq!(u.went_back, ["b"]);
    }

    #[test]
    fn totals_stay_within_the_largest_counter() {
        assert_eq!(add_total("f", MAX_COUNTER - 1, 1), Ok(MAX_COUNTER));
        assert_eq!(
            add_total("f", MAX_COUNTER, 1),
            Err(OutOfRange {
                feature: "f".into(),
                value: u128::from(MAX_COUNTER) + 1
            })
        );
        assert!(add_total("f", u64::MAX, u64::MAX).is_err());
        let counters = [("f".to_string(), 2)].into();
        let totals = [("f".to_string(), MAX_COUNTER - 1)].into();
        assert!(usage(&counters, &BTreeMap::new(), &totals).is_err());
        let beyond = [("f".to_string(), MAX_COUNTER + 1)].into();
        assert!(usage(&beyond, &BTreeMap::new(), &BTreeMap::new()).is_err());
    }

    #[test]
    fn a_request_must_carry_every_required_component() {
        let fp: Fingerprint = [("machine-id".to_string(), h(1))].into();
        assert!(missing_components(&["machine-id".into()], &fp).is_empty());
        assert_eq!(
            missing_components(&["machine-id".into(), "declared-id".into()], &fp),
            ["declared-id"]
        );
        assert_eq!(
            missing_components(&["machine-id".into()], &Fingerprint::new()),
            ["machine-id"]
        );
    }

    fn waiter(device: &str, ticket: i64, seen: i64) -> Waiter {
        Waiter {
            device: device.into(),
            ticket,
            seen,
        }
    }

    #[test]
    fn a_queue_is_first_come_first_served_among_the_waiters_that_keep_asking() {
        let w = [
            waiter("a", 1, 100),
            waiter("b", 2, 100),
            waiter("c", 3, 100),
        ];
        assert_eq!(queue(&w, "a", 100, 60).ahead, 0);
        assert_eq!(queue(&w, "c", 100, 60).ahead, 2);
        assert_eq!(queue(&w, "c", 100, 60).mine, Some(3));
        // A newcomer is behind everyone and gets the next ticket.
        let new = queue(&w, "d", 100, 60);
        assert_eq!((new.ahead, new.mine, new.next_ticket), (3, None, 4));
        // A waiter that stopped asking for two lease periods lost its place.
        let w = [waiter("a", 1, 0), waiter("b", 2, 100)];
        let b = queue(&w, "b", 121, 60);
        assert_eq!((b.ahead, b.dead), (0, true));
        assert_eq!(queue(&w, "a", 121, 60).mine, None);
        assert!(!queue(&w, "b", 119, 60).dead);
    }

    #[test]
    fn instances_count_the_live_others_and_a_release_frees_the_seat_with_the_last() {
        let rows = [
            ("a".to_string(), 50),
            ("b".to_string(), 70),
            ("c".to_string(), 10),
        ];
        assert_eq!(
            instances(&rows, "a", 20),
            Instances {
                others: 1,
                mine: true,
                others_until: Some(70)
            }
        );
        assert!(!instances(&rows, "c", 20).mine);
        assert_eq!(
            release(&rows, "a", 20),
            Released {
                released: true,
                lease_expires: Some(70)
            }
        );
        let last = [("a".to_string(), 50)];
        assert_eq!(
            release(&last, "a", 20),
            Released {
                released: true,
                lease_expires: None
            }
        );
        // A lapsed or unknown instance releases nothing.
        assert!(!release(&last, "a", 50).released);
        assert!(!release(&last, "x", 20).released);
    }

    #[test]
    fn a_lease_never_shortens_a_checkout_and_otherwise_carries_the_policy_oed() {
        assert_eq!(seat_oed(true, Some(500), None, 100), (Some(500), true));
        assert_eq!(seat_oed(true, Some(500), Some(900), 100), (Some(900), true));
        assert_eq!(seat_oed(true, Some(500), Some(200), 100), (Some(500), true));
        // A checkout whose OED passed is over: the lease's OED, not checked out.
        assert_eq!(seat_oed(true, Some(50), Some(200), 100), (Some(200), false));
        assert_eq!(seat_oed(false, Some(500), None, 100), (None, false));
    }

    #[test]
    fn only_held_inactive_seats_are_reclaimed_and_checkouts_are_kept_to_their_oed() {
        let at = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap();
        let rule = lic_core::floating::Reclamation {
            inactivity_secs: 100,
            enabled_since: at(1000),
        };
        // Held by a long lease, last seen long ago, but counted from when enabled.
        assert_eq!(reclaim(&rule, 0, Some(5000), None, 1050), None);
        let why = reclaim(&rule, 0, Some(5000), None, 1101).unwrap();
        assert!(why.contains("100 s"), "{why}");
        // A lapsed lease holds nothing: nothing to reclaim.
        assert_eq!(reclaim(&rule, 0, Some(1100), None, 1200), None);
        // A checkout before its OED is kept; after it, it holds nothing.
        assert_eq!(reclaim(&rule, 1000, None, Some(3000), 2000), None);
        assert_eq!(reclaim(&rule, 1000, Some(9000), Some(3000), 2000), None);
        assert!(reclaim(&rule, 1000, Some(9000), Some(3000), 3000).is_some());
    }
}
