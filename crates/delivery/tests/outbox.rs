//! Scenario tests of the outbox, one behaviour each.

use std::time::Duration;

use bytes::Bytes;
use courier_delivery::{
    Backoff, Capacity, DeadLetterReason, Event, Guarantee, Message, Nack, Ordering, Outbox,
    Overflow, Policy, PushError, Resend, Timestamp, Transmit,
};

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn msg(text: &'static str) -> Message {
    Message::new(Bytes::from_static(text.as_bytes()))
}

/// A policy whose timings are exact: no jitter.
fn exact() -> Policy {
    Policy::default()
        .ack_timeout(Some(Duration::from_millis(100)))
        .backoff(
            Backoff::new(Duration::from_millis(50), 2.0, Duration::from_millis(400)).jitter(0.0),
        )
}

/// The (seq, attempt) of every message `poll_transmit` hands out now.
fn transmit_all(outbox: &mut Outbox, now: Timestamp) -> Vec<(u64, u32)> {
    std::iter::from_fn(|| outbox.poll_transmit(now))
        .map(|t| match t {
            Transmit::Message(out) => (out.seq, out.attempt),
            Transmit::Sequence { first } => panic!("unexpected Sequence({first}) in mailbox mode"),
        })
        .collect()
}

fn events(outbox: &mut Outbox) -> Vec<Event> {
    std::iter::from_fn(|| outbox.poll_event()).collect()
}

#[test]
fn nothing_is_sent_while_disconnected() {
    let mut outbox = Outbox::new(exact(), 1);
    outbox.push(msg("a"), at(0)).unwrap();
    assert_eq!(transmit_all(&mut outbox, at(0)), []);
    outbox.handle_connected(at(1));
    assert_eq!(transmit_all(&mut outbox, at(1)), [(1, 1)]);
}

#[test]
fn strict_window_of_one_is_stop_and_wait() {
    let mut outbox = Outbox::new(exact(), 1);
    outbox.handle_connected(at(0));
    for text in ["a", "b", "c"] {
        outbox.push(msg(text), at(0)).unwrap();
    }
    assert_eq!(transmit_all(&mut outbox, at(0)), [(1, 1)]);
    outbox.handle_ack(1, at(10));
    assert_eq!(transmit_all(&mut outbox, at(10)), [(2, 1)]);
    assert_eq!(
        events(&mut outbox),
        [Event::Delivered {
            seq: 1,
            attempts: 1,
            latency: Duration::from_millis(10)
        }]
    );
}

#[test]
fn strict_window_is_anchored_at_the_oldest_pending_message() {
    let mut outbox = Outbox::new(exact().window(2), 1);
    outbox.handle_connected(at(0));
    for text in ["a", "b", "c"] {
        outbox.push(msg(text), at(0)).unwrap();
    }
    assert_eq!(transmit_all(&mut outbox, at(0)), [(1, 1), (2, 1)]);
    // 1 failed and waits out its backoff: only one message is in flight, but 3 is not among the two oldest
    // pending messages, so it must wait (an unordered outbox would send it).
    outbox.handle_nack(1, 1, Nack::Retry, at(1));
    assert_eq!(outbox.in_flight(), 1);
    assert_eq!(transmit_all(&mut outbox, at(1)), []);
    outbox.handle_timeout(at(51));
    assert_eq!(transmit_all(&mut outbox, at(51)), [(1, 2)]);
    outbox.handle_ack(1, at(52));
    assert_eq!(transmit_all(&mut outbox, at(52)), [(3, 1)]);
}

#[test]
fn unordered_window_counts_messages_in_flight() {
    let mut outbox = Outbox::new(exact().ordering(Ordering::Unordered).window(2), 1);
    outbox.handle_connected(at(0));
    for text in ["a", "b", "c"] {
        outbox.push(msg(text), at(0)).unwrap();
    }
    assert_eq!(transmit_all(&mut outbox, at(0)), [(1, 1), (2, 1)]);
    outbox.handle_ack(2, at(5));
    assert_eq!(transmit_all(&mut outbox, at(5)), [(3, 1)]);
    assert_eq!(outbox.in_flight(), 2);
}

