//! Sending to clients: every target of `Clients`, groups, users, fan-out across protocols, slow consumers.

mod common;

use std::time::Duration;

use common::{Peer, arg, expect_invocation};
use courier::TransportInfo;
use courier::server::{ConnectionId, ConnectionOptions, Context, Hub, HubError, HubOptions};
use courier::transport::memory;
use courier_protocol::{HubMessage, Protocol};
use serde_json::json;
use tokio::time::Instant;

fn hub(options: HubOptions) -> Hub {
    Hub::builder()
        .options(options)
        .authenticate(|info| async move { Ok(info.access_token) })
        .method("Join", |ctx: Context, (group,): (String,)| async move {
            ctx.groups().add(ctx.connection_id(), &group);
            Ok::<_, HubError>(())
        })
        .method("Leave", |ctx: Context, (group,): (String,)| async move {
            ctx.groups().remove(ctx.connection_id(), &group);
            Ok::<_, HubError>(())
        })
        .method(
            "Say",
            |ctx: Context, (to, text): (String, String)| async move {
                let args = (ctx.connection_id().to_string(), text);
                let sent = match to.as_str() {
                    "all" => ctx.clients().all().send("Said", args).await,
                    "others" => ctx.others().send("Said", args).await,
                    "caller" => ctx.caller().send("Said", args).await,
                    group => ctx.others_in_group(group).send("Said", args).await,
                };
                sent.map_err(HubError::internal)
            },
        )
        .build()
}

/// A connection of `user` (if any), with its id.
async fn join(hub: &Hub, protocol: Protocol, user: Option<&str>) -> (Peer, ConnectionId) {
    let info = match user {
        Some(user) => TransportInfo::new().with_access_token(user),
        None => TransportInfo::new(),
    };
    let (mut peer, handle) =
        Peer::open_with(hub, protocol, info, ConnectionOptions::default()).await;
    peer.handshake(1).await;
    (peer, handle.id().clone())
}

/// The text of the next `Said`/`Note` invocation.
async fn heard(peer: &mut Peer) -> String {
    let invocation = expect_invocation(peer.recv().await);
    assert_eq!(
        invocation.invocation_id, None,
        "a plain send is non-blocking"
    );
    arg(&invocation, invocation.arguments.len() - 1)
}

/// Whether nothing arrives within a second (Pings aside).
async fn silent(peer: &mut Peer) -> bool {
    tokio::time::timeout(Duration::from_secs(1), peer.recv())
        .await
        .is_err()
}

