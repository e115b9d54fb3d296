//! Runs the fuzz targets' checks (fuzz/checks.rs) on the committed seed corpus (fuzz/corpus),
//! so the properties the fuzzers look for are also checked on every test run.

include!("../../../fuzz/checks.rs");

fn run_corpus(target: &str, check: fn(&[u8])) {
    let dir = format!("{}/../../fuzz/corpus/{target}", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {dir}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seed files in {dir}");
    for file in files {
        let data =
            std::fs::read(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target} check failed on {}",
            file.display()
        );
    }
}

#[test]
fn json_seed_corpus_passes_the_fuzz_checks() {
    run_corpus("json", check_json);
}

#[test]
fn msgpack_seed_corpus_passes_the_fuzz_checks() {
    run_corpus("msgpack", check_msgpack);
}

#[test]
fn handshake_seed_corpus_passes_the_fuzz_checks() {
    run_corpus("handshake", check_handshake);
}