#[test]
fn ack_timeout_backs_off_then_retries() {
    let mut outbox = Outbox::new(exact(), 1);
    outbox.handle_connected(at(0));
    outbox.push(msg("a"), at(0)).unwrap();
    assert_eq!(transmit_all(&mut outbox, at(0)), [(1, 1)]);
    assert_eq!(outbox.poll_timeout(), Some(at(100)));
    outbox.handle_timeout(at(100));
    // First failure: 50 ms of backoff.
    assert_eq!(transmit_all(&mut outbox, at(100)), []);
    assert_eq!(outbox.poll_timeout(), Some(at(150)));
    outbox.handle_timeout(at(150));
    assert_eq!(transmit_all(&mut outbox, at(150)), [(1, 2)]);
    // Second failure: 100 ms.
    outbox.handle_timeout(at(250));
    assert_eq!(outbox.poll_timeout(), Some(at(350)));
}

#[test]
fn an_ack_for_an_earlier_attempt_still_delivers() {
    let mut outbox = Outbox::new(exact(), 1);
    outbox.handle_connected(at(0));
    outbox.push(msg("a"), at(0)).unwrap();
    transmit_all(&mut outbox, at(0));
    outbox.handle_timeout(at(100));
    outbox.handle_ack(1, at(120));
    assert_eq!(
        events(&mut outbox),
        [Event::Delivered {
            seq: 1,
            attempts: 1,
            latency: Duration::from_millis(120)
        }]
    );
    assert!(outbox.is_empty());
    // Acks are idempotent.
    outbox.handle_ack(1, at(130));
    assert_eq!(events(&mut outbox), []);
}

#[test]
fn attempts_run_out_into_the_dead_letters() {
    let mut outbox = Outbox::new(exact().max_attempts(Some(2)), 1);
    outbox.handle_connected(at(0));
    outbox.push(msg("a"), at(0)).unwrap();
    transmit_all(&mut outbox, at(0));
    outbox.handle_timeout(at(100));
    outbox.handle_timeout(at(150));
    assert_eq!(transmit_all(&mut outbox, at(150)), [(1, 2)]);
    outbox.handle_timeout(at(250));
    assert_eq!(
        events(&mut outbox),
        [Event::DeadLettered {
            seq: 1,
            attempts: 2,
            reason: DeadLetterReason::AttemptsExhausted,
            payload: Bytes::from_static(b"a")
        }]
    );
    assert_eq!(outbox.poll_timeout(), None);
}

#[test]
fn nacks_retry_or_reject() {
    let mut outbox = Outbox::new(exact().window(2), 1);
    outbox.handle_connected(at(0));
    outbox.push(msg("a"), at(0)).unwrap();
    outbox.push(msg("b"), at(0)).unwrap();
    transmit_all(&mut outbox, at(0));
    // A nack for an attempt that is not the current one changes nothing.
    outbox.handle_nack(1, 7, Nack::Retry, at(1));
    assert_eq!(outbox.in_flight(), 2);
    outbox.handle_nack(1, 1, Nack::Retry, at(1));
    assert_eq!(outbox.in_flight(), 1);
    assert_eq!(outbox.poll_timeout(), Some(at(51)));
    outbox.handle_nack(2, 1, Nack::Reject, at(2));
    assert!(matches!(
        events(&mut outbox)[..],
        [Event::DeadLettered {
            seq: 2,
            reason: DeadLetterReason::Rejected,
            ..
        }]
    ));
}

#[test]
fn resend_none_gives_one_attempt() {
    let mut outbox = Outbox::new(exact().resend(Resend::None), 1);
    outbox.handle_connected(at(0));
    outbox.push(msg("a"), at(0)).unwrap();
    transmit_all(&mut outbox, at(0));
    outbox.handle_timeout(at(100));
    assert!(matches!(
        events(&mut outbox)[..],
        [Event::DeadLettered {
            seq: 1,
            attempts: 1,
            reason: DeadLetterReason::AttemptsExhausted,
            ..
        }]
    ));
}

#[test]
fn messages_expire_with_the_policy_ttl_or_their_own() {
    let mut outbox = Outbox::new(exact().ttl(Some(Duration::from_secs(10))), 1);
    outbox.push(msg("a"), at(0)).unwrap();
    outbox
        .push(msg("b").ttl(Duration::from_secs(1)), at(0))
        .unwrap();
    assert_eq!(outbox.poll_timeout(), Some(at(1000)));
    outbox.handle_timeout(at(1000));
    assert!(matches!(
        events(&mut outbox)[..],
        [Event::Expired {
            seq: 2,
            attempts: 0,
            ..
        }]
    ));
    assert_eq!(outbox.poll_timeout(), Some(at(10_000)));
    outbox.handle_timeout(at(10_000));
    assert!(matches!(
        events(&mut outbox)[..],
        [Event::Expired { seq: 1, .. }]
    ));
    assert_eq!(outbox.poll_timeout(), None);
}

