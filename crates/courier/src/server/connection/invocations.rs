//! The unary invocations a connection runs on its own task.
//!
//! As .NET runs hub methods in its connection's dispatch loop, a method without upload streams is polled by the
//! task that read its invocation: a method that is ready at once (most are) is answered before the next message is
//! read, in the same frame as the other replies to that frame, with no task spawned and no hand-off between tasks.
//! A method that waits is polled again when it is woken, alongside the transport. Methods with upload streams and
//! streaming methods keep a task of their own (the connection must go on reading their items meanwhile).

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use courier_protocol::{ByteString, CompletionResult};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

use crate::server::HubError;
use crate::server::method::Output;

/// What a method's future resolves to.
pub(super) type Outcome = Result<Output, HubError>;

/// A finished invocation.
pub(super) struct Finished {
    /// `None` for a non-blocking invocation, which gets no reply.
    pub(super) id: Option<ByteString>,
    pub(super) result: CompletionResult,
}

/// One running method, with what its Completion needs.
struct Call {
    id: Option<ByteString>,
    target: ByteString,
    detailed: bool,
    future: BoxFuture<'static, Outcome>,
}

impl Future for Call {
    type Output = Finished;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Finished> {
        let call = self.get_mut();
        let outcome = match catch_unwind(AssertUnwindSafe(|| call.future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(outcome)) => Some(outcome),
            Err(_) => None,
        };
        Poll::Ready(Finished {
            id: call.id.take(),
            result: completion_result(outcome, &call.target, call.detailed),
        })
    }
}

/// The methods running on the connection's task.
#[derive(Default)]
pub(super) struct Invocations {
    /// Made at the first invocation, so that an idle connection does not keep its allocations.
    running: Option<FuturesUnordered<Call>>,
}

impl Invocations {
    /// Starts a method: polls it once, and returns its result if it is ready at once (most methods are), else keeps
    /// it to be polled by [`finished`](Self::finished) when it is woken. (The first poll is without the task's
    /// waker, so that a method ready at once costs no more than that; one that is not is polled again, with it,
    /// as soon as it is kept.)
    pub(super) fn start(
        &mut self,
        id: Option<ByteString>,
        target: ByteString,
        detailed: bool,
        future: BoxFuture<'static, Outcome>,
    ) -> Option<Finished> {
        let mut call = Call {
            id,
            target,
            detailed,
            future,
        };
        match Pin::new(&mut call).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(finished) => Some(finished),
            Poll::Pending => {
                self.running
                    .get_or_insert_with(FuturesUnordered::new)
                    .push(call);
                None
            }
        }
    }

    /// Polls the methods that were woken, without waiting; one that finished, if any. (Polling without the task's
    /// waker is sound here: a method that is not done stays queued and is polled again, with it, by
    /// [`finished`](Self::finished) before the task waits.)
    pub(super) fn poll_finished(&mut self) -> Option<Finished> {
        self.running.as_mut()?.next().now_or_never().flatten()
    }

    /// The next method to finish (never, while none runs).
    pub(super) async fn finished(&mut self) -> Finished {
        match &mut self.running {
            Some(running) if !running.is_empty() => match running.next().await {
                Some(finished) => finished,
                None => std::future::pending().await,
            },
            _ => std::future::pending().await,
        }
    }

    /// The connection ended: the methods still running finish on a task of their own, their results unsent, as
    /// they would have if each had had its own task all along (a method is not cut short because its caller left).
    pub(super) fn detach(&mut self) {
        if let Some(mut running) = self.running.take()
            && !running.is_empty()
        {
            tokio::spawn(async move { while running.next().await.is_some() {} });
        }
    }
}

/// The Completion result for a method's outcome (`None`: it panicked).
pub(super) fn completion_result(
    outcome: Option<Outcome>,
    target: &str,
    detailed: bool,
) -> CompletionResult {
    match outcome {
        Some(Ok(Output::Void)) => CompletionResult::Void,
        Some(Ok(Output::Value(payload))) => CompletionResult::Value(payload),
        Some(Err(error)) => CompletionResult::Error(method_failed(target, &error, detailed).into()),
        None => CompletionResult::Error(
            method_failed(target, &HubError::internal("the method panicked"), detailed).into(),
        ),
    }
}

fn method_failed(target: &str, error: &HubError, detailed: bool) -> String {
    super::with_detail(
        &format!("An unexpected error occurred invoking '{target}' on the server."),
        error.detail(detailed),
    )
}
