//! Shared helpers for the benchmarks in `benches/benches/` and the tests in `benches/tests/`.

pub mod alloc_count;
pub mod codec_mix;
