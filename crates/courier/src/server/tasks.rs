//! The hub's own tasks (connections, mailboxes, their helpers), counted so that a shutdown can wait until none is
//! left holding the hub, and with it the store.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// A count of running tasks.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    running: AtomicUsize,
    ended: Notify,
}

impl Tasks {
    /// Spawns `task` on the current runtime; it counts until it has ended and dropped everything it held.
    pub(crate) fn spawn(
        self: &std::sync::Arc<Self>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let tasks = self.clone();
        tasks.running.fetch_add(1, Ordering::SeqCst);
        // Boxed: awaiting a future held by value would keep room for it twice in this task (once captured, once
        // being awaited), which for a connection's future is 1.7 KiB more per connection.
        let task = Box::pin(task);
        tokio::spawn(async move {
            // The task's future, and everything it holds, is dropped at the end of this statement.
            task.await;
            if tasks.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                tasks.ended.notify_waiters();
            }
        });
    }

    /// Waits until no counted task is running.
    pub(crate) async fn ended(&self) {
        loop {
            let ended = self.ended.notified();
            if self.running.load(Ordering::SeqCst) == 0 {
                return;
            }
            ended.await;
        }
    }
}
