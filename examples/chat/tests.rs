//! The scene, played as `cargo run --example chat` plays it, checked line by line.

use std::path::PathBuf;
use std::time::Duration;

use crate::server::Server;
use crate::transcript::Transcript;
use crate::{TIMEOUT, data_dir, play};

/// Plays the scene in `data` and returns its lines.
async fn scene(data: &std::path::Path) -> Vec<String> {
    let transcript = Transcript::default();
    let played = play(data, &transcript, TIMEOUT).await;
    let lines = transcript.lines();
    assert!(played.is_ok(), "{played:?}\n{}", lines.join("\n"));
    lines
}

/// The ids of the messages alice sent, in order.
fn sent_ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|line| line.starts_with("[alice] sent "))
        .filter_map(|line| line.rsplit_once(": id ").map(|(_, id)| id.to_owned()))
        .collect()
}

fn count(lines: &[String], wanted: impl Fn(&str) -> bool) -> usize {
    lines.iter().filter(|line| wanted(line)).count()
}

fn position(lines: &[String], wanted: impl Fn(&str) -> bool) -> usize {
    lines
        .iter()
        .position(|line| wanted(line))
        .unwrap_or_else(|| panic!("a line is missing in\n{}", lines.join("\n")))
}

/// Checks one run: each message nacked once, shown once, receipted `delivered`; the second one after the restart.
fn check(lines: &[String]) {
    let transcript = lines.join("\n");
    let ids = sent_ids(lines);
    assert_eq!(ids.len(), 2, "two messages sent:\n{transcript}");
    for id in &ids {
        let about = |suffix: &'static str| {
            let id = id.clone();
            move |line: &str| {
                line.starts_with(&format!("[bob] got {id} ")) && line.ends_with(suffix)
            }
        };
        assert_eq!(
            count(lines, about("(nack)")),
            1,
            "{id} nacked once:\n{transcript}"
        );
        assert_eq!(
            count(lines, about("shown it (ack)")),
            1,
            "{id} shown once:\n{transcript}"
        );
        assert_eq!(
            count(lines, |line| line
                == format!("[alice] receipt: {id} delivered")),
            1,
            "{id} receipted:\n{transcript}"
        );
    }
    assert!(
        lines.contains(&"[server] bob is offline: 1 message waits in his mailbox".to_owned()),
        "{transcript}"
    );
    // Part two: the message outlived the server and was delivered by the next one.
    let restarted = position(lines, |line| {
        line == "[server] started again on the same store: 1 message waits for bob"
    });
    let stopped = position(lines, |line| {
        line == "[server] stopped; the store is closed"
    });
    let second_shown = position(lines, |line| {
        line.starts_with(&format!("[bob] got {} ", ids[1])) && line.ends_with("shown it (ack)")
    });
    assert!(
        stopped < restarted && restarted < second_shown,
        "{transcript}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("== done: each message was shown once and its sender got the receipt")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scene_completes_and_a_second_run_starts_from_empty_mailboxes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let first = scene(&data).await;
    check(&first);
    assert!(
        !first[0].contains("removed"),
        "nothing to remove at first: {first:?}"
    );

    // The same directory again: the last run's store is replaced, and the scene plays the same.
    let second = scene(&data).await;
    check(&second);
    assert!(
        second[0].starts_with("[server] removed the previous run's "),
        "{second:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scene_that_runs_out_of_time_says_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let transcript = Transcript::default();
    let error = play(dir.path(), &transcript, Duration::from_millis(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("the scene did not complete within 1ms; the last line was: "),
        "{error}"
    );
}

#[tokio::test]
async fn a_server_whose_store_cannot_be_opened_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(crate::scene::STORE_FILE);
    let taken = courier_redb::RedbStore::open(&path).unwrap();
    let error = Server::start(&path, &Transcript::default().voice("server"))
        .await
        .err()
        .expect("the store is already open")
        .to_string();
    assert!(
        error.starts_with(&format!("cannot open the store {}: ", path.display())),
        "{error}"
    );
    taken.close().await;
}

#[test]
fn the_data_directory_is_the_default_or_the_flag() {
    let args = |list: &[&str]| data_dir(list.iter().map(|arg| (*arg).to_owned()));
    assert_eq!(args(&[]), Ok(PathBuf::from("courier-chat-data")));
    assert_eq!(args(&["--data", "/tmp/x"]), Ok(PathBuf::from("/tmp/x")));
    assert_eq!(args(&["--data=rel/dir"]), Ok(PathBuf::from("rel/dir")));
    for bad in [
        &["--data"][..],
        &["--data="],
        &["--dat", "x"],
        &["--database=x"],
        &["x"],
    ] {
        assert!(args(bad).is_err(), "{bad:?} was accepted");
    }
}
