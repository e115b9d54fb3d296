//! The codec benchmark: courier-protocol against the official JavaScript codecs, on the same
//! messages, in the same run (docs/benchmarks.md, section "Codec").
//!
//! 1. Counts the heap allocations of one decode and one encode of every message of the mix.
//! 2. Measures with criterion, per protocol and message: decode (framed bytes to a full
//!    [`HubMessage`]) and encode (a `HubMessage` into a framed buffer taken from a
//!    [`MessageWriter`], as a connection sends it).
//! 3. Runs `node benches/js/codec.mjs` on the same framed bytes, checks that the JavaScript
//!    codec wrote back the same messages, and prints the table of both with their ratio.
//!
//! Run it with `scripts/bench-codec` (installs the JavaScript codecs with `npm ci` first).
//! Without `benches/js/node_modules` the JavaScript half is skipped, loudly.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use courier_benches::alloc_count::{CountingAllocator, count_allocations};
use courier_benches::codec_mix::{MixMessage, mix};
use courier_protocol::{MessageWriter, Protocol};
use criterion::{Criterion, Throughput};
use serde::Deserialize;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const WARM_UP: Duration = Duration::from_secs(1);
const MEASUREMENT: Duration = Duration::from_secs(2);
const PROTOCOLS: [Protocol; 2] = [Protocol::Json, Protocol::MessagePack];
const DIRECTIONS: [&str; 2] = ["decode", "encode"];
/// The goal of the issue: Rust handles at least this many times the messages per second of the
/// official JavaScript codec.
const GOAL_RATIO: f64 = 10.0;

/// One measured cell: nanoseconds per message and the framed size of that message.
#[derive(Debug, Clone, Copy)]
struct Figure {
    ns_per_message: f64,
    bytes: usize,
}

impl Figure {
    fn messages_per_second(self) -> f64 {
        1e9 / self.ns_per_message
    }

    #[allow(
        clippy::cast_precision_loss,
        reason = "message sizes are far below 2^52"
    )]
    fn megabytes_per_second(self) -> f64 {
        self.messages_per_second() * self.bytes as f64 / 1e6
    }
}

/// (protocol name, direction, message name).
type Key = (&'static str, &'static str, &'static str);

fn main() {
    let started = SystemTime::now();
    let output_dir = criterion_output_dir();
    let mixes: Vec<(Protocol, Vec<MixMessage>)> = PROTOCOLS
        .into_iter()
        .map(|p| (p, mix(p).expect("the mix encodes")))
        .collect();

    let allocations = count_mix_allocations(&mixes);

    let mut criterion = Criterion::default()
        .warm_up_time(WARM_UP)
        .measurement_time(MEASUREMENT)
        .output_directory(&output_dir)
        .configure_from_args();
    for (protocol, messages) in &mixes {
        bench_decode(&mut criterion, *protocol, messages);
        bench_encode(&mut criterion, *protocol, messages);
    }
    criterion.final_summary();

    let rust = read_criterion_figures(&output_dir, &mixes, started);
    let js = run_js(&output_dir, &mixes);
    println!("{}", table(&mixes, &rust, js.as_ref(), &allocations));
}

fn bench_decode(criterion: &mut Criterion, protocol: Protocol, messages: &[MixMessage]) {
    let mut group = criterion.benchmark_group(group_name(protocol, "decode"));
    for sample in messages {
        assert_eq!(
            protocol
                .decode_message(&sample.framed)
                .expect("the mix decodes")
                .as_ref(),
            Some(&sample.message),
            "{protocol} {} does not round-trip",
            sample.name
        );
        group.throughput(Throughput::Bytes(sample.framed.len() as u64));
        group.bench_function(sample.name, |b| {
            b.iter(|| protocol.decode_message(black_box(&sample.framed)));
        });
    }
    group.finish();
}

fn bench_encode(criterion: &mut Criterion, protocol: Protocol, messages: &[MixMessage]) {
    let mut group = criterion.benchmark_group(group_name(protocol, "encode"));
    for sample in messages {
        let mut writer = MessageWriter::new(protocol);
        group.throughput(Throughput::Bytes(sample.framed.len() as u64));
        group.bench_function(sample.name, |b| {
            b.iter(|| {
                writer
                    .write(black_box(&sample.message))
                    .expect("the mix encodes");
                writer.take()
            });
        });
    }
    group.finish();
}

fn group_name(protocol: Protocol, direction: &str) -> String {
    format!("codec-{protocol}-{direction}")
}

/// Allocations of one decode and one encode per message, counted after a first run of each so
/// that one-time costs (a writer's first buffer) are not charged to every message.
fn count_mix_allocations(mixes: &[(Protocol, Vec<MixMessage>)]) -> BTreeMap<Key, u64> {
    let mut counts = BTreeMap::new();
    for (protocol, messages) in mixes {
        for sample in messages {
            let decode = || {
                protocol
                    .decode_message(&sample.framed)
                    .expect("the mix decodes")
            };
            drop(decode());
            let (message, decode_count) = count_allocations(decode);
            drop(message);

            let mut writer = MessageWriter::new(*protocol);
            let mut encode = || {
                writer.write(&sample.message).expect("the mix encodes");
                writer.take()
            };
            drop(encode());
            let (bytes, encode_count) = count_allocations(encode);
            drop(bytes);

            counts.insert((protocol.name(), "decode", sample.name), decode_count);
            counts.insert((protocol.name(), "encode", sample.name), encode_count);
        }
    }
    counts
}

/// Where criterion writes its results: `<target dir>/criterion`, the benchmark executable
/// being `<target dir>/<profile>/deps/codec-<hash>`.
fn criterion_output_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the benchmark knows its path");
    let target_dir = exe
        .ancestors()
        .nth(3)
        .expect("the benchmark runs from <target>/<profile>/deps");
    target_dir.join("criterion")
}

