//! Floating licenses: the lease protocol's rules, as pure functions of their inputs (the
//! time is a parameter), shared by every floating server — the vendor's portal and an
//! on-premise server — and by the client. `docs/floating.md` describes the model; this
//! module is where its arithmetic and its decisions live, independent of any database.
//!
//! A license's seats are the pool. A device holds a seat while its **lease** is live
//! (`lease_expires > now`) or while an **Offline Expiry Date** set on it is ahead
//! (`offline_expiry > now`); a lapsed lease is simply not counted, so seat correctness
//! needs no background job. Several application instances on one device share the
//! device's seat; a policy may cap them. A floating feature is a pool of its own (N
//! concurrent uses of one module across the license's devices), held the same way.

use std::fmt;

use chrono::{DateTime, Duration, Utc};

use crate::format::{Lease, LeaseAction, MAX_CHECKOUT_HOURS};

/// The floating part of a policy: what a server needs to lease seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// How long a lease lasts unless renewed (seconds, ≥ [`MIN_LEASE_SECS`]).
    pub lease_secs: u64,
    /// When the client renews, in percent of the lease period (1–100; e.g. 50: halfway).
    pub renew_percent: u8,
    /// The most application instances per seat (absent: no cap).
    pub max_processes: Option<u32>,
    /// How long after its lease lapsed a device gets its own seat back ahead of the
    /// devices waiting for one (seconds; 0: no revival).
    pub revival_secs: u64,
    /// The longest offline checkout, in hours (absent: checkouts are refused).
    pub max_checkout_hours: Option<u64>,
    /// "Always set an OED": every lease keeps its seat for this many hours after it was
    /// last renewed, even offline (absent: leases carry no OED).
    pub lease_oed_hours: Option<u64>,
}

/// The shortest lease period a policy may set: a shorter one would have clients renewing
/// faster than a round trip over a slow link.
pub const MIN_LEASE_SECS: u64 = 10;
/// The longest lease period a policy may set: 30 days (a longer hold is a checkout).
pub const MAX_LEASE_SECS: u64 = 30 * 86_400;

/// How far a lease request's `created` may be from the server's clock: a request older
/// than this is refused as stale (a replayed release or take), one further ahead as
/// made on a wrong clock.
pub const REQUEST_WINDOW_SECS: i64 = 300;

impl Default for Terms {
    fn default() -> Self {
        Terms {
            lease_secs: 600,
            renew_percent: 50,
            max_processes: None,
            revival_secs: 0,
            max_checkout_hours: None,
            lease_oed_hours: None,
        }
    }
}

impl Terms {
    /// Whether the terms are usable, with what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_LEASE_SECS..=MAX_LEASE_SECS).contains(&self.lease_secs) {
            return Err(format!(
                "the lease period is {} s; give {MIN_LEASE_SECS} to {MAX_LEASE_SECS} s",
                self.lease_secs
            ));
        }
        if !(1..=100).contains(&self.renew_percent) {
            return Err(format!(
                "renewal at {}% of the lease period; give 1 to 100",
                self.renew_percent
            ));
        }
        if self.max_processes == Some(0) {
            return Err("at most 0 processes per seat would refuse every lease".into());
        }
        for (what, hours) in [
            ("the longest checkout", self.max_checkout_hours),
            ("the OED of every lease", self.lease_oed_hours),
        ] {
            if let Some(h) = hours.filter(|h| !(1..=MAX_CHECKOUT_HOURS).contains(h)) {
                return Err(format!(
                    "{what} is {h} hours; give 1 to {MAX_CHECKOUT_HOURS}"
                ));
            }
        }
        Ok(())
    }
}

