//! SIGKILL under load: a child process appends and acks from several tasks and is killed mid-run, again and
//! again. After each kill, every append the store reported accepted is there (or acked, if that was reported),
//! no number was given twice, and each task's messages are numbered in the order it sent them.
//!
//! The child is this test binary re-executing this test with `COURIER_REDB_CRASH_CHILD` set; it prints
//! `accepted <seq> <payload>` and `acked <seq>` as the store confirms them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use bytes::Bytes;
use courier::store::{MailboxId, MailboxLimit, NewMessage, Store};
use courier_delivery::Timestamp;
use courier_redb::RedbStore;

const CHILD_ENV: &str = "COURIER_REDB_CRASH_CHILD";
const ROUND_ENV: &str = "COURIER_REDB_CRASH_ROUND";
const TEST_NAME: &str = "accepted_writes_survive_sigkill";
const ROUNDS: u64 = 6;
const TASKS: u64 = 8;

fn mailbox() -> MailboxId {
    MailboxId::user("crash")
}

#[test]
fn accepted_writes_survive_sigkill() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let round = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
        return write_until_killed(&path, round);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("courier.redb");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut accepted = BTreeMap::new();
    let mut acked = BTreeSet::new();

    for round in 0..ROUNDS {
        // Kill at a different point each round: after 40 to 300 confirmed appends.
        let kill_after = 40 + (round * 97) % 260;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut confirmed_this_round = 0;
        for line in lines.by_ref() {
            confirmed_this_round += record(&line.unwrap(), &mut accepted, &mut acked);
            if confirmed_this_round >= kill_after {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // What the child printed before it died was confirmed too.
        for line in lines {
            confirmed_this_round += record(&line.unwrap(), &mut accepted, &mut acked);
        }
        assert!(
            confirmed_this_round >= kill_after,
            "round {round}: the child stopped early"
        );

        runtime.block_on(check(&path, &accepted, &acked));
    }
}

/// Notes what a line of the child confirms; returns 1 for an accepted append.
fn record(line: &str, accepted: &mut BTreeMap<u64, String>, acked: &mut BTreeSet<u64>) -> u64 {
    let mut words = line.splitn(3, ' ');
    let kind = words.next();
    if !matches!(kind, Some("accepted" | "acked")) {
        return 0; // the test harness's own lines
    }
    let seq: u64 = words.next().unwrap().parse().unwrap();
    if kind == Some("acked") {
        acked.insert(seq);
        return 0;
    }
    let payload = words.next().unwrap().to_owned();
    assert!(
        accepted.insert(seq, payload).is_none(),
        "number {seq} given twice"
    );
    1
}

/// Everything confirmed is in the store as confirmed, in order.
async fn check(path: &std::path::Path, accepted: &BTreeMap<u64, String>, acked: &BTreeSet<u64>) {
    let store = RedbStore::open(path).unwrap();
    let mailbox = mailbox();
    let pending = store.read_pending(&mailbox, 0, usize::MAX).await.unwrap();
    let stored: BTreeMap<u64, Bytes> = pending.into_iter().map(|m| (m.seq, m.payload)).collect();
    // A task acks only the message it just appended, so the one ack a kill can catch unconfirmed (committed, not
    // yet printed) is of a task's last accepted message.
    let mut last_accepted: HashMap<(u64, u64), u64> = HashMap::new();
    for (seq, payload) in accepted {
        let [round, task, _] = parse(payload.as_bytes());
        last_accepted.insert((round, task), *seq);
    }
    for (seq, payload) in accepted {
        let [round, task, n] = parse(payload.as_bytes());
        if acked.contains(seq) {
            assert!(
                !stored.contains_key(seq),
                "acked message {seq} is pending again"
            );
        } else if n % 3 == 0 && last_accepted[&(round, task)] == *seq && !stored.contains_key(seq) {
            // Its ack committed as the child was killed.
        } else {
            assert_eq!(
                stored.get(seq),
                Some(&Bytes::from(payload.clone())),
                "accepted message {seq}"
            );
        }
    }
    // Each task sends one message at a time: its messages must be numbered in the order it sent them.
    let mut last_sent: HashMap<(u64, u64), u64> = HashMap::new();
    for payload in stored.values() {
        let [round, task, n] = parse(payload);
        if let Some(previous) = last_sent.insert((round, task), n) {
            assert!(
                previous < n,
                "task {task} of round {round}: message {n} numbered before {previous}"
            );
        }
    }
    let highest = accepted
        .keys()
        .chain(stored.keys())
        .max()
        .copied()
        .unwrap_or(0);
    assert!(
        store.next_seq(&mailbox).await.unwrap() > highest,
        "a number would be given again"
    );
    store.close().await;
}

/// A payload: `<round> <task> <n>`, the task's n-th message.
fn parse(payload: &[u8]) -> [u64; 3] {
    let text = std::str::from_utf8(payload).unwrap();
    let parts: Vec<u64> = text.split(' ').map(|part| part.parse().unwrap()).collect();
    parts
        .try_into()
        .unwrap_or_else(|_| panic!("unexpected payload {text:?}"))
}

/// The child: appends (and acks every third message) from several tasks until it is killed.
fn write_until_killed(path: &str, round: u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = std::sync::Arc::new(RedbStore::open(path).unwrap());
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = std::sync::Arc::clone(&store);
                tokio::spawn(async move {
                    let mailbox = mailbox();
                    // A bound in case the parent dies without killing this process.
                    for n in 0..100_000u64 {
                        let payload = format!("{round} {task} {n}");
                        let message =
                            NewMessage::new(Bytes::from(payload.clone()), Timestamp::ZERO);
                        let seq = store
                            .append(
                                &mailbox,
                                message,
                                MailboxLimit::default().messages(usize::MAX),
                            )
                            .await
                            .unwrap();
                        say(&format!("accepted {seq} {payload}"));
                        if n % 3 == 0 {
                            assert!(store.ack(&mailbox, seq, None).await.unwrap());
                            say(&format!("acked {seq}"));
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// One line to the parent, at once.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").unwrap();
    stdout.flush().unwrap();
}
