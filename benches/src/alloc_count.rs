//! Counting heap allocations, for benchmarks and tests that promise an allocation budget.
//!
//! A binary installs [`CountingAllocator`] as its global allocator, then wraps the code it
//! measures in [`count_allocations`]:
//!
//! ```
//! use courier_benches::alloc_count::{CountingAllocator, count_allocations};
//!
//! #[global_allocator]
//! static ALLOCATOR: CountingAllocator = CountingAllocator;
//!
//! fn main() {
//!     let (numbers, allocations) = count_allocations(|| vec![1, 2, 3]);
//!     assert_eq!((numbers.len(), allocations), (3, 1));
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Allocations made by this thread so far. Per thread, so that tests running in parallel
    /// (or criterion's own threads) do not disturb a count.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting every allocation and reallocation of the calling thread.
///
/// A reallocation counts as one allocation: it may move the block, and growing a buffer in
/// steps is exactly the cost a count should reveal. Deallocations are not counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

fn record_allocation() {
    // `try_with` fails only while the thread's locals are being destroyed; those allocations
    // happen after any measurement and are not counted.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting
// touches only a const-initialised thread local, which never allocates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record_allocation();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record_allocation();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record_allocation();
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns its result with the number of heap allocations (and reallocations) it
/// made on this thread. The result is dropped by the caller, outside the count.
///
/// Counts are only meaningful when [`CountingAllocator`] is the global allocator; otherwise
/// the count is always 0.
pub fn count_allocations<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    let after = ALLOCATIONS.with(Cell::get);
    (result, after - before)
}
