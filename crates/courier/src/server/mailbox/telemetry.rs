//! Metrics of reliable delivery, through the `metrics` crate (recorded by whatever recorder the application
//! installs; free when none is).
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `courier_reliable_accepted_total` | counter | messages the store accepted |
//! | `courier_reliable_attempts_total` | counter | attempts sent (first sends and retries) |
//! | `courier_reliable_retries_total` | counter | attempts after the first |
//! | `courier_reliable_outcomes_total` | counter, label `outcome` | `delivered`, `sent`, `expired`, `dead-lettered`, `conflated` |
//! | `courier_reliable_pending` | gauge | messages pending in loaded mailboxes |
//! | `courier_reliable_in_flight` | gauge | attempts awaiting their ack |
//! | `courier_reliable_delivery_seconds` | histogram | from the send to the ack |

use courier_delivery::Outbox;

use crate::server::reliable::Outcome;

pub(crate) fn accepted() {
    metrics::counter!("courier_reliable_accepted_total").increment(1);
}

pub(crate) fn attempt(attempt: u32) {
    metrics::counter!("courier_reliable_attempts_total").increment(1);
    if attempt > 1 {
        metrics::counter!("courier_reliable_retries_total").increment(1);
    }
}

pub(crate) fn settled(outcome: &Outcome) {
    metrics::counter!("courier_reliable_outcomes_total", "outcome" => outcome.status())
        .increment(1);
    if let Outcome::Delivered { latency, .. } = outcome {
        metrics::histogram!("courier_reliable_delivery_seconds").record(latency.as_secs_f64());
    }
}

/// One mailbox's share of the pending and in-flight gauges, moved by the difference since the last update.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pending: usize,
    in_flight: usize,
}

impl Gauges {
    pub(crate) fn update(&mut self, outbox: &Outbox) {
        move_gauge("courier_reliable_pending", &mut self.pending, outbox.len());
        move_gauge(
            "courier_reliable_in_flight",
            &mut self.in_flight,
            outbox.in_flight(),
        );
    }
}

impl Drop for Gauges {
    fn drop(&mut self) {
        move_gauge("courier_reliable_pending", &mut self.pending, 0);
        move_gauge("courier_reliable_in_flight", &mut self.in_flight, 0);
    }
}

#[allow(clippy::cast_precision_loss, reason = "gauge deltas are small counts")]
fn move_gauge(name: &'static str, current: &mut usize, now: usize) {
    if now > *current {
        metrics::gauge!(name).increment((now - *current) as f64);
    } else if now < *current {
        metrics::gauge!(name).decrement((*current - now) as f64);
    }
    *current = now;
}