#[derive(Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

/// The median time per message of every benchmark that ran in this process (older results,
/// left by a run with a filter, are ignored).
fn read_criterion_figures(
    output_dir: &Path,
    mixes: &[(Protocol, Vec<MixMessage>)],
    started: SystemTime,
) -> BTreeMap<Key, Figure> {
    let mut figures = BTreeMap::new();
    for (protocol, messages) in mixes {
        for direction in DIRECTIONS {
            for sample in messages {
                let path = output_dir
                    .join(group_name(*protocol, direction))
                    .join(sample.name)
                    .join("new/estimates.json");
                let fresh = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|time| time >= started);
                if !fresh {
                    continue;
                }
                let text =
                    std::fs::read_to_string(&path).expect("criterion's estimates are readable");
                let estimates: Estimates =
                    serde_json::from_str(&text).expect("criterion's estimates parse");
                figures.insert(
                    (protocol.name(), direction, sample.name),
                    Figure {
                        ns_per_message: estimates.median.point_estimate,
                        bytes: sample.framed.len(),
                    },
                );
            }
        }
    }
    figures
}

#[derive(Deserialize)]
struct JsReport {
    node: String,
    results: Vec<JsResult>,
}

#[derive(Deserialize)]
struct JsResult {
    protocol: String,
    message: String,
    direction: String,
    ns_per_message: f64,
    bytes: usize,
    encoded_hex: Option<String>,
}

/// Figures of the JavaScript codecs, with the Node.js version; `None` if they cannot run here.
struct JsFigures {
    node: String,
    figures: BTreeMap<Key, Figure>,
}

