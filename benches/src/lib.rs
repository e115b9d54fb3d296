//! Shared helpers for the benchmarks in `benches/benches/` and the tests in `benches/tests/`.

pub mod alloc_count;
pub mod codec_mix;

/// The 1, 5 and 15 minute load averages, from `/proc/loadavg` (`unknown` elsewhere): printed beside every
/// end-to-end figure, since the machines are shared.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}
