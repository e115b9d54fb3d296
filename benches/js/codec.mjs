// The official SignalR JavaScript codecs, measured on the messages the Rust codec benchmark wrote.
//
// Usage: node benches/js/codec.mjs <cases.json>
// (benches/benches/codec.rs writes <cases.json> and runs this script; see docs/benchmarks.md).
//
// <cases.json>: {"warm_up_ms": n, "measurement_ms": n, "cases": [{"protocol": "json" | "messagepack",
// "message": name, "framed_hex": the framed bytes of exactly one message}]}.
//
// Per case it measures what the official client does per message:
// - decode: `protocol.parseMessages(input, logger)` on the framed bytes, given as the transport hands
//   them over: a string for JSON (WebSocket text frame), an ArrayBuffer for MessagePack (binary frame);
// - encode: `protocol.writeMessage(message)` on the message object that decode produced.
//
// Prints one JSON object on stdout: {"node": version, "results": [{"protocol", "message", "direction",
// "ns_per_message", "bytes", "encoded_hex"}]}, where `bytes` is the size of the framed input (decode) or of
// writeMessage's output (encode), and `encoded_hex` is writeMessage's output, so the caller can check that
// both sides handled the same message.

import { readFileSync } from "node:fs";
import { JsonHubProtocol, NullLogger } from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

const SAMPLE_COUNT = 30;

const protocols = {
    json: {
        codec: new JsonHubProtocol(),
        // What the WebSocket transport passes to the client for a text frame.
        input: (bytes) => new TextDecoder().decode(bytes),
        output: (written) => Buffer.from(written, "utf8"),
    },
    messagepack: {
        codec: new MessagePackHubProtocol(),
        // What the WebSocket transport passes for a binary frame: an ArrayBuffer of exactly the frame.
        input: (bytes) => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
        output: (written) => Buffer.from(written),
    },
};

// Keeps every result observable so the JIT cannot drop the work.
let sink = 0;

function runFor(ms, op) {
    const end = process.hrtime.bigint() + BigInt(ms) * 1_000_000n;
    let iterations = 0;
    while (process.hrtime.bigint() < end) {
        for (let i = 0; i < 100; i++) {
            sink += op();
        }
        iterations += 100;
    }
    return iterations;
}

// Median nanoseconds per call over SAMPLE_COUNT samples, after a warm-up (criterion's method, simplified).
function measure(op, warmUpMs, measurementMs) {
    const warmUpIterations = runFor(warmUpMs, op);
    const perSample = Math.max(1, Math.round((warmUpIterations / warmUpMs) * (measurementMs / SAMPLE_COUNT)));
    const samples = [];
    for (let s = 0; s < SAMPLE_COUNT; s++) {
        const start = process.hrtime.bigint();
        for (let i = 0; i < perSample; i++) {
            sink += op();
        }
        samples.push(Number(process.hrtime.bigint() - start) / perSample);
    }
    samples.sort((a, b) => a - b);
    return samples[Math.floor(SAMPLE_COUNT / 2)];
}

function main() {
    const path = process.argv[2];
    if (!path) {
        throw new Error("usage: node codec.mjs <cases.json>");
    }
    const spec = JSON.parse(readFileSync(path, "utf8"));
    const logger = NullLogger.instance;
    const results = [];

    for (const testCase of spec.cases) {
        const protocol = protocols[testCase.protocol];
        if (!protocol) {
            throw new Error(`unknown protocol ${testCase.protocol}`);
        }
        const framed = new Uint8Array(Buffer.from(testCase.framed_hex, "hex"));
        const input = protocol.input(framed);

        const decoded = protocol.codec.parseMessages(input, logger);
        if (decoded.length !== 1) {
            throw new Error(`${testCase.protocol}/${testCase.message}: expected one message, got ${decoded.length}`);
        }
        const message = decoded[0];
        const written = protocol.output(protocol.codec.writeMessage(message));

        const decodeNs = measure(() => protocol.codec.parseMessages(input, logger).length, spec.warm_up_ms, spec.measurement_ms);
        results.push({
            protocol: testCase.protocol,
            message: testCase.message,
            direction: "decode",
            ns_per_message: decodeNs,
            bytes: framed.byteLength,
        });

        // writeMessage returns a string (JSON) or an ArrayBuffer (MessagePack); both have a length.
        const encodeNs = measure(() => {
            const out = protocol.codec.writeMessage(message);
            return out.length ?? out.byteLength;
        }, spec.warm_up_ms, spec.measurement_ms);
        results.push({
            protocol: testCase.protocol,
            message: testCase.message,
            direction: "encode",
            ns_per_message: encodeNs,
            bytes: written.byteLength,
            encoded_hex: written.toString("hex"),
        });
    }

    if (sink === 0) {
        throw new Error("no work was measured");
    }
    process.stdout.write(JSON.stringify({ node: process.version, results }) + "\n");
}

main();
