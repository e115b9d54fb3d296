//! Time as the engine sees it: a number of milliseconds the caller supplies.

use std::time::Duration;

/// A point in time, in milliseconds since an origin the caller chooses.
///
/// The engine never reads a clock: every input that depends on time takes a `Timestamp`, and every deadline it
/// reports is one. A plain integer (rather than [`std::time::Instant`]) makes simulations exact and lets a store
/// persist deadlines such as a message's expiry.
///
/// Pick the origin by what must survive: an outbox that is rebuilt from a store after a restart needs an origin
/// that survives the restart (milliseconds since the Unix epoch, from the wall clock); an engine that lives and
/// dies with one connection may use any monotonic origin (e.g. the connection's start). Timestamps passed to one
/// engine must not go backwards; if one does, the engine treats it as the latest time it has seen.
///
/// ```
/// use std::time::Duration;
/// use courier_delivery::Timestamp;
///
/// let start = Timestamp::from_millis(1_000);
/// let later = start + Duration::from_millis(250);
/// assert_eq!(later.as_millis(), 1_250);
/// assert_eq!(later.saturating_duration_since(start), Duration::from_millis(250));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The origin, millisecond 0.
    pub const ZERO: Self = Self(0);
    /// The end of time: used for "never" (e.g. a message without a time to live expires at `MAX`).
    pub const MAX: Self = Self(u64::MAX);

    /// The timestamp `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self + duration`, or [`Timestamp::MAX`] if that does not fit.
    #[must_use]
    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration_millis(duration)))
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Self;

    /// Saturating: adding to [`Timestamp::MAX`] stays at `MAX`.
    fn add(self, duration: Duration) -> Self {
        self.saturating_add(duration)
    }
}

/// A duration in whole milliseconds, rounded up so that a non-zero duration never becomes zero.
pub(crate) fn duration_millis(duration: Duration) -> u64 {
    let millis = duration.as_millis();
    let rounded_up = if duration.subsec_nanos().is_multiple_of(1_000_000) {
        millis
    } else {
        millis + 1
    };
    u64::try_from(rounded_up).unwrap_or(u64::MAX)
}
