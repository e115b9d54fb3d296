//! Scenario tests of the inbox in mailbox mode.

use std::time::Duration;

use bytes::Bytes;
use courier_delivery::{
    Ack, Inbox, InboxConfig, InboxError, Incoming, Ordering, Received, Timestamp,
};

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn incoming(seq: u64, floor: u64) -> Incoming {
    Incoming {
        seq,
        floor,
        payload: Bytes::from(seq.to_string()),
    }
}

fn delivered(inbox: &mut Inbox) -> Vec<u64> {
    std::iter::from_fn(|| inbox.poll_delivery())
        .map(|d| d.seq)
        .collect()
}

fn acks(inbox: &mut Inbox) -> Vec<Ack> {
    std::iter::from_fn(|| inbox.poll_ack()).collect()
}

fn immediate(ordering: Ordering) -> InboxConfig {
    InboxConfig::default()
        .ordering(ordering)
        .ack_delay(Duration::ZERO)
}

#[test]
fn strict_holds_early_arrivals_until_the_gap_closes() {
    let mut inbox = Inbox::new(immediate(Ordering::Strict));
    assert_eq!(
        inbox.handle_message(incoming(2, 1), at(0)),
        Ok(Received::Held)
    );
    assert_eq!(
        inbox.handle_message(incoming(3, 1), at(0)),
        Ok(Received::Held)
    );
    assert_eq!(delivered(&mut inbox), Vec::<u64>::new());
    assert_eq!(acks(&mut inbox), []);
    assert_eq!(
        inbox.handle_message(incoming(1, 1), at(1)),
        Ok(Received::Delivered)
    );
    assert_eq!(delivered(&mut inbox), [1, 2, 3]);
    assert_eq!(acks(&mut inbox), [Ack::UpTo(3)]);
}

#[test]
fn duplicates_are_dropped_and_acknowledged_again() {
    let mut inbox = Inbox::new(immediate(Ordering::Strict));
    inbox.handle_message(incoming(1, 1), at(0)).unwrap();
    acks(&mut inbox);
    assert_eq!(
        inbox.handle_message(incoming(1, 1), at(1)),
        Ok(Received::Duplicate)
    );
    assert_eq!(delivered(&mut inbox), [1]);
    assert_eq!(acks(&mut inbox), [Ack::UpTo(1)]);
}

#[test]
fn the_floor_skips_messages_the_sender_gave_up() {
    let mut inbox = Inbox::new(immediate(Ordering::Strict));
    inbox.handle_message(incoming(1, 1), at(0)).unwrap();
    inbox.handle_message(incoming(4, 1), at(0)).unwrap();
    // 2 and 3 expired at the sender: a later message says so.
    assert_eq!(
        inbox.handle_message(incoming(5, 4), at(1)),
        Ok(Received::Delivered)
    );
    assert_eq!(delivered(&mut inbox), [1, 4, 5]);
    // A stale copy of 2 arriving late is not delivered after the sender reported it expired.
    assert_eq!(
        inbox.handle_message(incoming(2, 1), at(2)),
        Ok(Received::Duplicate)
    );
    assert_eq!(delivered(&mut inbox), Vec::<u64>::new());
}

#[test]
fn unordered_delivers_on_arrival_and_drops_duplicates() {
    let mut inbox = Inbox::new(immediate(Ordering::Unordered));
    inbox.handle_message(incoming(3, 1), at(0)).unwrap();
    inbox.handle_message(incoming(2, 1), at(0)).unwrap();
    assert_eq!(
        inbox.handle_message(incoming(3, 1), at(0)),
        Ok(Received::Duplicate)
    );
    assert_eq!(delivered(&mut inbox), [3, 2]);
    let mut got = acks(&mut inbox);
    got.sort_by_key(|ack| format!("{ack:?}"));
    assert_eq!(got, [Ack::Single(2), Ack::Single(3)]);
    inbox.handle_message(incoming(1, 1), at(1)).unwrap();
    assert_eq!(acks(&mut inbox), [Ack::UpTo(3)]);
    assert_eq!(inbox.held(), 0);
}

#[test]
fn a_full_window_drops_arrivals_unacknowledged() {
    let mut inbox = Inbox::new(immediate(Ordering::Strict).window(2));
    inbox.handle_message(incoming(3, 1), at(0)).unwrap();
    inbox.handle_message(incoming(5, 1), at(0)).unwrap();
    assert_eq!(
        inbox.handle_message(incoming(6, 1), at(0)),
        Ok(Received::Dropped)
    );
    // A lower arrival takes the place of the highest held one.
    assert_eq!(
        inbox.handle_message(incoming(2, 1), at(0)),
        Ok(Received::Held)
    );
    assert_eq!(inbox.held(), 2);
    // The next in line is always accepted.
    inbox.handle_message(incoming(1, 1), at(0)).unwrap();
    assert_eq!(delivered(&mut inbox), [1, 2, 3]);

    let mut unordered = Inbox::new(immediate(Ordering::Unordered).window(1));
    unordered.handle_message(incoming(2, 1), at(0)).unwrap();
    assert_eq!(
        unordered.handle_message(incoming(3, 1), at(0)),
        Ok(Received::Dropped)
    );
    assert_eq!(
        unordered.handle_message(incoming(1, 1), at(0)),
        Ok(Received::Delivered)
    );
    assert_eq!(unordered.watermark(), 2);
}

#[test]
fn acks_are_coalesced_by_delay_and_count() {
    let config = InboxConfig::default()
        .ack_delay(Duration::from_millis(10))
        .ack_every(3);
    let mut inbox = Inbox::new(config);
    inbox.handle_message(incoming(1, 1), at(0)).unwrap();
    inbox.handle_message(incoming(2, 1), at(2)).unwrap();
    assert_eq!(acks(&mut inbox), []);
    assert_eq!(inbox.poll_timeout(), Some(at(10)));
    inbox.handle_timeout(at(10));
    assert_eq!(acks(&mut inbox), [Ack::UpTo(2)]);
    assert_eq!(inbox.poll_timeout(), None);
    for seq in 3..=5 {
        inbox.handle_message(incoming(seq, 1), at(11)).unwrap();
    }
    assert_eq!(acks(&mut inbox), [Ack::UpTo(5)]);
}

#[test]
fn bad_sequence_numbers_are_errors() {
    let mut inbox = Inbox::new(InboxConfig::default());
    assert_eq!(
        inbox.handle_message(incoming(0, 0), at(0)),
        Err(InboxError::InvalidSequence { seq: 0, floor: 0 })
    );
    assert_eq!(
        inbox.handle_message(incoming(3, 4), at(0)),
        Err(InboxError::InvalidSequence { seq: 3, floor: 4 })
    );
    assert_eq!(inbox.handle_sequence(1, at(0)), Err(InboxError::WrongMode));
    assert_eq!(
        inbox.handle_link_message(Bytes::new(), at(0)),
        Err(InboxError::WrongMode)
    );
}

#[test]
fn resume_after_treats_earlier_numbers_as_had() {
    let mut inbox = Inbox::resume_after(immediate(Ordering::Strict), 10);
    assert_eq!(
        inbox.handle_message(incoming(10, 10), at(0)),
        Ok(Received::Duplicate)
    );
    assert_eq!(
        inbox.handle_message(incoming(11, 10), at(0)),
        Ok(Received::Delivered)
    );
}
