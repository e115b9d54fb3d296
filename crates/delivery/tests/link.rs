//! Link mode: SignalR stateful reconnect (protocol reference, section 7).

use bytes::Bytes;
use courier_delivery::{
    Ack, Event, Inbox, InboxConfig, InboxError, Message, Outbox, Policy, PushError, Received,
    Timestamp, Transmit,
};

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn msg(len: usize) -> Message {
    Message::new(Bytes::from(vec![b'x'; len]))
}

#[test]
fn ids_start_at_one_and_ack_discards_up_to_the_latest() {
    let mut outbox = Outbox::new(Policy::link(1000), 0);
    outbox.handle_connected(at(0));
    let ids: Vec<_> = (0..3)
        .map(|_| outbox.push(msg(10), at(0)).unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    let sent: Vec<_> = std::iter::from_fn(|| outbox.poll_transmit(at(0))).collect();
    assert_eq!(sent.len(), 3);
    outbox.handle_ack_upto(2, at(5));
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox.bytes(), 10);
    // Link mode never retries on a timer and never expires.
    assert_eq!(outbox.poll_timeout(), None);
}

#[test]
fn reattach_sends_sequence_then_replays_the_buffer() {
    let mut outbox = Outbox::new(Policy::link(1000), 0);
    outbox.handle_connected(at(0));
    for _ in 0..3 {
        outbox.push(msg(1), at(0)).unwrap();
    }
    while outbox.poll_transmit(at(0)).is_some() {}
    outbox.handle_ack_upto(1, at(1));
    outbox.handle_disconnected(at(2));
    outbox.push(msg(1), at(3)).unwrap();
    outbox.handle_connected(at(4));
    let frames: Vec<_> = std::iter::from_fn(|| outbox.poll_transmit(at(4)))
        .map(|t| match t {
            Transmit::Sequence { first } => format!("Sequence({first})"),
            Transmit::Message(out) => format!("{}", out.seq),
        })
        .collect();
    assert_eq!(frames, ["Sequence(2)", "2", "3", "4"]);
}

#[test]
fn an_empty_buffer_announces_the_next_id() {
    let mut outbox = Outbox::new(Policy::link(1000), 0);
    outbox.handle_connected(at(0));
    outbox.push(msg(1), at(0)).unwrap();
    outbox.poll_transmit(at(0));
    outbox.handle_ack_upto(1, at(1));
    outbox.handle_disconnected(at(2));
    outbox.handle_connected(at(3));
    assert_eq!(
        outbox.poll_transmit(at(3)),
        Some(Transmit::Sequence { first: 2 })
    );
    assert_eq!(outbox.poll_transmit(at(3)), None);
}

#[test]
fn a_buffer_over_its_bound_tells_the_caller_to_wait() {
    let mut outbox = Outbox::new(Policy::link(100), 0);
    outbox.handle_connected(at(0));
    // Sends wait only once the buffer exceeds its bound: the message that takes it over is accepted.
    outbox.push(msg(60), at(0)).unwrap();
    assert!(outbox.has_room(60));
    outbox.push(msg(60), at(0)).unwrap();
    assert_eq!(outbox.bytes(), 120);
    assert!(!outbox.has_room(1));
    assert!(matches!(
        outbox.push(msg(1), at(0)),
        Err(PushError::Full(_))
    ));
    while outbox.poll_transmit(at(0)).is_some() {}
    // Acking the first brings the buffer back to its bound, which still lets sends proceed.
    outbox.handle_ack_upto(1, at(1));
    assert!(matches!(
        outbox.poll_event(),
        Some(Event::Delivered { seq: 1, .. })
    ));
    assert_eq!(outbox.bytes(), 60);
    assert!(outbox.has_room(60));
    assert_eq!(outbox.push(msg(60), at(1)).unwrap(), 3);
}

#[test]
fn a_message_larger_than_the_buffer_waits_for_it_to_empty_then_goes() {
    let mut outbox = Outbox::new(Policy::link(100), 0);
    outbox.handle_connected(at(0));
    // Alone, a message larger than the whole buffer is accepted and sent.
    assert_eq!(outbox.push(msg(250), at(0)).unwrap(), 1);
    assert!(matches!(
        outbox.poll_transmit(at(0)),
        Some(Transmit::Message(out)) if out.seq == 1 && out.payload.len() == 250
    ));
    // Behind it, everything waits for its ack.
    assert!(!outbox.has_room(1));
    let big = match outbox.push(msg(250), at(0)) {
        Err(PushError::Full(message)) => message,
        other => panic!("expected Full, got {other:?}"),
    };
    outbox.handle_ack_upto(1, at(1));
    assert!(outbox.is_empty());
    assert_eq!(outbox.push(big, at(1)).unwrap(), 2);
}

#[test]
fn receiver_counts_ids_drops_duplicates_and_acks_after_a_second() {
    let mut inbox = Inbox::new(InboxConfig::link());
    for _ in 0..3 {
        assert_eq!(
            inbox.handle_link_message(Bytes::from_static(b"m"), at(0)),
            Ok(Received::Delivered)
        );
    }
    assert_eq!(inbox.poll_ack(), None);
    assert_eq!(inbox.poll_timeout(), Some(at(1000)));
    inbox.handle_timeout(at(1000));
    assert_eq!(inbox.poll_ack(), Some(Ack::UpTo(3)));
    assert_eq!(inbox.poll_ack(), None);

    // The peer lost our ack for 3 and re-attaches from 2.
    inbox.handle_disconnected();
    assert_eq!(
        inbox.handle_link_message(Bytes::from_static(b"early"), at(1001)),
        Ok(Received::Dropped)
    );
    inbox.handle_sequence(2, at(1002)).unwrap();
    assert_eq!(
        inbox.handle_link_message(Bytes::from_static(b"2"), at(1002)),
        Ok(Received::Duplicate)
    );
    assert_eq!(
        inbox.handle_link_message(Bytes::from_static(b"3"), at(1002)),
        Ok(Received::Duplicate)
    );
    assert_eq!(
        inbox.handle_link_message(Bytes::from_static(b"4"), at(1002)),
        Ok(Received::Delivered)
    );
    let ids: Vec<_> = std::iter::from_fn(|| inbox.poll_delivery())
        .map(|d| d.seq)
        .collect();
    assert_eq!(ids, [1, 2, 3, 4]);
}

#[test]
fn a_sequence_ahead_of_what_was_received_is_fatal() {
    let mut inbox = Inbox::new(InboxConfig::link());
    inbox
        .handle_link_message(Bytes::from_static(b"1"), at(0))
        .unwrap();
    inbox.handle_disconnected();
    assert_eq!(
        inbox.handle_sequence(3, at(1)),
        Err(InboxError::SequenceAhead {
            first: 3,
            expected: 2
        })
    );
    assert_eq!(inbox.handle_sequence(2, at(1)), Ok(()));
    assert!(
        inbox
            .handle_message(
                courier_delivery::Incoming {
                    seq: 1,
                    floor: 1,
                    payload: Bytes::new()
                },
                at(0)
            )
            .is_err()
    );
}
