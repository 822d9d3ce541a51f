//! Time, injected: the rules never read the system clock themselves.

use chrono::{DateTime, Utc};

/// A source of the current UTC time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock (UTC: daylight-saving and time-zone changes do not move it).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that always says the same time, for tests and for replaying a decision.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// A clock that stays where it is set and moves only when told, shared by its clones:
/// tests hand one clone to a server or client and move time with another (a lease
/// lapsing, an Offline Expiry Date passing) without sleeping.
#[derive(Debug, Clone)]
pub struct ManualClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl ManualClock {
    /// A clock set to `at` (whole seconds).
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
            at.timestamp(),
        )))
    }

    /// Set the time (it may go back, as a user's clock may).
    pub fn set(&self, at: DateTime<Utc>) {
        self.0
            .store(at.timestamp(), std::sync::atomic::Ordering::SeqCst);
    }

    /// Move the time on by `secs` seconds (negative: back).
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.0.load(std::sync::atomic::Ordering::SeqCst), 0)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_share_the_time() {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let clock = ManualClock::new(start);
        let other = clock.clone();
        assert_eq!(other.now(), start);
        clock.advance(90);
        assert_eq!(other.now().timestamp(), 1_800_000_090);
        other.set(start);
        assert_eq!(clock.now(), start);
    }
}
