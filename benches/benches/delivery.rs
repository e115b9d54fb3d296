//! The delivery engine (courier-delivery): push → transmit → ack cycles per second for one mailbox and spread over
//! 10,000 mailboxes, a fan-out of one 1 KiB payload to 10,000 mailboxes, and the memory held per pending message.
//!
//! Run: `cargo bench -p courier-benches --bench delivery`. The memory figures are printed first (to stderr); they
//! come from a global allocator that tracks live heap bytes, so they include collection growth slack.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering as AtomicOrdering};
use std::time::Duration;

use bytes::Bytes;
use courier_delivery::{Event, Message, Ordering, Outbox, Policy, Timestamp, Transmit};
use criterion::{BatchSize, Criterion, Throughput, criterion_group};

/// Live heap bytes of the whole process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, keeping `LIVE` up to date.
struct LiveBytes;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and only adds bookkeeping.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size().cast_signed(), AtomicOrdering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size().cast_signed(), AtomicOrdering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size.cast_signed() - layout.size().cast_signed(),
            AtomicOrdering::Relaxed,
        );
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LiveBytes = LiveBytes;

fn live() -> isize {
    LIVE.load(AtomicOrdering::Relaxed)
}

const MAILBOXES: usize = 10_000;

/// A policy that lets the cycle run without limits getting in the way: unordered, a wide window.
fn policy() -> Policy {
    Policy::default().ordering(Ordering::Unordered).window(64)
}

/// One push → transmit → ack → event cycle on `outbox` at time `now`.
fn cycle(outbox: &mut Outbox, payload: &Bytes, now: Timestamp) {
    let seq = outbox
        .push(Message::new(payload.clone()), now)
        .expect("room");
    let Some(Transmit::Message(out)) = outbox.poll_transmit(now) else {
        panic!("nothing to send")
    };
    debug_assert_eq!(out.seq, seq);
    outbox.handle_ack(black_box(out.seq), now);
    let event = outbox.poll_event();
    debug_assert!(matches!(event, Some(Event::Delivered { .. })));
    black_box(event);
}

fn cycles(c: &mut Criterion) {
    let payload = Bytes::from(vec![0u8; 64]);
    let mut group = c.benchmark_group("delivery/cycle");
    group.throughput(Throughput::Elements(1));

    let mut outbox = Outbox::new(policy(), 1);
    outbox.handle_connected(Timestamp::ZERO);
    let mut now = 0;
    group.bench_function("one mailbox", |b| {
        b.iter(|| {
            now += 1;
            cycle(&mut outbox, &payload, Timestamp::from_millis(now));
        });
    });

    let mut mailboxes: Vec<Outbox> = (0..MAILBOXES as u64)
        .map(|i| Outbox::new(policy(), i))
        .collect();
    for outbox in &mut mailboxes {
        outbox.handle_connected(Timestamp::ZERO);
    }
    let mut next = 0;
    group.bench_function("10,000 mailboxes", |b| {
        b.iter(|| {
            now += 1;
            next = (next + 1) % MAILBOXES;
            cycle(&mut mailboxes[next], &payload, Timestamp::from_millis(now));
        });
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let payload = Bytes::from(vec![0u8; 1024]);
    let mut group = c.benchmark_group("delivery/fan-out");
    group.throughput(Throughput::Elements(MAILBOXES as u64));
    group.bench_function("1 KiB to 10,000 mailboxes", |b| {
        b.iter_batched_ref(
            || {
                let mut mailboxes: Vec<Outbox> = (0..MAILBOXES as u64)
                    .map(|i| Outbox::new(policy(), i))
                    .collect();
                for outbox in &mut mailboxes {
                    outbox.handle_connected(Timestamp::ZERO);
                }
                mailboxes
            },
            |mailboxes| {
                for outbox in mailboxes.iter_mut() {
                    outbox
                        .push(Message::new(payload.clone()), Timestamp::ZERO)
                        .expect("room");
                    black_box(outbox.poll_transmit(Timestamp::ZERO));
                }
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

/// Heap bytes per pending message held by one outbox with `count` pending messages, payload excluded (the
/// payload is a static slice, which `Bytes` does not copy).
#[allow(clippy::cast_precision_loss)] // Byte counts far below 2^52.
fn bytes_per_pending(count: usize) -> f64 {
    let payload = Bytes::from_static(&[0u8; 64]);
    let policy = Policy::default().capacity(courier_delivery::Capacity::new(
        count,
        usize::MAX,
        courier_delivery::Overflow::Reject,
    ));
    let before = live();
    let mut outbox = Outbox::new(policy, 1);
    for _ in 0..count {
        outbox
            .push(Message::new(payload.clone()), Timestamp::ZERO)
            .expect("room");
    }
    let held = live() - before;
    black_box(&outbox);
    drop(outbox);
    held as f64 / count as f64
}

/// Heap bytes held by `MAILBOXES` outboxes with one pending message each, beyond the shared payload.
fn fan_out_bytes() -> (isize, isize) {
    let payload = Bytes::from(vec![0u8; 1024]);
    let before = live();
    let mut mailboxes: Vec<Outbox> = (0..MAILBOXES as u64)
        .map(|i| Outbox::new(policy(), i))
        .collect();
    let empty = live() - before;
    for outbox in &mut mailboxes {
        outbox
            .push(Message::new(payload.clone()), Timestamp::ZERO)
            .expect("room");
    }
    let full = live() - before;
    black_box(&mailboxes);
    (empty, full)
}

#[allow(clippy::cast_precision_loss)]
fn memory_report() {
    eprintln!("== delivery memory (heap bytes, payload excluded)");
    eprintln!("size_of::<Outbox>() = {} bytes", size_of::<Outbox>());
    for count in [1_000, 10_000, 16_384, 100_000] {
        eprintln!(
            "pending messages in one outbox: {count:>7}: {:.1} bytes each",
            bytes_per_pending(count)
        );
    }
    let (empty, full) = fan_out_bytes();
    eprintln!(
        "fan-out of one 1 KiB payload to {MAILBOXES} outboxes: outboxes {} KiB, after the push {} KiB \
         ({:.1} bytes per mailbox for the message; the payload is held once)",
        empty / 1024,
        full / 1024,
        (full - empty) as f64 / MAILBOXES as f64,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = cycles, fan_out
}

fn main() {
    memory_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
