//! The licensing rules, as pure functions of their inputs (the time is a parameter):
//! validity, clock integrity (the high-water mark, and files issued ahead of this clock),
//! serial monotonicity, tombstones, consumption limits and the device journal. The
//! client applies them; tests call them directly.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};

use crate::format::{
    Bytes32, Feature, Features, JournalHead, License, LicenseType, MAX_COUNTER, MAX_TRAIL, Refresh,
};

/// Something that makes the license unusable right now. Applications react to these
/// (e.g. shut down gracefully, or ask the user to contact the vendor).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// No license is installed for the product.
    NotActivated { product: String },
    /// The license (or its last refresh) expired.
    Expired { at: DateTime<Utc> },
    /// The license is not valid yet (its not-before time is ahead of this clock).
    NotYetValid { from: DateTime<Utc> },
    /// The offline checkout ended: the license must be renewed.
    OfflineExpired { at: DateTime<Utc> },
    /// The clock is earlier than the latest time this device has seen, beyond the
    /// license's tolerance.
    ClockTurnedBack {
        now: DateTime<Utc>,
        last_seen: DateTime<Utc>,
        tolerance_secs: u64,
    },
    /// This is not the machine the license was issued to: the components listed differ
    /// (names only; the values are keyed hashes and never shown).
    WrongDevice {
        required_failed: Vec<String>,
        differing: Vec<String>,
        max_changed: u32,
    },
    /// The installed license or refresh no longer verifies (e.g. its vendor key is no
    /// longer trusted).
    InvalidLicense { reason: String },
    /// The device store was changed outside lic.
    StoreTampered { reason: String },
    /// The floating lease lapsed and was not renewed.
    LeaseLapsed { at: DateTime<Utc> },
    /// The floating server took the seat away or refused it, and no seat is free (the
    /// license was revoked or suspended, the seat reclaimed, all seats in use): its code
    /// and words.
    SeatLost { code: String, reason: String },
    /// The floating server could not be reached, and the lease has lapsed meanwhile.
    ServerUnreachable {
        since: DateTime<Utc>,
        lapsed: DateTime<Utc>,
        error: String,
    },
}

impl Violation {
    /// A stable code for scripts and JSON.
    pub fn code(&self) -> &'static str {
        match self {
            Violation::NotActivated { .. } => "not-activated",
            Violation::Expired { .. } => "expired",
            Violation::NotYetValid { .. } => "not-yet-valid",
            Violation::OfflineExpired { .. } => "offline-expired",
            Violation::ClockTurnedBack { .. } => "clock-turned-back",
            Violation::WrongDevice { .. } => "wrong-device",
            Violation::InvalidLicense { .. } => "invalid-license",
            Violation::StoreTampered { .. } => "store-tampered",
            Violation::LeaseLapsed { .. } => "lease-lapsed",
            Violation::SeatLost { .. } => "seat-lost",
            Violation::ServerUnreachable { .. } => "server-unreachable",
        }
    }

    /// What the user should do.
    pub fn hint(&self) -> &'static str {
        match self {
            Violation::NotActivated { .. } => {
                "activate first: `lic offline-activate --key KEY --product PRODUCT`, send the \
                 request file to your vendor and install the license file you get back"
            }
            Violation::Expired { .. } => {
                "ask your vendor for a refresh file (renewal) and install it with `lic install FILE`"
            }
            Violation::NotYetValid { .. } => {
                "check that this computer's date and time are right; otherwise wait until the \
                 license's start date"
            }
            Violation::OfflineExpired { .. } => {
                "reconnect to renew the checkout, or ask your vendor for a refresh file"
            }
            Violation::ClockTurnedBack { .. } => {
                "set this computer's clock to the correct date and time; if it is correct, ask \
                 your vendor for a refresh file that resets the clock floor"
            }
            Violation::WrongDevice { .. } => {
                "the license belongs to another machine (or this one changed too much): move it \
                 with `lic offline-deactivate` on the old machine and activate this one, or ask \
                 your vendor for help"
            }
            Violation::InvalidLicense { .. } => {
                "the vendor key that signed the license is not trusted here, or was revoked: \
                 install the key sets your vendor sent (`lic install FILE`, oldest first), and \
                 ask your vendor for the license (and refresh) signed again with its current \
                 key, then install those"
            }
            Violation::StoreTampered { .. } => {
                "the license store was changed outside lic; restore the store directory from a \
                 backup, or run `lic store reset` and activate again (your vendor sees the reset)"
            }
            Violation::LeaseLapsed { .. } => {
                "take a seat again (`lic lease`, or restart the application) while connected \
                 to the license server"
            }
            Violation::SeatLost { .. } => {
                "wait for a seat to free and start again (`lic lease --wait`), or ask your \
                 license administrator"
            }
            Violation::ServerUnreachable { .. } => {
                "check the network connection to the license server, then start again; to \
                 work offline, check a seat out beforehand (`lic checkout --hours H`)"
            }
        }
    }
}

