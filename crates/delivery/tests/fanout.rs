//! One payload pushed to 10,000 mailboxes is held once: every outbox shares the same bytes.

use bytes::Bytes;
use courier_delivery::{Message, Outbox, Policy, Timestamp, Transmit};

#[test]
fn fan_out_to_ten_thousand_mailboxes_shares_one_copy() {
    let now = Timestamp::ZERO;
    let payload = Bytes::from(vec![7u8; 1024]);
    let mut mailboxes: Vec<Outbox> = (0..10_000u64)
        .map(|i| Outbox::new(Policy::default(), i))
        .collect();
    for outbox in &mut mailboxes {
        outbox.push(Message::new(payload.clone()), now).unwrap();
        outbox.handle_connected(now);
    }
    for outbox in &mut mailboxes {
        let Some(Transmit::Message(out)) = outbox.poll_transmit(now) else {
            panic!("nothing to send")
        };
        // The same allocation, not an equal copy.
        assert_eq!(out.payload.as_ptr(), payload.as_ptr());
        assert_eq!(out.payload.len(), 1024);
    }
    // The stored state shares it too.
    assert!(mailboxes.iter().all(|outbox| {
        outbox
            .pending()
            .all(|s| s.payload.as_ptr() == payload.as_ptr())
    }));
}
