//! The conformance hub's methods (CONFORMANCE.md, "Hub methods" and "Reliable delivery").

use std::time::Duration;

use courier::server::{
    ClientResultError, Context, Hub, HubBuilder, HubError, MessageId, ReliableSendError,
    UploadStream,
};
use courier::store::MailboxId;
use courier_delivery::{Backoff, Policy};
use futures::{Stream, StreamExt, stream};
use serde::Serialize;

use crate::identity::user_of;

/// Any value a client may send, in either protocol. MessagePack values (binary, extension types) survive an echo
/// over MessagePack unchanged; JSON values map onto the same model and back.
type AnyValue = rmpv::Value;

/// What `Deliver` carries.
#[derive(Serialize)]
struct Delivery {
    id: String,
    from: Option<String>,
    text: String,
}

/// The policy of `Deliver` and `Receipt`: at-least-once, strictly ordered (one in flight), ack timeout 5 s,
/// redelivery after 500 ms doubling up to 5 s, no attempt limit, 10 minutes to live.
fn delivery_policy() -> Policy {
    Policy::default()
        .window(1)
        .ack_timeout(Some(Duration::from_secs(5)))
        .backoff(Backoff::new(
            Duration::from_millis(500),
            2.0,
            Duration::from_secs(5),
        ))
        .max_attempts(None)
        .ttl(Some(Duration::from_secs(600)))
}

/// Appends `{id, from, text}` to `user`'s mailbox, with a receipt for an identified sender; returns the id.
async fn send_reliable(
    ctx: Context,
    user: &str,
    text: String,
    ttl: Option<Duration>,
) -> Result<String, HubError> {
    let id = MessageId::generate();
    let from = ctx.user_id().map(str::to_owned);
    let mut send = ctx.reliable().user(user).id(id.clone());
    if from.is_some() {
        send = send.with_receipt();
    }
    if let Some(ttl) = ttl {
        send = send.ttl(ttl);
    }
    let message = Delivery {
        id: id.to_string(),
        from,
        text,
    };
    send.send("Deliver", (message,))
        .await
        .map_err(|error| match error {
            ReliableSendError::MailboxFull(_) => HubError::new(error.to_string()),
            other => HubError::internal(other),
        })?;
    Ok(id.to_string())
}

/// `SendReliable`, `SendReliableTtl` and `PendingCount`, and the policies of `Deliver` and `Receipt`.
fn with_reliable_methods(builder: HubBuilder) -> HubBuilder {
    builder
        .client_method("Deliver", delivery_policy())
        .client_method("Receipt", delivery_policy())
        .method(
            "SendReliable",
            |ctx: Context, (user, text): (String, String)| async move {
                send_reliable(ctx, &user, text, None).await
            },
        )
        .method(
            "SendReliableTtl",
            |ctx: Context, (user, text, ttl_ms): (String, String, i64)| async move {
                let ttl = Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0));
                send_reliable(ctx, &user, text, Some(ttl)).await
            },
        )
        .method("PendingCount", |ctx: Context, (): ()| async move {
            match ctx.user_id() {
                Some(user) => ctx
                    .reliable()
                    .pending(&MailboxId::user(user))
                    .await
                    .map_err(HubError::internal),
                None => Ok(0),
            }
        })
}

/// The hub on `builder` (which carries the store), with ASP.NET Core's default limits (courier's default
/// `HubOptions` are those); its auth hook makes the access token the user id (refusals are answered with HTTP 401
/// by the endpoint).
pub(crate) fn build(builder: HubBuilder) -> Hub {
    with_reliable_methods(builder)
        .authenticate(|info| async move { user_of(info.access_token.as_deref()) })
        .on_connected(|ctx: Context| async move {
            tracing::info!(connection = %ctx.connection_id(), user = ?ctx.user_id(), "connected");
            Ok(())
        })
        .on_disconnected(|ctx: Context, error: Option<String>| async move {
            tracing::info!(connection = %ctx.connection_id(), ?error, "disconnected");
        })
        .method("Echo", |_ctx: Context, (value,): (AnyValue,)| async move {
            Ok::<_, HubError>(value)
        })
        .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move {
            a.checked_add(b)
                .ok_or_else(|| HubError::new(format!("{a} + {b} overflows a 64-bit integer.")))
        })
        .method("Fail", |_ctx: Context, (message,): (String,)| async move {
            Err::<(), _>(HubError::new(message))
        })
        .method("WhoAmI", |ctx: Context, (): ()| async move {
            Ok::<_, HubError>(ctx.user_id().map(str::to_owned))
        })
        .method("GetConnectionId", |ctx: Context, (): ()| async move {
            Ok::<_, HubError>(ctx.connection_id().to_string())
        })
        .stream_method("Counter", |_ctx: Context, (count, delay_ms): (i32, i32)| {
            counter(count, delay_ms)
        })
        .method("Sum", |_ctx: Context, (numbers,): (UploadStream<i64>,)| {
            sum(numbers)
        })
        .method(
            "JoinGroup",
            |ctx: Context, (group,): (String,)| async move {
                ctx.groups().add(ctx.connection_id(), &group);
                Ok::<_, HubError>(())
            },
        )
        .method(
            "LeaveGroup",
            |ctx: Context, (group,): (String,)| async move {
                ctx.groups().remove(ctx.connection_id(), &group);
                Ok::<_, HubError>(())
            },
        )
        .method(
            "SendToGroup",
            |ctx: Context, (group, text): (String, String)| async move {
                let from = ctx.user_id().map(str::to_owned);
                ctx.clients()
                    .group(group)
                    .send("Receive", (from, text))
                    .await?;
                Ok::<_, HubError>(())
            },
        )
        .method(
            "SendToUser",
            |ctx: Context, (user, text): (String, String)| async move {
                let from = ctx.user_id().map(str::to_owned);
                ctx.clients()
                    .user(user)
                    .send("Receive", (from, text))
                    .await?;
                Ok::<_, HubError>(())
            },
        )
        .method("Broadcast", |ctx: Context, (text,): (String,)| async move {
            let from = ctx.user_id().map(str::to_owned);
            ctx.clients().all().send("Receive", (from, text)).await?;
            Ok::<_, HubError>(())
        })
        .method("Ask", |ctx: Context, (question,): (String,)| async move {
            ctx.caller()
                .invoke::<AnyValue>("Answer", (question,))
                .await
                .map_err(|error| match error {
                    // The client's own error text is what the caller wants to see.
                    ClientResultError::Client(text) => HubError::new(text),
                    other => HubError::internal(other),
                })
        })
        .build()
}

/// The integers `0..count`, `delay_ms` apart (the first at once). Negative values count as 0.
fn counter(count: i32, delay_ms: i32) -> impl Stream<Item = Result<i32, HubError>> {
    let delay = Duration::from_millis(u64::try_from(delay_ms).unwrap_or(0));
    stream::iter(0..count.max(0)).then(move |i| async move {
        if i > 0 {
            tokio::time::sleep(delay).await;
        }
        Ok(i)
    })
}

/// The sum of an upload stream, once the client completes it.
async fn sum(mut numbers: UploadStream<i64>) -> Result<i64, HubError> {
    let mut total: i64 = 0;
    while let Some(n) = numbers.next().await {
        total = total
            .checked_add(n?)
            .ok_or_else(|| HubError::new("The sum overflows a 64-bit integer."))?;
    }
    Ok(total)
}