/// Runs `benches/js/codec.mjs` on the framed bytes of the mix and checks that what the
/// JavaScript codec encodes decodes, in Rust, to the very same messages.
fn run_js(output_dir: &Path, mixes: &[(Protocol, Vec<MixMessage>)]) -> Option<JsFigures> {
    let js_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    if !js_dir.join("node_modules").is_dir() {
        println!(
            "\nSKIPPED the JavaScript codecs: {} is missing (run `npm ci` there, or scripts/bench-codec).",
            js_dir.join("node_modules").display()
        );
        return None;
    }
    let cases: Vec<_> = mixes
        .iter()
        .flat_map(|(protocol, messages)| {
            messages.iter().map(|sample| {
                serde_json::json!({
                    "protocol": protocol.name(),
                    "message": sample.name,
                    "framed_hex": to_hex(&sample.framed),
                })
            })
        })
        .collect();
    let spec = serde_json::json!({
        "warm_up_ms": WARM_UP.as_millis(),
        "measurement_ms": MEASUREMENT.as_millis(),
        "cases": cases,
    });
    std::fs::create_dir_all(output_dir).expect("the criterion directory can be created");
    let cases_path = output_dir.join("codec-js-cases.json");
    std::fs::write(&cases_path, spec.to_string()).expect("the JavaScript cases can be written");

    println!(
        "\nRunning the official JavaScript codecs (node benches/js/codec.mjs) on the same messages..."
    );
    let output = Command::new("node")
        .arg(js_dir.join("codec.mjs"))
        .arg(&cases_path)
        .output()
        .expect("node runs (Node.js 20 or later is needed)");
    assert!(
        output.status.success(),
        "codec.mjs failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: JsReport =
        serde_json::from_slice(&output.stdout).expect("codec.mjs prints its report as JSON");

    let mut figures = BTreeMap::new();
    for (protocol, messages) in mixes {
        for sample in messages {
            for direction in DIRECTIONS {
                let result = report
                    .results
                    .iter()
                    .find(|r| {
                        r.protocol == protocol.name()
                            && r.message == sample.name
                            && r.direction == direction
                    })
                    .expect("codec.mjs measured every case");
                if let Some(hex) = &result.encoded_hex {
                    let decoded = protocol
                        .decode_message(&Bytes::from(from_hex(hex)))
                        .expect("JS output decodes");
                    assert_eq!(
                        decoded.as_ref(),
                        Some(&sample.message),
                        "the JavaScript codec wrote a different {protocol} {} message",
                        sample.name
                    );
                }
                figures.insert(
                    (protocol.name(), direction, sample.name),
                    Figure {
                        ns_per_message: result.ns_per_message,
                        bytes: result.bytes,
                    },
                );
            }
        }
    }
    Some(JsFigures {
        node: report.node,
        figures,
    })
}

/// The comparison as a Markdown table, ready for docs/benchmarks.md.
fn table(
    mixes: &[(Protocol, Vec<MixMessage>)],
    rust: &BTreeMap<Key, Figure>,
    js: Option<&JsFigures>,
    allocations: &BTreeMap<Key, u64>,
) -> String {
    let mut out = String::new();
    let node = js.map_or("not run", |js| js.node.as_str());
    let _ = writeln!(
        out,
        "\nCodec: courier-protocol vs the official JavaScript codecs (Node.js {node}), median per message\n"
    );
    let _ = writeln!(
        out,
        "| protocol | direction | message | bytes (Rust / JS) | Rust msg/s | Rust MB/s | JS msg/s | JS MB/s | Rust ÷ JS | allocations (Rust) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---:|---:|---:|---:|---:|---:|");
    let mut short_of_goal = Vec::new();
    for (protocol, messages) in mixes {
        for direction in DIRECTIONS {
            for sample in messages {
                let key = (protocol.name(), direction, sample.name);
                let Some(r) = rust.get(&key).copied() else {
                    continue;
                };
                let j = js.and_then(|js| js.figures.get(&key)).copied();
                let ratio = j.map(|j| j.ns_per_message / r.ns_per_message);
                if ratio.is_some_and(|ratio| ratio < GOAL_RATIO) {
                    short_of_goal.push(format!("{} {} {}", key.0, key.1, key.2));
                }
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} / {} | {} | {:.0} | {} | {} | {} | {} |",
                    key.0,
                    key.1,
                    key.2,
                    r.bytes,
                    j.map_or("-".into(), |j| j.bytes.to_string()),
                    thousands(r.messages_per_second()),
                    r.megabytes_per_second(),
                    j.map_or("-".into(), |j| thousands(j.messages_per_second())),
                    j.map_or("-".into(), |j| format!("{:.0}", j.megabytes_per_second())),
                    ratio.map_or("-".into(), |ratio| format!("{ratio:.1}×")),
                    allocations[&key],
                );
            }
        }
    }
    if js.is_some() {
        if short_of_goal.is_empty() {
            let _ = writeln!(
                out,
                "\nGoal (Rust ≥ {GOAL_RATIO}× JS messages/s): met on every measured row."
            );
        } else {
            let _ = writeln!(
                out,
                "\nGoal (Rust ≥ {GOAL_RATIO}× JS messages/s): NOT met for {}.",
                short_of_goal.join(", ")
            );
        }
    }
    out
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{value:.0}");
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn to_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("codec.mjs writes hex"))
        .collect()
}