/// Why a floating server refuses a request. Each has a stable code, a message that says
/// what is wrong and a hint that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Every seat (or every use of a floating feature) is leased.
    NoSeat {
        seats: u64,
        feature: Option<String>,
        /// When the first held seat lapses, if no one renews it (absent: unknown).
        next_free: Option<DateTime<Utc>>,
    },
    /// This device's seat already serves as many instances as the policy allows.
    TooManyProcesses { max: u32 },
    /// The policy allows no offline checkout.
    CheckoutNotAllowed,
    /// The seat is checked out until its OED: it cannot be deactivated or reclaimed.
    CheckedOut { until: DateTime<Utc> },
    /// The license has expired: nothing can be leased from it.
    LicenseExpired { at: DateTime<Utc> },
    /// The request's `created` time is too far from the server's clock.
    Stale {
        created: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// A renewal or release for a lease this device does not hold.
    NotLeased,
    /// The feature is not floating on this license.
    NotFloating { feature: String },
}

fn when(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Refusal {
    /// A stable code for scripts and JSON.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoSeat { .. } => "no-seat",
            Refusal::TooManyProcesses { .. } => "too-many-processes",
            Refusal::CheckoutNotAllowed => "checkout-not-allowed",
            Refusal::CheckedOut { .. } => "checked-out",
            Refusal::LicenseExpired { .. } => "license-expired",
            Refusal::Stale { .. } => "request-stale",
            Refusal::NotLeased => "not-leased",
            Refusal::NotFloating { .. } => "feature-not-floating",
        }
    }

    /// What to do next.
    pub fn hint(&self) -> String {
        match self {
            Refusal::NoSeat { next_free, .. } => format!(
                "wait for a seat (`lic lease --wait` queues until one is free{}), ask a \
                 colleague to close the application, or ask your vendor for more seats",
                next_free.map_or(String::new(), |t| format!(
                    "; the first one lapses at {} unless renewed",
                    when(&t)
                ))
            ),
            Refusal::TooManyProcesses { max } => format!(
                "close one of the {max} instances of the application running on this machine"
            ),
            Refusal::CheckoutNotAllowed => {
                "this license's policy does not allow offline use: stay online (`lic lease`), \
                 or ask your vendor for a policy with checkouts"
                    .into()
            }
            Refusal::CheckedOut { until } => format!(
                "wait until {} (the Offline Expiry Date), or have the user check the seat in \
                 (`lic checkin`) and apply the check-in file",
                when(until)
            ),
            Refusal::LicenseExpired { .. } => "ask your vendor to renew the license".into(),
            Refusal::Stale { .. } => {
                "set this computer's clock to the correct date and time and try again".into()
            }
            Refusal::NotLeased => {
                "take a lease first (`lic lease`); a lease that lapsed must be taken again".into()
            }
            Refusal::NotFloating { .. } => {
                "lease the seat without a feature, or ask your vendor to make the feature floating"
                    .into()
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoSeat {
                seats,
                feature: None,
                ..
            } => write!(f, "all {seats} floating seat(s) of the license are in use"),
            Refusal::NoSeat {
                seats,
                feature: Some(name),
                ..
            } => write!(
                f,
                "all {seats} concurrent use(s) of floating feature `{name}` are taken"
            ),
            Refusal::TooManyProcesses { max } => write!(
                f,
                "this machine's seat already serves {max} instance(s) of the application, the \
                 most the policy allows"
            ),
            Refusal::CheckoutNotAllowed => {
                write!(f, "the license's policy allows no offline checkout")
            }
            Refusal::CheckedOut { until } => write!(
                f,
                "the seat is checked out for offline use until {}: it cannot be deactivated or \
                 reclaimed before then",
                when(until)
            ),
            Refusal::LicenseExpired { at } => write!(f, "the license expired on {}", when(at)),
            Refusal::Stale { created, now } => write!(
                f,
                "the request was made at {}, but the server's clock says {}: more than {} s \
                 apart",
                when(created),
                when(now),
                REQUEST_WINDOW_SECS
            ),
            Refusal::NotLeased => write!(f, "this device holds no lease on the license"),
            Refusal::NotFloating { feature } => {
                write!(f, "feature `{feature}` is not floating on this license")
            }
        }
    }
}

impl std::error::Error for Refusal {}

fn secs(s: u64) -> Duration {
    Duration::seconds(
        i64::try_from(s)
            .unwrap_or(i64::MAX / 1000)
            .min(100 * 365 * 86_400),
    )
}

fn hours(h: u64) -> Duration {
    secs(h.saturating_mul(3600))
}