fn when(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NotActivated { product } => {
                write!(f, "no license is installed for product '{product}'")
            }
            Violation::Expired { at } => write!(f, "the license expired on {}", when(at)),
            Violation::NotYetValid { from } => {
                write!(f, "the license is valid only from {}", when(from))
            }
            Violation::OfflineExpired { at } => {
                write!(f, "the offline checkout ended on {}", when(at))
            }
            Violation::ClockTurnedBack {
                now,
                last_seen,
                tolerance_secs,
            } => write!(
                f,
                "the clock was turned back: it says {}, but this device has already seen {} \
                 (tolerance {tolerance_secs} s)",
                when(now),
                when(last_seen)
            ),
            Violation::WrongDevice {
                required_failed,
                differing,
                max_changed,
            } => {
                write!(f, "the license was issued to another machine:")?;
                if !required_failed.is_empty() {
                    write!(
                        f,
                        " required component(s) {} differ",
                        required_failed.join(", ")
                    )?;
                    if !differing.is_empty() {
                        write!(f, ";")?;
                    }
                }
                if !differing.is_empty() {
                    write!(
                        f,
                        " {} other component(s) differ ({}), at most {max_changed} may",
                        differing.len(),
                        differing.join(", ")
                    )?;
                }
                Ok(())
            }
            Violation::InvalidLicense { reason } => {
                write!(f, "the installed license no longer verifies: {reason}")
            }
            Violation::StoreTampered { reason } => {
                write!(f, "the license store was tampered with: {reason}")
            }
            Violation::LeaseLapsed { at } => {
                write!(f, "the floating lease lapsed on {}", when(at))
            }
            Violation::SeatLost { code, reason } => {
                write!(f, "the floating seat was lost ({code}): {reason}")
            }
            Violation::ServerUnreachable {
                since,
                lapsed,
                error,
            } => write!(
                f,
                "the license server has been unreachable since {} and the lease lapsed on {}: \
                 {error}",
                when(since),
                when(lapsed)
            ),
        }
    }
}

/// The entitlements in force: the license, with its latest refresh applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlements {
    pub product: String,
    pub license_id: String,
    pub activation_id: String,
    pub license_type: LicenseType,
    pub features: Features,
    pub not_before: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub offline_expiry: Option<DateTime<Utc>>,
    pub clock_tolerance: u64,
    pub serial: u64,
}

/// The license with the refresh (if any) laid over it.
pub fn effective(license: &License, refresh: Option<&Refresh>) -> Entitlements {
    let mut e = Entitlements {
        product: license.product.clone(),
        license_id: license.license_id.clone(),
        activation_id: license.activation_id.clone(),
        license_type: license.license_type,
        features: license.features.clone(),
        not_before: license.not_before,
        expires: license.expires,
        offline_expiry: license.offline_expiry,
        clock_tolerance: license.clock_tolerance,
        serial: license.serial,
    };
    if let Some(r) = refresh {
        e.license_type = r.license_type;
        e.features = r.features.clone();
        e.expires = r.expires;
        e.offline_expiry = r.offline_expiry;
        e.clock_tolerance = r.clock_tolerance;
        e.serial = r.serial;
    }
    e
}

