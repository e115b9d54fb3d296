//! The allocation budget of the codec: decoding a small invocation costs at most 2 heap
//! allocations, in both protocols (docs/benchmarks.md reports the count of every message).

use courier_benches::alloc_count::{CountingAllocator, count_allocations};
use courier_benches::codec_mix::mix;
use courier_protocol::Protocol;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The budget promised for decoding a small invocation.
const SMALL_INVOCATION_BUDGET: u64 = 2;

#[test]
fn the_allocator_counts() {
    let (boxed, count) = count_allocations(|| Box::new(std::hint::black_box(7_u64)));
    assert_eq!((*boxed, count), (7, 1));
}

#[test]
fn decoding_a_small_invocation_allocates_at_most_twice() {
    for protocol in [Protocol::Json, Protocol::MessagePack] {
        let messages = mix(protocol).unwrap();
        let small = messages
            .iter()
            .find(|m| m.name == "small_invocation")
            .unwrap();
        let decode = || protocol.decode_message(&small.framed).unwrap();
        // The first decode may pay one-time costs (sharing the framed buffer); a connection
        // decodes many messages, so the steady state is what counts.
        assert_eq!(decode().as_ref(), Some(&small.message));
        let (message, allocations) = count_allocations(decode);
        assert_eq!(message.as_ref(), Some(&small.message));
        assert!(
            allocations <= SMALL_INVOCATION_BUDGET,
            "{protocol}: decoding a small invocation allocated {allocations} times (budget {SMALL_INVOCATION_BUDGET})"
        );
    }
}