#[test]
fn overflow_reject_hands_the_message_back() {
    let mut outbox = Outbox::new(
        exact().capacity(Capacity::new(2, 1 << 20, Overflow::Reject)),
        1,
    );
    outbox.push(msg("a"), at(0)).unwrap();
    outbox.push(msg("b"), at(0)).unwrap();
    assert!(!outbox.has_room(1));
    let Err(PushError::Full(back)) = outbox.push(msg("c"), at(0)) else {
        panic!("expected Full")
    };
    assert_eq!(back.payload(), &Bytes::from_static(b"c"));
    assert_eq!(outbox.len(), 2);
    assert_eq!(events(&mut outbox), []);
    assert!(matches!(
        outbox.push(Message::new(Bytes::from(vec![0; 2 << 20])), at(0)),
        Err(PushError::TooLarge(_))
    ));
}

#[test]
fn overflow_drop_oldest_makes_room() {
    let mut outbox = Outbox::new(
        exact().capacity(Capacity::new(10, 4, Overflow::DropOldest)),
        1,
    );
    outbox.push(msg("aa"), at(0)).unwrap();
    outbox.push(msg("bb"), at(0)).unwrap();
    assert_eq!(outbox.push(msg("ccc"), at(0)).unwrap(), 3);
    let evs = events(&mut outbox);
    assert!(matches!(
        evs[..],
        [
            Event::DeadLettered {
                seq: 1,
                reason: DeadLetterReason::Overflow,
                ..
            },
            Event::DeadLettered {
                seq: 2,
                reason: DeadLetterReason::Overflow,
                ..
            }
        ]
    ));
    assert_eq!((outbox.len(), outbox.bytes()), (1, 3));
}

#[test]
fn overflow_drop_newest_keeps_what_is_queued() {
    let mut outbox = Outbox::new(
        exact().capacity(Capacity::new(1, 100, Overflow::DropNewest)),
        1,
    );
    outbox.push(msg("a"), at(0)).unwrap();
    assert_eq!(outbox.push(msg("b"), at(0)).unwrap(), 2);
    assert!(matches!(
        events(&mut outbox)[..],
        [Event::DeadLettered {
            seq: 2,
            attempts: 0,
            reason: DeadLetterReason::Overflow,
            ..
        }]
    ));
    assert_eq!(outbox.floor(), 1);
}

#[test]
fn latest_per_key_keeps_only_the_newest_value() {
    let mut outbox = Outbox::new(exact().resend(Resend::LatestPerKey).window(8), 1);
    outbox.handle_connected(at(0));
    outbox.push(msg("x1").key(7), at(0)).unwrap();
    outbox.push(msg("y1").key(8), at(0)).unwrap();
    transmit_all(&mut outbox, at(0));
    outbox.push(msg("x2").key(7), at(1)).unwrap();
    assert_eq!(
        events(&mut outbox),
        [Event::Conflated {
            seq: 1,
            replaced_by: 3
        }]
    );
    assert_eq!(outbox.len(), 2);
    assert_eq!(outbox.in_flight(), 1);
    // A late ack for the conflated message is ignored.
    outbox.handle_ack(1, at(2));
    assert_eq!(events(&mut outbox), []);
    assert_eq!(transmit_all(&mut outbox, at(2)), [(3, 1)]);
}

#[test]
fn at_most_once_forgets_on_transmit() {
    let mut outbox = Outbox::new(exact().guarantee(Guarantee::AtMostOnce), 1);
    outbox.handle_connected(at(0));
    outbox.push(msg("a"), at(0)).unwrap();
    outbox.push(msg("b"), at(0)).unwrap();
    assert_eq!(transmit_all(&mut outbox, at(3)), [(1, 1), (2, 1)]);
    assert_eq!(
        events(&mut outbox),
        [
            Event::Sent {
                seq: 1,
                latency: Duration::from_millis(3)
            },
            Event::Sent {
                seq: 2,
                latency: Duration::from_millis(3)
            }
        ]
    );
    assert!(outbox.is_empty());
    assert_eq!(outbox.poll_timeout(), None);
}

