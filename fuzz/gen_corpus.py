#!/usr/bin/env python3
"""Writes the seed corpus (corpus/<target>/<vector name>) from the shared protocol vectors.

Run from anywhere: python3 fuzz/gen_corpus.py. The output is committed; rerun when the vectors change.
"""
import json
import pathlib

FUZZ = pathlib.Path(__file__).resolve().parent
VECTORS = FUZZ.parent.parent / "shared" / "protocol" / "vectors"


def load(name):
    return json.loads((VECTORS / name).read_text())


def main():
    corpus = {"json": {}, "msgpack": {}, "handshake": {}}
    for entry in load("json.json"):
        corpus["json"][entry["name"]] = bytes.fromhex(entry["encoded_hex"])
    for entry in load("msgpack.json"):
        corpus["msgpack"][entry["name"]] = bytes.fromhex(entry["encoded_hex"])
    for entry in load("handshake.json"):
        corpus["handshake"][entry["name"]] = bytes.fromhex(entry["encoded_hex"])
    for entry in load("negotiate.json"):
        corpus["handshake"]["Negotiate_" + entry["name"]] = entry["body_text"].encode()
    targets = {"json": "json", "msgpack": "msgpack", "framing": "msgpack",
               "handshake-request": "handshake", "handshake-response": "handshake",
               "negotiate-response": "handshake"}
    for entry in load("invalid.json"):
        data = bytes.fromhex(entry["encoded_hex"])
        if data:
            corpus[targets[entry["protocol"]]]["Invalid_" + entry["name"]] = data
    for target, files in corpus.items():
        directory = FUZZ / "corpus" / target
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.iterdir():
            old.unlink()
        for name, data in files.items():
            (directory / name).write_bytes(data)
        print(f"{target}: {len(files)} files")


if __name__ == "__main__":
    main()
