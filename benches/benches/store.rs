//! The durable store (courier-redb) against `MemoryStore` on the same machine: accepted-and-acked messages per
//! second with concurrent senders, and the replay of 100,000 pending messages of one mailbox.
//! docs/benchmarks.md reports the figures.
//!
//! Run: `cargo bench -p courier-benches --bench store` (about a minute and a half); `-- life <store> <senders>`
//! runs one case of the life table (to profile it), `<store>` being `redb`, `redb-tmpfs` or `memory`. The redb
//! file lives in a temporary directory under `$TMPDIR` (so on the disk that holds it), where every write is
//! synced before it is answered; `redb-tmpfs` puts it on `/dev/shm`, where a sync costs nothing, to show the
//! store's own cost without the disk's.

// A benchmark reports its tables on stdout.
#![allow(clippy::print_stdout)]

use courier_benches::load_average;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use courier::store::{MailboxId, MailboxLimit, MemoryStore, NewMessage, Store};
use courier_delivery::Timestamp;
use courier_redb::RedbStore;

/// Errors of a benchmark run: it stops and says why.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Mailboxes the senders spread their messages over.
const MAILBOXES: usize = 1_000;
/// Payload of every message: a typical chat message or notification, encoded.
const PAYLOAD: usize = 256;
/// Time the senders run before counting starts (the file grows, caches warm).
const WARM_UP: Duration = Duration::from_secs(1);
/// Time the senders are counted.
const MEASURE: Duration = Duration::from_secs(4);
/// Concurrent senders of the life table: one, the 64, one per mailbox, and as many as the store's
/// queue holds.
const SENDERS: [usize; 4] = [1, 64, 1_000, 4_096];
/// Appends in flight while the replayed mailbox is filled.
const FILL_AT_ONCE: usize = 1_000;
/// Pending messages of the replayed mailbox.
const REPLAY: usize = 100_000;

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; options are not otherwise used.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let runtime = tokio::runtime::Runtime::new()?;
    match args.as_slice() {
        [] => runtime.block_on(run()),
        ["life", store, senders] => {
            let store =
                Subject::from_name(store).ok_or("the store is redb, redb-tmpfs or memory")?;
            let senders = senders.parse()?;
            runtime.block_on(async {
                let figures = life_of(store, senders, &Dirs::new()?).await?;
                println!("| {} | {senders} | {figures} |", store.name());
                Ok(())
            })
        }
        _ => Err("usage: store [life redb|redb-tmpfs|memory <senders>]".into()),
    }
}

/// The stores of the life table.
#[derive(Debug, Clone, Copy)]
enum Subject {
    /// RedbStore with its file on the disk of `$TMPDIR`.
    Redb,
    /// RedbStore with its file on tmpfs (`/dev/shm`), where a sync costs nothing: the store's own cost,
    /// without the disk's.
    RedbTmpfs,
    /// MemoryStore, the peer.
    Memory,
}

impl Subject {
    fn name(self) -> &'static str {
        match self {
            Self::Redb => "redb",
            Self::RedbTmpfs => "redb-tmpfs",
            Self::Memory => "memory",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::Redb, Self::RedbTmpfs, Self::Memory]
            .into_iter()
            .find(|subject| subject.name() == name)
    }
}

/// Temporary directories for redb files: on the disk, and on tmpfs if the machine has `/dev/shm`.
struct Dirs {
    disk: tempfile::TempDir,
    tmpfs: Option<tempfile::TempDir>,
}

impl Dirs {
    fn new() -> Result<Self, BoxError> {
        Ok(Self {
            disk: tempfile::tempdir()?,
            tmpfs: tempfile::tempdir_in("/dev/shm").ok(),
        })
    }
}

/// The life table's figures for `subject`; a store on tmpfs needs `/dev/shm`.
async fn life_of(subject: Subject, senders: usize, dirs: &Dirs) -> Result<Life, BoxError> {
    let dir = match subject {
        Subject::Memory => return life(Arc::new(MemoryStore::new()), senders).await,
        Subject::Redb => &dirs.disk,
        Subject::RedbTmpfs => dirs.tmpfs.as_ref().ok_or("this machine has no /dev/shm")?,
    };
    let path = dir.path().join(format!("life-{senders}.redb"));
    let redb = Arc::new(RedbStore::open(&path)?);
    let figures = life(Arc::clone(&redb), senders).await?;
    close(redb).await?;
    std::fs::remove_file(&path)?;
    Ok(figures)
}