/// `t + d`, saturating at the ends of chrono's range: a time past its last instant is
/// that instant (as good as never), not a panic.
pub(crate) fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(if d < Duration::zero() {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// A request's `created` time must be within [`REQUEST_WINDOW_SECS`] of the server's
/// clock: an old request replayed (a release, a take) is refused.
pub fn fresh(created: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), Refusal> {
    if (now - created).num_seconds().abs() > REQUEST_WINDOW_SECS {
        return Err(Refusal::Stale { created, now });
    }
    Ok(())
}

/// What a server records about one holder of a seat (or of a floating feature's use): a
/// device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// When its lease lapses (absent: it never held one, or released it).
    pub lease_expires: Option<DateTime<Utc>>,
    /// Its Offline Expiry Date (a checkout, or the policy's OED on every lease).
    pub offline_expiry: Option<DateTime<Utc>>,
}

impl Holder {
    /// Whether it holds the seat at `now`: a live lease or an OED ahead.
    pub fn holds(&self, now: DateTime<Utc>) -> bool {
        self.lease_expires.is_some_and(|t| t > now) || self.offline_expiry.is_some_and(|t| t > now)
    }

    /// When it stops holding the seat, if no one renews it.
    pub fn until(&self) -> Option<DateTime<Utc>> {
        match (self.lease_expires, self.offline_expiry) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The pool as the server sees it when a device asks for a seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// The seats (or a floating feature's concurrent uses).
    pub seats: u64,
    /// Seats held at `now` by *other* devices.
    pub held_by_others: u64,
    /// Devices waiting for a seat (`lic lease --wait`) that asked before this one.
    pub waiting_ahead: u64,
    /// When the first seat held by another device lapses, if no one renews it.
    pub next_free: Option<DateTime<Utc>>,
}

/// How a seat is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The device already holds it: the lease is renewed.
    Held,
    /// Its lease lapsed within the revival window and the seat is free: it gets its own
    /// seat back, ahead of the devices waiting.
    Revived,
    /// A free seat, taken.
    Taken,
}

/// Whether `me` (what the server holds about this device, if anything) gets a seat from
/// `pool` at `now`. A device that holds its seat keeps it; a device whose lease lapsed
/// within the revival window gets its seat back when one is free, ahead of the devices
/// waiting; anyone else gets a seat when more are free than devices wait ahead of it.
pub fn grant(
    pool: Pool,
    me: Option<Holder>,
    revival_secs: u64,
    feature: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Grant, Refusal> {
    if me.is_some_and(|h| h.holds(now)) {
        return Ok(Grant::Held);
    }
    let free = pool.seats.saturating_sub(pool.held_by_others);
    let reviving = me
        .and_then(|h| h.until())
        .is_some_and(|lapsed| now < later(lapsed, secs(revival_secs)) && revival_secs > 0);
    if reviving && free > 0 {
        return Ok(Grant::Revived);
    }
    if free > pool.waiting_ahead {
        return Ok(Grant::Taken);
    }
    Err(Refusal::NoSeat {
        seats: pool.seats,
        feature: feature.map(str::to_owned),
        next_free: pool.next_free,
    })
}

/// Whether one more instance may share the device's seat, given the instances whose
/// leases are live (this one excluded).
pub fn instances(live_others: u64, max_processes: Option<u32>) -> Result<(), Refusal> {
    match max_processes {
        Some(max) if live_others >= u64::from(max) => Err(Refusal::TooManyProcesses { max }),
        _ => Ok(()),
    }
}

/// The times a lease carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    pub issued: DateTime<Utc>,
    pub renew_after: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    /// The policy's OED on every lease (never later than the license's expiry).
    pub offline_expiry: Option<DateTime<Utc>>,
}

/// The times of a lease granted or renewed at `now`: it lapses one lease period later
/// (never after the license expires), the client renews at the policy's fraction of the
/// period, and the OED, when the policy sets one on every lease, is that many hours on.
/// A license that has expired leases nothing.
pub fn lease_times(
    terms: &Terms,
    now: DateTime<Utc>,
    license_expires: Option<DateTime<Utc>>,
) -> Result<LeaseTimes, Refusal> {
    if let Some(at) = license_expires.filter(|at| *at <= now) {
        return Err(Refusal::LicenseExpired { at });
    }
    let cap = |t: DateTime<Utc>| license_expires.map_or(t, |e| t.min(e));
    let expires = cap(later(now, secs(terms.lease_secs)));
    let period = (expires - now).num_seconds();
    let renew_after = later(
        now,
        Duration::seconds(period * i64::from(terms.renew_percent) / 100),
    );
    Ok(LeaseTimes {
        issued: now,
        renew_after,
        expires,
        offline_expiry: terms.lease_oed_hours.map(|h| cap(later(now, hours(h)))),
    })
}

/// The Offline Expiry Date of a checkout asked at `now` for `asked_hours`: the earlier of
/// now + the hours (capped by the policy's maximum) and the license's expiry.
pub fn checkout_expiry(
    terms: &Terms,
    now: DateTime<Utc>,
    asked_hours: u64,
    license_expires: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, Refusal> {
    // (A longest checkout of 0 hours, which `Terms::validate` refuses, allows none.)
    let max = terms
        .max_checkout_hours
        .filter(|h| *h > 0)
        .ok_or(Refusal::CheckoutNotAllowed)?;
    if let Some(at) = license_expires.filter(|at| *at <= now) {
        return Err(Refusal::LicenseExpired { at });
    }
    let oed = later(now, hours(asked_hours.clamp(1, max)));
    Ok(license_expires.map_or(oed, |e| oed.min(e)))
}

/// Whether a seat may be taken away by the server (an admin's deactivation, a
/// reclamation) at `now`: not before its OED.
pub fn may_take_away(
    offline_expiry: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    match offline_expiry.filter(|until| *until > now) {
        Some(until) => Err(Refusal::CheckedOut { until }),
        None => Ok(()),
    }
}

/// Reclamation settings (QLM's): seats inactive for longer than the threshold are
/// reclaimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reclamation {
    /// How long a seat may go without a heartbeat or validation (seconds).
    pub inactivity_secs: u64,
    /// When reclamation was enabled: inactivity counts from then at the earliest, so a
    /// seat that predates last-access tracking is never reclaimed at once.
    pub enabled_since: DateTime<Utc>,
}

/// Whether a seat last accessed at `last_access` is reclaimed at `now`: inactive for
/// longer than the threshold (counted from when reclamation was enabled at the
/// earliest), and not checked out until an OED still ahead.
pub fn reclaimable(
    rule: &Reclamation,
    last_access: DateTime<Utc>,
    offline_expiry: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    let since = last_access.max(rule.enabled_since);
    may_take_away(offline_expiry, now).is_ok() && now - since > secs(rule.inactivity_secs)
}

/// Whether a lease request asks for something the server answers with a lease (take,
/// renew), a license (checkout) or nothing (release).
pub fn answers_with_lease(action: LeaseAction) -> bool {
    matches!(action, LeaseAction::Take | LeaseAction::Renew)
}

/// Whether the lease is live at `now` (the client's offline check: until it lapses).
pub fn live(lease: &Lease, now: DateTime<Utc>) -> bool {
    now < lease.expires
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .unwrap_or_default()
    }

    fn pool(seats: u64, held: u64, waiting: u64) -> Pool {
        Pool {
            seats,
            held_by_others: held,
            waiting_ahead: waiting,
            next_free: Some(t(100)),
        }
    }

    fn leased_until(at: i64) -> Holder {
        Holder {
            lease_expires: Some(t(at)),
            offline_expiry: None,
        }
    }

    #[test]
    fn a_holder_holds_while_its_lease_is_live_or_its_oed_is_ahead() {
        assert!(leased_until(10).holds(t(9)));
        assert!(!leased_until(10).holds(t(10)), "lapses at the exact time");
        let checked_out = Holder {
            lease_expires: Some(t(10)),
            offline_expiry: Some(t(50)),
        };
        assert!(checked_out.holds(t(49)));
        assert!(!checked_out.holds(t(50)));
        assert_eq!(checked_out.until(), Some(t(50)));
        let never = Holder {
            lease_expires: None,
            offline_expiry: None,
        };
        assert!(!never.holds(t(0)));
    }

    #[test]
    fn a_seat_is_granted_only_while_one_is_free_for_this_device() {
        assert_eq!(grant(pool(2, 1, 0), None, 0, None, t(0)), Ok(Grant::Taken));
        let refused = grant(pool(2, 2, 0), None, 0, None, t(0)).unwrap_err();
        assert_eq!(refused.code(), "no-seat");
        assert!(refused.to_string().contains("all 2 floating seat"));
        assert!(refused.hint().contains("lic lease --wait"));
        // The device that holds its seat keeps it, whatever the others hold.
        assert_eq!(
            grant(pool(2, 2, 5), Some(leased_until(5)), 0, None, t(0)),
            Ok(Grant::Held)
        );
        // Devices waiting ahead come first.
        assert!(grant(pool(3, 1, 2), None, 0, None, t(0)).is_err());
        assert_eq!(grant(pool(3, 1, 1), None, 0, None, t(0)), Ok(Grant::Taken));
    }

    #[test]
    fn a_lapsed_lease_revives_ahead_of_the_queue_within_the_window_only() {
        let lapsed = Some(leased_until(10));
        // One seat free, one device waiting ahead: revival takes it back.
        assert_eq!(
            grant(pool(2, 1, 1), lapsed, 60, None, t(30)),
            Ok(Grant::Revived)
        );
        // After the window, it queues like everyone.
        assert!(grant(pool(2, 1, 1), lapsed, 60, None, t(71)).is_err());
        // Someone took the seat meanwhile: no revival.
        assert!(grant(pool(1, 1, 0), lapsed, 60, None, t(30)).is_err());
        // No revival window at all.
        assert!(grant(pool(2, 1, 1), lapsed, 0, None, t(11)).is_err());
    }

    #[test]
    fn a_floating_feature_is_named_in_its_refusal() {
        let err = grant(pool(1, 1, 0), None, 0, Some("render"), t(0)).unwrap_err();
        assert!(
            err.to_string().contains("floating feature `render`"),
            "{err}"
        );
    }

    #[test]
    fn processes_per_seat_are_capped_by_the_policy() {
        assert_eq!(instances(7, None), Ok(()));
        assert_eq!(instances(1, Some(2)), Ok(()));
        let err = instances(2, Some(2)).unwrap_err();
        assert_eq!(err.code(), "too-many-processes");
    }

    #[test]
    fn a_lease_lasts_one_period_renews_at_the_fraction_and_never_outlives_the_license() {
        let terms = Terms {
            lease_secs: 600,
            renew_percent: 50,
            ..Terms::default()
        };
        let times = lease_times(&terms, t(0), None).unwrap();
        assert_eq!((times.renew_after, times.expires), (t(300), t(600)));
        assert_eq!(times.offline_expiry, None);
        let capped = lease_times(&terms, t(0), Some(t(100))).unwrap();
        assert_eq!((capped.renew_after, capped.expires), (t(50), t(100)));
        let err = lease_times(&terms, t(100), Some(t(100))).unwrap_err();
        assert_eq!(err.code(), "license-expired");
        let always = Terms {
            lease_oed_hours: Some(2),
            ..terms
        };
        assert_eq!(
            lease_times(&always, t(0), None).unwrap().offline_expiry,
            Some(t(7200))
        );
        assert_eq!(
            lease_times(&always, t(0), Some(t(3600)))
                .unwrap()
                .offline_expiry,
            Some(t(3600))
        );
    }

    #[test]
    fn lease_arithmetic_at_the_end_of_chronos_range_saturates_without_panicking() {
        // (Found by the property tests: `now + period` overflowed at the last instant.)
        let end = DateTime::<Utc>::MAX_UTC;
        let terms = Terms {
            lease_oed_hours: Some(1),
            max_checkout_hours: Some(1),
            ..Terms::default()
        };
        let times = lease_times(&terms, end, None).unwrap();
        assert_eq!((times.expires, times.offline_expiry), (end, Some(end)));
        assert_eq!(checkout_expiry(&terms, end, 1, None), Ok(end));
        let lapsed_at_the_end = Holder {
            lease_expires: Some(end),
            offline_expiry: None,
        };
        assert_eq!(
            grant(pool(1, 0, 0), Some(lapsed_at_the_end), 1, None, end),
            Ok(Grant::Taken)
        );
    }

    #[test]
    fn a_checkout_ends_at_the_earlier_of_the_capped_hours_and_the_license_expiry() {
        let terms = Terms {
            max_checkout_hours: Some(48),
            ..Terms::default()
        };
        assert_eq!(checkout_expiry(&terms, t(0), 24, None), Ok(t(24 * 3600)));
        assert_eq!(checkout_expiry(&terms, t(0), 1000, None), Ok(t(48 * 3600)));
        assert_eq!(checkout_expiry(&terms, t(0), 24, Some(t(60))), Ok(t(60)));
        assert_eq!(
            checkout_expiry(&Terms::default(), t(0), 1, None),
            Err(Refusal::CheckoutNotAllowed)
        );
        // (Found by the property tests: `clamp(1, 0)` panicked.)
        let zero = Terms {
            max_checkout_hours: Some(0),
            ..Terms::default()
        };
        assert_eq!(
            checkout_expiry(&zero, t(0), 1, None),
            Err(Refusal::CheckoutNotAllowed)
        );
        assert_eq!(
            checkout_expiry(&terms, t(60), 1, Some(t(60))).map_err(|e| e.code()),
            Err("license-expired")
        );
    }

    #[test]
    fn nothing_is_taken_away_before_the_oed_and_the_refusal_names_it() {
        assert_eq!(may_take_away(None, t(0)), Ok(()));
        assert_eq!(may_take_away(Some(t(0)), t(0)), Ok(()));
        let err = may_take_away(Some(t(3600)), t(0)).unwrap_err();
        assert_eq!(err.code(), "checked-out");
        assert!(err.to_string().contains("2027-01-15T09:00:00Z"), "{err}");
    }

    #[test]
    fn reclamation_takes_inactive_seats_counting_from_when_it_was_enabled() {
        let rule = Reclamation {
            inactivity_secs: 600,
            enabled_since: t(1000),
        };
        // Last accessed long before reclamation was enabled: counted from t(1000).
        assert!(!reclaimable(&rule, t(0), None, t(1500)));
        assert!(reclaimable(&rule, t(0), None, t(1601)));
        assert!(!reclaimable(&rule, t(2000), None, t(2600)));
        assert!(reclaimable(&rule, t(2000), None, t(2601)));
        // A checkout is kept until its OED.
        assert!(!reclaimable(&rule, t(2000), Some(t(9000)), t(5000)));
        assert!(reclaimable(&rule, t(2000), Some(t(9000)), t(9000)));
    }

    #[test]
    fn requests_are_fresh_within_the_window_either_way() {
        assert_eq!(fresh(t(0), t(REQUEST_WINDOW_SECS)), Ok(()));
        assert_eq!(fresh(t(REQUEST_WINDOW_SECS), t(0)), Ok(()));
        let err = fresh(t(0), t(REQUEST_WINDOW_SECS + 1)).unwrap_err();
        assert_eq!(err.code(), "request-stale");
        assert!(fresh(t(REQUEST_WINDOW_SECS + 1), t(0)).is_err());
    }

    #[test]
    fn terms_are_validated_with_what_is_wrong() {
        assert_eq!(Terms::default().validate(), Ok(()));
        for (terms, says) in [
            (
                Terms {
                    lease_secs: 1,
                    ..Terms::default()
                },
                "lease period",
            ),
            (
                Terms {
                    renew_percent: 0,
                    ..Terms::default()
                },
                "renewal",
            ),
            (
                Terms {
                    max_processes: Some(0),
                    ..Terms::default()
                },
                "0 processes",
            ),
            (
                Terms {
                    max_checkout_hours: Some(0),
                    ..Terms::default()
                },
                "longest checkout",
            ),
        ] {
            let err = terms.validate().unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
