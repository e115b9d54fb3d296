//! When to try reconnecting after a connection was lost.

use std::time::Duration;

/// What a [`ReconnectPolicy`] knows when it picks the next delay.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RetryContext {
    /// How many reconnect attempts already failed since the connection was lost (0 before the first attempt).
    pub previous_retry_count: u32,
    /// How long ago the connection was lost.
    pub elapsed: Duration,
    /// Why the connection was lost, or why the last attempt failed.
    pub reason: Option<String>,
}

/// Chooses how long to wait before each reconnect attempt, and when to give up (as the JavaScript client's
/// `IRetryPolicy`).
pub trait ReconnectPolicy: Send + Sync + 'static {
    /// The delay before the next attempt, or `None` to give up (the connection then closes).
    fn next_retry_delay(&self, context: &RetryContext) -> Option<Duration>;
}

/// A fixed list of delays: attempt `n` waits `delays[n]`, and after the last one the client gives up.
///
/// The default is the JavaScript client's: 0, 2, 10 and 30 seconds, then stop.
///
/// ```
/// use std::time::Duration;
/// use courier::client::ReconnectDelays;
///
/// let delays = ReconnectDelays::default();
/// assert_eq!(delays.delays()[1], Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectDelays {
    delays: Vec<Duration>,
}

impl ReconnectDelays {
    /// Waits `delays[n]` before attempt `n`; gives up after the last.
    pub fn new(delays: impl Into<Vec<Duration>>) -> Self {
        Self {
            delays: delays.into(),
        }
    }

    /// The delays, in order.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }
}

impl Default for ReconnectDelays {
    fn default() -> Self {
        Self::new([0, 2, 10, 30].map(Duration::from_secs))
    }
}

impl ReconnectPolicy for ReconnectDelays {
    fn next_retry_delay(&self, context: &RetryContext) -> Option<Duration> {
        usize::try_from(context.previous_retry_count)
            .ok()
            .and_then(|n| self.delays.get(n))
            .copied()
    }
}