/// Has `peer` invoke `Say` and returns what it heard itself before the completion: what a method sends to its
/// caller arrives before the method's completion.
async fn say(peer: &mut Peer, id: &str, to: &str, text: &str) -> Vec<String> {
    peer.send(common::invocation(
        peer.protocol,
        Some(id),
        "Say",
        &[json!(to), json!(text)],
    ))
    .await;
    let mut heard = Vec::new();
    loop {
        match peer.recv().await {
            HubMessage::Completion(done) => {
                assert_eq!(done.invocation_id, id);
                return heard;
            }
            HubMessage::Invocation(said) => heard.push(arg(&said, 1)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn all_others_caller_and_groups_from_inside_a_method() {
    let hub = hub(HubOptions::default());
    let (mut a, _) = join(&hub, Protocol::Json, None).await;
    let (mut b, _) = join(&hub, Protocol::MessagePack, None).await;
    let (mut c, _) = join(&hub, Protocol::Json, None).await;

    assert_eq!(say(&mut a, "1", "all", "to all").await, ["to all"]);
    assert_eq!(heard(&mut b).await, "to all");
    assert_eq!(heard(&mut c).await, "to all");
    assert!(say(&mut a, "2", "others", "to others").await.is_empty());
    assert_eq!(heard(&mut b).await, "to others");
    assert_eq!(heard(&mut c).await, "to others");
    assert_eq!(say(&mut a, "3", "caller", "to me").await, ["to me"]);
    assert!(silent(&mut b).await && silent(&mut c).await);

    a.call("4", "Join", &[json!("room")]).await;
    b.call("5", "Join", &[json!("room")]).await;
    assert!(say(&mut a, "6", "room", "to the room").await.is_empty());
    assert_eq!(heard(&mut b).await, "to the room");
    assert!(silent(&mut c).await);
    b.call("7", "Leave", &[json!("room")]).await;
    assert!(say(&mut a, "8", "room", "to nobody").await.is_empty());
    assert!(silent(&mut b).await);
}

#[tokio::test(start_paused = true)]
async fn the_app_sends_to_connections_users_groups_and_all_but_some() {
    let hub = hub(HubOptions::default());
    let context = hub.context();
    let (mut alice_phone, phone) = join(&hub, Protocol::Json, Some("alice")).await;
    let (mut alice_laptop, laptop) = join(&hub, Protocol::MessagePack, Some("alice")).await;
    let (mut bob, bob_id) = join(&hub, Protocol::Json, Some("bob")).await;

    context
        .clients()
        .user("alice")
        .send("Note", ("for alice",))
        .await
        .unwrap();
    assert_eq!(heard(&mut alice_phone).await, "for alice");
    assert_eq!(heard(&mut alice_laptop).await, "for alice");
    assert!(silent(&mut bob).await);

    context
        .clients()
        .client(bob_id.clone())
        .send("Note", ("for bob",))
        .await
        .unwrap();
    assert_eq!(heard(&mut bob).await, "for bob");

    context
        .clients()
        .all_except([phone.clone()])
        .send("Note", ("not the phone",))
        .await
        .unwrap();
    assert_eq!(heard(&mut alice_laptop).await, "not the phone");
    assert_eq!(heard(&mut bob).await, "not the phone");
    assert!(silent(&mut alice_phone).await);

    context.groups().add(&laptop, "desk");
    context.groups().add(&bob_id, "desk");
    context
        .clients()
        .group_except("desk", [bob_id.clone()])
        .send("Note", ("desk",))
        .await
        .unwrap();
    assert_eq!(heard(&mut alice_laptop).await, "desk");
    assert!(silent(&mut bob).await);
    context
        .clients()
        .clients([phone, bob_id])
        .send("Note", ("pair",))
        .await
        .unwrap();
    assert_eq!(heard(&mut alice_phone).await, "pair");
    assert_eq!(heard(&mut bob).await, "pair");

    // A user or group without connections, or a connection that is gone: nothing happens.
    context
        .clients()
        .user("carol")
        .send("Note", ("nobody",))
        .await
        .unwrap();
    context
        .clients()
        .client("gone")
        .send("Note", ("nobody",))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_connection_leaves_its_groups_when_it_ends() {
    let hub = hub(HubOptions::default());
    let (mut a, a_id) = join(&hub, Protocol::Json, None).await;
    hub.context().groups().add(&a_id, "g");
    a.close().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let (mut b, b_id) = join(&hub, Protocol::Json, None).await;
    hub.context().groups().add(&b_id, "g");
    hub.context()
        .clients()
        .group("g")
        .send("Note", ("only b",))
        .await
        .unwrap();
    assert_eq!(heard(&mut b).await, "only b");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_read_is_aborted_after_the_send_timeout() {
    let hub = hub(HubOptions::default().outbound_queue_capacity(2));
    // The transport holds one frame; the client reads nothing after the handshake.
    let (server, client) = memory::pair_with(TransportInfo::new(), 1);
    let handle = hub
        .accept(server, ConnectionOptions::default())
        .await
        .unwrap();
    let mut peer = Peer::over(client, Protocol::Json);
    peer.handshake(1).await;
    let start = Instant::now();
    for i in 0..10 {
        hub.context()
            .clients()
            .all()
            .send("Note", (i,))
            .await
            .unwrap();
    }
    handle.closed().await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(10) && elapsed < Duration::from_secs(11),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn messages_ready_together_share_one_frame_in_both_protocols() {
    let hub = hub(HubOptions::default());
    let (mut json, _) = join(&hub, Protocol::Json, None).await;
    let (mut msgpack, _) = join(&hub, Protocol::MessagePack, None).await;
    for i in 0..3 {
        hub.context()
            .clients()
            .all()
            .send("Note", (i,))
            .await
            .unwrap();
    }
    for peer in [&mut json, &mut msgpack] {
        let frame = peer.recv_frame().await;
        let notes: Vec<i32> = frame
            .iter()
            .map(|m| arg(&expect_invocation(m.clone()), 0))
            .collect();
        assert_eq!(notes, [0, 1, 2], "{}", peer.protocol);
    }
}

#[tokio::test(start_paused = true)]
async fn pending_client_results_are_bounded_per_connection() {
    let hub = Hub::builder()
        .options(HubOptions::default().maximum_pending_client_results(1))
        .build();
    let (mut peer, handle) = Peer::connect(&hub, Protocol::Json).await;
    let client = hub.context().clients().client(handle.id().clone());
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.invoke::<i32>("Get", ()).await }
    });
    expect_invocation(peer.recv().await);
    let second = client.invoke::<i32>("Get", ()).await;
    assert!(
        matches!(
            second,
            Err(courier::server::ClientResultError::TooManyPending)
        ),
        "{second:?}"
    );
    peer.send(common::completion_value(Protocol::Json, "s1", &json!(1)))
        .await;
    assert_eq!(first.await.unwrap().unwrap(), 1);
}