#[test]
fn a_reconnect_resends_in_order_and_counts_the_attempt() {
    let mut outbox = Outbox::new(exact().window(3), 1);
    outbox.handle_connected(at(0));
    for text in ["a", "b", "c"] {
        outbox.push(msg(text), at(0)).unwrap();
    }
    transmit_all(&mut outbox, at(0));
    outbox.handle_ack(2, at(1));
    outbox.handle_disconnected(at(2));
    assert_eq!(outbox.in_flight(), 0);
    assert_eq!(transmit_all(&mut outbox, at(3)), []);
    outbox.handle_connected(at(4));
    assert_eq!(transmit_all(&mut outbox, at(4)), [(1, 2), (3, 2)]);
}

#[test]
fn resync_replays_history_then_pending() {
    let policy = exact().window(4).history(Some(Duration::from_secs(60)));
    let mut outbox = Outbox::new(policy, 1);
    outbox.handle_connected(at(0));
    for text in ["a", "b", "c", "d"] {
        outbox.push(msg(text), at(0)).unwrap();
    }
    transmit_all(&mut outbox, at(0));
    outbox.handle_ack_upto(3, at(1));
    outbox.handle_resync(1, at(2));
    let replayed: Vec<_> = std::iter::from_fn(|| outbox.poll_transmit(at(2)))
        .map(|t| match t {
            Transmit::Message(out) => (out.seq, out.attempt, out.floor),
            Transmit::Sequence { .. } => panic!("mailbox mode"),
        })
        .collect();
    assert_eq!(replayed, [(2, 0, 2), (3, 0, 3), (4, 2, 4)]);
    // Past the history window nothing acknowledged is replayed.
    outbox.handle_resync(0, at(70_000));
    assert_eq!(transmit_all(&mut outbox, at(70_000)), [(4, 3)]);
}

#[test]
fn resync_acknowledges_what_the_receiver_has() {
    let mut outbox = Outbox::new(exact().window(2), 1);
    outbox.handle_connected(at(0));
    outbox.push(msg("a"), at(0)).unwrap();
    outbox.push(msg("b"), at(0)).unwrap();
    transmit_all(&mut outbox, at(0));
    outbox.handle_resync(1, at(5));
    assert!(matches!(
        events(&mut outbox)[..],
        [Event::Delivered { seq: 1, .. }]
    ));
    assert_eq!(transmit_all(&mut outbox, at(5)), [(2, 2)]);
}

#[test]
fn restore_rebuilds_pending_state() {
    let policy = exact()
        .window(4)
        .resend(Resend::LatestPerKey)
        .max_attempts(Some(3));
    let mut before = Outbox::new(policy, 1);
    before.handle_connected(at(0));
    before.push(msg("a"), at(0)).unwrap();
    before.push(msg("b").key(5), at(0)).unwrap();
    before
        .push(msg("c").ttl(Duration::from_millis(500)), at(0))
        .unwrap();
    transmit_all(&mut before, at(0));
    before.handle_ack(1, at(1));
    let stored: Vec<_> = before.pending().collect();
    assert_eq!(
        stored
            .iter()
            .map(|s| (s.seq, s.attempts, s.key))
            .collect::<Vec<_>>(),
        [(2, 1, Some(5)), (3, 1, None)]
    );

    let mut after = Outbox::restore(policy, 2, before.next_seq(), stored.clone(), at(600)).unwrap();
    // Message 3 expired while the process was down.
    assert!(matches!(
        events(&mut after)[..],
        [Event::Expired {
            seq: 3,
            attempts: 1,
            ..
        }]
    ));
    after.handle_connected(at(600));
    assert_eq!(transmit_all(&mut after, at(600)), [(2, 2)]);
    // The key survived: a newer value conflates the restored one.
    assert_eq!(after.push(msg("b2").key(5), at(601)).unwrap(), 4);
    assert_eq!(
        events(&mut after),
        [Event::Conflated {
            seq: 2,
            replaced_by: 4
        }]
    );

    let bad = vec![stored[1].clone(), stored[0].clone()];
    assert!(Outbox::restore(policy, 2, 9, bad, at(0)).is_err());
    assert!(Outbox::restore(policy, 2, 3, stored, at(0)).is_err());
}