fn tolerance(secs: u64) -> Duration {
    Duration::seconds(
        i64::try_from(secs)
            .unwrap_or(i64::MAX / 1000)
            .min(100 * 365 * 86_400),
    )
}

/// `now` plus the tolerance, saturating at the end of chrono's range (a clock that far
/// ahead is ahead of every mark), never a panic.
fn tolerated(now: DateTime<Utc>, secs: u64) -> DateTime<Utc> {
    now.checked_add_signed(tolerance(secs))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The times that decide whether a license may be used: what [`validity`] reads. Copied
/// out of [`Entitlements`], a [`License`] (with a [`Refresh`] laid over it) without
/// cloning their names and features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Valid from (less the clock tolerance).
    pub not_before: DateTime<Utc>,
    /// Expiry, exact.
    pub expires: Option<DateTime<Utc>>,
    /// The end of an offline checkout, exact.
    pub offline_expiry: Option<DateTime<Utc>>,
    /// The clock tolerance in seconds.
    pub clock_tolerance: u64,
}

impl Window {
    /// The times of `license` with `refresh` (if any) laid over it, as [`effective`]
    /// lays them.
    pub fn of(license: &License, refresh: Option<&Refresh>) -> Self {
        let mut w = Window {
            not_before: license.not_before,
            expires: license.expires,
            offline_expiry: license.offline_expiry,
            clock_tolerance: license.clock_tolerance,
        };
        if let Some(r) = refresh {
            w.expires = r.expires;
            w.offline_expiry = r.offline_expiry;
            w.clock_tolerance = r.clock_tolerance;
        }
        w
    }
}

impl From<&Entitlements> for Window {
    fn from(e: &Entitlements) -> Self {
        Window {
            not_before: e.not_before,
            expires: e.expires,
            offline_expiry: e.offline_expiry,
            clock_tolerance: e.clock_tolerance,
        }
    }
}

impl From<&License> for Window {
    fn from(license: &License) -> Self {
        Window::of(license, None)
    }
}

/// Validity in time: not before, expiry, offline expiry. Expiry is exact (no tolerance:
/// a clock set forward ends a license early, never late); not-before allows the clock
/// tolerance, since a device clock a little behind the vendor's must not refuse a
/// license issued a moment ago.
///
/// Takes the [`Window`] of `&Entitlements`, of a bare `&License`, or one built with
/// [`Window::of`]: nothing is cloned.
pub fn validity(window: impl Into<Window>, now: DateTime<Utc>) -> Vec<Violation> {
    let e = window.into();
    let mut v = Vec::new();
    if tolerated(now, e.clock_tolerance) < e.not_before {
        v.push(Violation::NotYetValid { from: e.not_before });
    }
    if let Some(at) = e.expires.filter(|at| now >= *at) {
        v.push(Violation::Expired { at });
    }
    if let Some(at) = e.offline_expiry.filter(|at| now >= *at) {
        v.push(Violation::OfflineExpired { at });
    }
    v
}

/// The clock check: `now` may be earlier than the high-water mark by at most the
/// tolerance. All times are UTC, so time-zone and daylight-saving changes never count.
pub fn clock(
    now: DateTime<Utc>,
    last_seen: Option<DateTime<Utc>>,
    tolerance_secs: u64,
) -> Option<Violation> {
    let last_seen = last_seen?;
    (tolerated(now, tolerance_secs) < last_seen).then_some(Violation::ClockTurnedBack {
        now,
        last_seen,
        tolerance_secs,
    })
}

/// The new high-water mark after seeing `now` (it only ever rises).
pub fn raise_mark(mark: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    mark.map_or(now, |m| m.max(now))
}

/// A file issued later than this clock says, by more than the tolerance: this clock is
/// behind (or the issuer's ahead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedAhead {
    pub now: DateTime<Utc>,
    pub issued: DateTime<Utc>,
    pub tolerance_secs: u64,
}