async fn run() -> Result<(), BoxError> {
    let dirs = Dirs::new()?;
    println!("load average before: {}", load_average());
    println!();
    println!(
        "Life of a delivered message (append, record_attempt, ack), {PAYLOAD} B payloads over {MAILBOXES} mailboxes, \
         {} s counted after {} s warm-up:",
        MEASURE.as_secs(),
        WARM_UP.as_secs()
    );
    println!();
    println!("| store | senders | messages/s | mean life (µs) |");
    println!("|---|---:|---:|---:|");
    for subject in [Subject::Redb, Subject::RedbTmpfs, Subject::Memory] {
        if matches!(subject, Subject::RedbTmpfs) && dirs.tmpfs.is_none() {
            println!("| redb-tmpfs | (no /dev/shm) | | |");
            continue;
        }
        for senders in SENDERS {
            let figures = life_of(subject, senders, &dirs).await?;
            println!("| {} | {senders} | {figures} |", subject.name());
        }
    }
    println!();
    println!(
        "Replay of {REPLAY} pending {PAYLOAD} B messages of one mailbox with read_pending (redb: after reopening the file):"
    );
    println!();
    println!("| store | batch | time (ms) | messages/s |");
    println!("|---|---:|---:|---:|");
    let path = dirs.disk.path().join("replay.redb");
    let redb = Arc::new(RedbStore::open(&path)?);
    fill(redb.as_ref()).await?;
    close(redb).await?;
    let redb = RedbStore::open(&path)?;
    let memory = MemoryStore::new();
    fill(&memory).await?;
    for batch in [1_000, 10_000] {
        println!("| redb | {batch} | {} |", replay(&redb, batch).await?);
        println!("| memory | {batch} | {} |", replay(&memory, batch).await?);
    }
    redb.close().await;
    println!();
    println!("load average after: {}", load_average());
    Ok(())
}

/// The payload every message carries.
fn payload() -> Bytes {
    Bytes::from(vec![b'x'; PAYLOAD])
}

fn now() -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000)
}

/// What [`life`] measured, as table cells.
struct Life {
    per_second: f64,
    mean_micros: f64,
}

impl std::fmt::Display for Life {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} | {:.0}", self.per_second, self.mean_micros)
    }
}

/// `senders` tasks each take a message through its whole delivered life (append, record the first attempt,
/// ack) again and again, each on its own share of the mailboxes in turn; counts the lives completed while
/// [`MEASURE`] runs, after [`WARM_UP`].
async fn life<S: Store>(store: Arc<S>, senders: usize) -> Result<Life, BoxError> {
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mailboxes: Arc<[MailboxId]> = (0..MAILBOXES)
        .map(|n| MailboxId::user(&format!("user-{n}")))
        .collect();
    let payload = payload();
    let mut tasks = Vec::new();
    for sender in 0..senders {
        let (store, counting, stop, done) = (
            Arc::clone(&store),
            Arc::clone(&counting),
            Arc::clone(&stop),
            Arc::clone(&done),
        );
        let (mailboxes, payload) = (Arc::clone(&mailboxes), payload.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = sender;
            while !stop.load(Ordering::Relaxed) {
                let mailbox = &mailboxes[next % MAILBOXES];
                next += senders;
                let message = NewMessage::new(payload.clone(), now());
                let seq = store
                    .append(mailbox, message, MailboxLimit::default())
                    .await?;
                store.record_attempt(mailbox, seq, 1).await?;
                if !store.ack(mailbox, seq, None).await? {
                    return Err::<(), BoxError>("a pending message was not acked".into());
                }
                if counting.load(Ordering::Relaxed) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                // MemoryStore's futures are ready at once: without a yield, its senders would hold the workers
                // and starve the timer. (A real sender awaits the network between messages anyway.)
                tokio::task::yield_now().await;
            }
            Ok(())
        }));
    }
    tokio::time::sleep(WARM_UP).await;
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(MEASURE).await;
    let lives = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let (lives, senders) = (lives as f64, senders as f64);
    Ok(Life {
        per_second: lives / elapsed,
        // Little's law: each sender has one message in its life at a time.
        mean_micros: elapsed * senders / lives * 1e6,
    })
}

/// Appends [`REPLAY`] messages to the replayed mailbox, [`FILL_AT_ONCE`] at a time.
async fn fill(store: &impl Store) -> Result<(), BoxError> {
    let mailbox = replayed();
    let limit = MailboxLimit::default()
        .messages(REPLAY)
        .bytes(REPLAY * PAYLOAD);
    let payload = payload();
    for _ in 0..REPLAY / FILL_AT_ONCE {
        let appends = (0..FILL_AT_ONCE).map(|_| {
            let message = NewMessage::new(payload.clone(), now());
            store.append(&mailbox, message, limit)
        });
        futures::future::try_join_all(appends).await?;
    }
    let rest = (0..REPLAY % FILL_AT_ONCE)
        .map(|_| store.append(&mailbox, NewMessage::new(payload.clone(), now()), limit));
    futures::future::try_join_all(rest).await?;
    Ok(())
}

fn replayed() -> MailboxId {
    MailboxId::client("reconnecting-device")
}

/// Reads every pending message of the replayed mailbox in batches of `batch`, as a reconnecting client's
/// outbox is rebuilt; returns the table cells "time (ms) | messages/s".
async fn replay(store: &impl Store, batch: usize) -> Result<String, BoxError> {
    let mailbox = replayed();
    let start = Instant::now();
    let mut after = 0;
    let mut read = 0;
    loop {
        let messages = store.read_pending(&mailbox, after, batch).await?;
        read += messages.len();
        let Some(last) = messages.last() else { break };
        after = last.seq;
        if messages.len() < batch {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if read != REPLAY {
        return Err(format!("replayed {read} messages, not {REPLAY}").into());
    }
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let per_second = read as f64 / elapsed;
    Ok(format!("{:.1} | {per_second:.0}", elapsed * 1e3))
}

/// Closes a redb store shared with tasks that have all finished.
async fn close(store: Arc<RedbStore>) -> Result<(), BoxError> {
    let store = Arc::try_unwrap(store).map_err(|_| "a sender still holds the store")?;
    store.close().await;
    Ok(())
}