/// Whether a file issued at `issued` may be installed now. Installing raises the clock
/// mark to the issue time, so a file issued more than the tolerance ahead of `now` would
/// at once make this clock count as turned back ([`clock`]): it is refused instead, and
/// installs once the clock is right. Within the tolerance it installs (and raises the
/// mark).
pub fn issued_ahead(
    now: DateTime<Utc>,
    issued: DateTime<Utc>,
    tolerance_secs: u64,
) -> Result<(), IssuedAhead> {
    match clock(now, Some(issued), tolerance_secs) {
        None => Ok(()),
        Some(_) => Err(IssuedAhead {
            now,
            issued,
            tolerance_secs,
        }),
    }
}

/// A file for an activation that was deactivated on this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deactivated {
    pub activation_id: String,
}

/// Tombstones: once an activation is deactivated on this device, none of its files (the
/// license, any refresh) may be installed here again. `tombstones` holds the deactivated
/// activations by id (whatever is kept about each).
pub fn tombstone<T>(
    tombstones: &BTreeMap<String, T>,
    activation_id: &str,
) -> Result<(), Deactivated> {
    if tombstones.contains_key(activation_id) {
        Err(Deactivated {
            activation_id: activation_id.to_string(),
        })
    } else {
        Ok(())
    }
}

/// What to do with a refresh of serial `offered` when `installed` is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialDecision {
    /// Newer: apply it.
    Apply,
    /// The very file already applied: nothing to do.
    AlreadyApplied,
    /// Older than what is installed: a rollback, refused.
    Rollback,
    /// The same serial as installed, but other bytes: refused.
    Conflict,
}

/// Serial monotonicity. `same_file`: the offered file is byte-for-byte the applied one.
pub fn serial(installed: u64, offered: u64, same_file: bool) -> SerialDecision {
    match offered.cmp(&installed) {
        std::cmp::Ordering::Greater => SerialDecision::Apply,
        std::cmp::Ordering::Equal if same_file => SerialDecision::AlreadyApplied,
        std::cmp::Ordering::Equal => SerialDecision::Conflict,
        std::cmp::Ordering::Less => SerialDecision::Rollback,
    }
}

/// The result of a permitted consumption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumed {
    /// The cumulative total after this consumption.
    pub total: u64,
    /// Units beyond the limit (overage), in total.
    pub overage: u64,
}

/// Why a consumption was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumeRefused {
    /// `used + requested` would pass the feature's limit, and overage is not allowed.
    Limit {
        limit: u64,
        used: u64,
        requested: u64,
    },
    /// `used + requested` would pass [`MAX_COUNTER`], the largest counter lic carries
    /// (whatever the limit, overage included).
    OutOfRange { used: u64, requested: u64 },
    /// `used + requested` would pass the limit by more than the overage the feature
    /// allows.
    OverageCap {
        limit: u64,
        max_overage: u64,
        used: u64,
        requested: u64,
    },
}

/// Consumption limits: `used + amount` may not pass the limit unless overage is allowed
/// (and then not by more than the overage cap, if there is one), and never
/// [`MAX_COUNTER`].
pub fn consume(feature: &Feature, used: u64, amount: u64) -> Result<Consumed, ConsumeRefused> {
    let total = used
        .checked_add(amount)
        .filter(|t| *t <= MAX_COUNTER)
        .ok_or(ConsumeRefused::OutOfRange {
            used,
            requested: amount,
        })?;
    match feature.limit {
        Some(limit) if total > limit && !feature.overage => Err(ConsumeRefused::Limit {
            limit,
            used,
            requested: amount,
        }),
        Some(limit) => match feature.max_overage {
            Some(cap) if total > limit.saturating_add(cap) => Err(ConsumeRefused::OverageCap {
                limit,
                max_overage: cap,
                used,
                requested: amount,
            }),
            _ => Ok(Consumed {
                total,
                overage: total.saturating_sub(limit),
            }),
        },
        None => Ok(Consumed { total, overage: 0 }),
    }
}

/// The journal entry for the next device-signed file: `last_seq` and `last_hash` are the
/// sequence number and hash of the last file, `trail` the hashes before it, newest
/// first. The file carries at most [`MAX_TRAIL`] of them.
pub fn next_journal(last_seq: u64, last_hash: Bytes32, trail: &[Bytes32]) -> JournalHead {
    JournalHead {
        seq: last_seq.saturating_add(1),
        prev: last_hash,
        trail: trail.iter().take(MAX_TRAIL).copied().collect(),
    }
}

/// The trail after a file is written: the hash of the file before it (`last_hash`) in
/// front of the old trail, the oldest dropped beyond [`MAX_TRAIL`].
pub fn advance_trail(trail: &[Bytes32], last_hash: Bytes32) -> Vec<Bytes32> {
    std::iter::once(last_hash)
        .chain(trail.iter().copied())
        .take(MAX_TRAIL)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 10, h, 0, 0).unwrap()
    }

    fn ent() -> Entitlements {
        Entitlements {
            product: "p".into(),
            license_id: "l".into(),
            activation_id: "a".into(),
            license_type: LicenseType::TimeLimited,
            features: Features::new(),
            not_before: t(10),
            expires: Some(t(20)),
            offline_expiry: Some(t(18)),
            clock_tolerance: 3600,
            serial: 1,
        }
    }

    #[test]
    fn validity_window() {
        assert_eq!(validity(&ent(), t(12)), vec![]);
        // One hour early is within the tolerance; two hours is not.
        assert_eq!(validity(&ent(), t(9)), vec![]);
        assert_eq!(
            validity(&ent(), t(8)),
            vec![Violation::NotYetValid { from: t(10) }]
        );
        assert_eq!(
            validity(&ent(), t(18)),
            vec![Violation::OfflineExpired { at: t(18) }]
        );
        assert_eq!(
            validity(&ent(), t(20)),
            vec![
                Violation::Expired { at: t(20) },
                Violation::OfflineExpired { at: t(18) }
            ]
        );
        let perpetual = Entitlements {
            expires: None,
            offline_expiry: None,
            ..ent()
        };
        assert_eq!(validity(&perpetual, t(23)), vec![]);
    }

    #[test]
    fn clock_turned_back_beyond_tolerance_only() {
        assert_eq!(clock(t(12), None, 0), None);
        assert_eq!(clock(t(12), Some(t(12)), 0), None);
        assert_eq!(clock(t(11), Some(t(12)), 3600), None, "within tolerance");
        assert_eq!(
            clock(t(10), Some(t(12)), 3600),
            Some(Violation::ClockTurnedBack {
                now: t(10),
                last_seen: t(12),
                tolerance_secs: 3600
            })
        );
    }

    #[test]
    fn a_clock_at_the_end_of_chronos_range_is_checked_without_panicking() {
        // (Found by the property tests: `now + tolerance` overflowed at the last instant.)
        let end = DateTime::<Utc>::MAX_UTC;
        assert_eq!(clock(end, Some(t(12)), 1), None);
        assert_eq!(issued_ahead(end, t(1), u64::MAX), Ok(()));
        let window = Window {
            not_before: t(10),
            expires: None,
            offline_expiry: None,
            clock_tolerance: 1,
        };
        assert_eq!(validity(window, end), vec![]);
    }

    #[test]
    fn time_zone_and_dst_changes_are_not_clock_changes() {
        // The same instant seen through two offsets (e.g. CEST and CET) is equal in UTC.
        let summer = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
        let winter = chrono::FixedOffset::east_opt(3600).unwrap();
        let a = summer.with_ymd_and_hms(2026, 10, 25, 2, 30, 0).unwrap();
        let b = winter.with_ymd_and_hms(2026, 10, 25, 1, 30, 0).unwrap();
        assert_eq!(
            clock(b.with_timezone(&Utc), Some(a.with_timezone(&Utc)), 0),
            None
        );
    }

    #[test]
    fn a_file_issued_ahead_of_this_clock_beyond_the_tolerance_is_refused() {
        assert_eq!(issued_ahead(t(12), t(12), 0), Ok(()));
        assert_eq!(issued_ahead(t(12), t(8), 0), Ok(()), "issued in the past");
        assert_eq!(issued_ahead(t(12), t(13), 3600), Ok(()), "within tolerance");
        assert_eq!(
            issued_ahead(t(12), t(14), 3600),
            Err(IssuedAhead {
                now: t(12),
                issued: t(14),
                tolerance_secs: 3600
            })
        );
        // Exactly what the clock rule would flag once the mark is raised to the issue
        // time: a file is refused if and only if installing it would turn the clock back.
        for issued in [t(11), t(13), t(14), t(20)] {
            assert_eq!(
                issued_ahead(t(12), issued, 3600).is_err(),
                clock(t(12), Some(raise_mark(Some(t(12)), issued)), 3600).is_some(),
                "{issued}"
            );
        }
    }

    #[test]
    fn tombstoned_activations_are_refused_others_are_not() {
        let mut tombstones = BTreeMap::new();
        assert_eq!(tombstone(&tombstones, "act_1"), Ok(()));
        tombstones.insert("act_1".to_string(), ());
        assert_eq!(
            tombstone(&tombstones, "act_1"),
            Err(Deactivated {
                activation_id: "act_1".into()
            })
        );
        assert_eq!(tombstone(&tombstones, "act_2"), Ok(()));
        assert_eq!(tombstone(&tombstones, "act_"), Ok(()), "exact ids only");
    }

    #[test]
    fn the_mark_only_rises() {
        assert_eq!(raise_mark(None, t(5)), t(5));
        assert_eq!(raise_mark(Some(t(7)), t(5)), t(7));
        assert_eq!(raise_mark(Some(t(7)), t(9)), t(9));
    }

    #[test]
    fn serials_are_monotonic() {
        assert_eq!(serial(1, 2, false), SerialDecision::Apply);
        assert_eq!(serial(2, 2, true), SerialDecision::AlreadyApplied);
        assert_eq!(serial(2, 2, false), SerialDecision::Conflict);
        assert_eq!(serial(3, 2, false), SerialDecision::Rollback);
    }

    #[test]
    fn consumption_limits_and_overage() {
        let capped = Feature {
            limit: Some(10),
            overage: false,
            max_overage: None,
            floating: None,
        };
        assert_eq!(
            consume(&capped, 8, 2),
            Ok(Consumed {
                total: 10,
                overage: 0
            })
        );
        assert_eq!(
            consume(&capped, 8, 3),
            Err(ConsumeRefused::Limit {
                limit: 10,
                used: 8,
                requested: 3
            })
        );
        let overage = Feature {
            limit: Some(10),
            overage: true,
            max_overage: None,
            floating: None,
        };
        assert_eq!(
            consume(&overage, 8, 5),
            Ok(Consumed {
                total: 13,
                overage: 3
            })
        );
        let capped_overage = Feature {
            limit: Some(10),
            overage: true,
            max_overage: Some(5),
            floating: None,
        };
        assert_eq!(
            consume(&capped_overage, 8, 7),
            Ok(Consumed {
                total: 15,
                overage: 5
            })
        );
        assert_eq!(
            consume(&capped_overage, 8, 8),
            Err(ConsumeRefused::OverageCap {
                limit: 10,
                max_overage: 5,
                used: 8,
                requested: 8
            })
        );
        assert_eq!(capped_overage.ceiling(), Some(15));
        assert_eq!(overage.ceiling(), None);
        assert_eq!(capped.ceiling(), Some(10));
        // (A cap without overage allowed caps nothing more than the limit.)
        let cap_without_overage = Feature {
            max_overage: Some(5),
            ..capped.clone()
        };
        assert_eq!(cap_without_overage.ceiling(), Some(10));
        assert!(matches!(
            consume(&cap_without_overage, 10, 1),
            Err(ConsumeRefused::Limit { .. })
        ));
        let unlimited = Feature::default();
        assert_eq!(
            consume(&unlimited, MAX_COUNTER - 1, 1),
            Ok(Consumed {
                total: MAX_COUNTER,
                overage: 0
            })
        );
    }

    #[test]
    fn no_counter_passes_the_largest_counter_whatever_the_limit() {
        let out_of_range = |used, requested| Err(ConsumeRefused::OutOfRange { used, requested });
        let unlimited = Feature::default();
        assert_eq!(
            consume(&unlimited, MAX_COUNTER, 1),
            out_of_range(MAX_COUNTER, 1)
        );
        assert_eq!(consume(&unlimited, 0, u64::MAX), out_of_range(0, u64::MAX));
        assert_eq!(consume(&unlimited, u64::MAX, 1), out_of_range(u64::MAX, 1));
        let overage = Feature {
            limit: Some(10),
            overage: true,
            max_overage: None,
            floating: None,
        };
        assert_eq!(
            consume(&overage, 5, MAX_COUNTER),
            out_of_range(5, MAX_COUNTER)
        );
    }

    #[test]
    fn a_refresh_replaces_the_mutable_entitlements() {
        let license = License {
            pool: None,
            pool_seats: None,
            license_id: "l".into(),
            activation_id: "a".into(),
            product: "p".into(),
            device_key: Bytes32([0; 32]),
            fingerprint: Default::default(),
            match_rule: crate::format::MatchRule {
                required: vec![],
                max_changed: 0,
            },
            features: [("x".to_string(), Feature::default())].into(),
            license_type: LicenseType::Trial,
            issued: t(1),
            not_before: t(1),
            expires: Some(t(2)),
            offline_expiry: None,
            clock_tolerance: 60,
            serial: 1,
            request_nonce: crate::format::Nonce([0; 16]),
            counters: Default::default(),
        };
        let refresh = Refresh {
            pool_seats: None,
            license_id: "l".into(),
            activation_id: "a".into(),
            product: "p".into(),
            device_key: Bytes32([0; 32]),
            serial: 2,
            features: [("y".to_string(), Feature::default())].into(),
            license_type: LicenseType::TimeLimited,
            expires: Some(t(22)),
            offline_expiry: None,
            clock_tolerance: 120,
            clock_floor: None,
            reason: "r".into(),
            issued: t(3),
        };
        let e = effective(&license, Some(&refresh));
        assert_eq!(e.serial, 2);
        assert_eq!(e.expires, Some(t(22)));
        assert!(e.features.contains_key("y") && !e.features.contains_key("x"));
        assert_eq!(e.license_type, LicenseType::TimeLimited);
        assert_eq!(e.not_before, t(1), "not-before stays the license's");
        assert_eq!(effective(&license, None).serial, 1);
    }

    #[test]
    fn the_journal_advances_by_one_and_links_the_previous_file() {
        let head = next_journal(4, Bytes32([9; 32]), &[Bytes32([8; 32])]);
        assert_eq!(head.seq, 5);
        assert_eq!(head.prev, Bytes32([9; 32]));
        assert_eq!(head.trail, [Bytes32([8; 32])]);
    }

    #[test]
    fn the_trail_keeps_the_newest_hashes_first_and_at_most_max_trail() {
        let mut trail = Vec::new();
        for n in 0..40u8 {
            trail = advance_trail(&trail, Bytes32([n; 32]));
        }
        assert_eq!(trail.len(), MAX_TRAIL);
        assert_eq!(trail[0], Bytes32([39; 32]));
        assert_eq!(
            trail[MAX_TRAIL - 1],
            Bytes32([39 - (MAX_TRAIL as u8 - 1); 32])
        );
        let long: Vec<Bytes32> = (0..40u8).map(|n| Bytes32([n; 32])).collect();
        assert_eq!(
            next_journal(1, Bytes32([0; 32]), &long).trail.len(),
            MAX_TRAIL
        );
    }

    #[test]
    fn violations_say_what_differs_without_values() {
        let v = Violation::WrongDevice {
            required_failed: vec!["machine-id".into()],
            differing: vec!["mac".into(), "hostname".into()],
            max_changed: 1,
        };
        assert_eq!(
            v.to_string(),
            "the license was issued to another machine: required component(s) machine-id \
             differ; 2 other component(s) differ (mac, hostname), at most 1 may"
        );
    }
}
