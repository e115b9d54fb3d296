//! Groups, users and broadcast with several Courier clients at once (interop/test/fan-out.test.mjs).

use courier::client::HubConnection;
use courier::protocol::Protocol;

use crate::client::{Client, call};
use crate::each_protocol;
use crate::server::Server;

each_protocol!(
    send_to_group_reaches_the_members_only,
    send_to_user_reaches_every_connection_of_that_user,
    broadcast_reaches_every_connection,
);

/// A barrier: `sender` broadcasts `marker`, and each client's next `Receive` must be it. Messages are delivered in
/// order per connection, so this proves nothing else arrived before it.
async fn expect_nothing_else(sender: &HubConnection, clients: &mut [&mut Client], marker: &str) {
    sender
        .invoke::<()>("Broadcast", (marker.to_owned(),))
        .await
        .unwrap();
    for client in clients {
        assert_eq!(client.inbox.next().await.1, marker);
    }
}

async fn stop_all(clients: &[&Client]) {
    for client in clients {
        client.connection.stop().await;
    }
}

async fn send_to_group_reaches_the_members_only(protocol: Protocol) {
    let server = Server::start();
    let hub = server.hub_url();
    let mut alice = Client::connect(&hub, protocol, Some("alice")).await;
    let mut bob = Client::connect(&hub, protocol, Some("bob")).await;
    let mut anonymous = Client::connect(&hub, protocol, None).await;
    let sender = alice.connection.clone();
    let group = format!("g-{protocol}");
    alice
        .connection
        .invoke::<()>("JoinGroup", (group.clone(),))
        .await
        .unwrap();
    bob.connection
        .invoke::<()>("JoinGroup", (group.clone(),))
        .await
        .unwrap();

    anonymous
        .connection
        .invoke::<()>("SendToGroup", (group.clone(), "hello group"))
        .await
        .unwrap();
    assert_eq!(alice.inbox.next().await, call(None, "hello group"));
    assert_eq!(bob.inbox.next().await, call(None, "hello group"));
    expect_nothing_else(
        &sender,
        &mut [&mut alice, &mut bob, &mut anonymous],
        "barrier 1",
    )
    .await;

    bob.connection
        .invoke::<()>("LeaveGroup", (group.clone(),))
        .await
        .unwrap();
    alice
        .connection
        .invoke::<()>("SendToGroup", (group.clone(), "only alice"))
        .await
        .unwrap();
    assert_eq!(alice.inbox.next().await, call(Some("alice"), "only alice"));
    expect_nothing_else(
        &sender,
        &mut [&mut alice, &mut bob, &mut anonymous],
        "barrier 2",
    )
    .await;

    // Joining twice is one membership; a group nobody is in is fine to send to.
    alice
        .connection
        .invoke::<()>("JoinGroup", (group.clone(),))
        .await
        .unwrap();
    bob.connection
        .invoke::<()>("SendToGroup", (group.clone(), "once"))
        .await
        .unwrap();
    assert_eq!(alice.inbox.next().await, call(Some("bob"), "once"));
    bob.connection
        .invoke::<()>("SendToGroup", ("empty group", "nobody"))
        .await
        .unwrap();
    expect_nothing_else(
        &sender,
        &mut [&mut alice, &mut bob, &mut anonymous],
        "barrier 3",
    )
    .await;

    stop_all(&[&alice, &bob, &anonymous]).await;
    server.stop().await;
}

async fn send_to_user_reaches_every_connection_of_that_user(protocol: Protocol) {
    let server = Server::start();
    let hub = server.hub_url();
    let mut carol_one = Client::connect(&hub, protocol, Some("carol")).await;
    let mut carol_two = Client::connect(&hub, protocol, Some("carol")).await;
    let mut dave = Client::connect(&hub, protocol, Some("dave")).await;
    let sender = dave.connection.clone();

    sender
        .invoke::<()>("SendToUser", ("carol", "hi carol"))
        .await
        .unwrap();
    assert_eq!(carol_one.inbox.next().await, call(Some("dave"), "hi carol"));
    assert_eq!(carol_two.inbox.next().await, call(Some("dave"), "hi carol"));
    sender
        .invoke::<()>("SendToUser", ("nobody-here", "lost"))
        .await
        .unwrap();
    expect_nothing_else(
        &sender,
        &mut [&mut carol_one, &mut carol_two, &mut dave],
        "barrier",
    )
    .await;

    stop_all(&[&carol_one, &carol_two, &dave]).await;
    server.stop().await;
}

async fn broadcast_reaches_every_connection(protocol: Protocol) {
    let server = Server::start();
    let hub = server.hub_url();
    let mut erin = Client::connect(&hub, protocol, Some("erin")).await;
    let mut anonymous = Client::connect(&hub, protocol, None).await;
    anonymous
        .connection
        .invoke::<()>("Broadcast", ("to all",))
        .await
        .unwrap();
    assert_eq!(erin.inbox.next().await, call(None, "to all"));
    assert_eq!(anonymous.inbox.next().await, call(None, "to all"));
    stop_all(&[&erin, &anonymous]).await;
    server.stop().await;
}

#[tokio::test]
async fn json_and_messagepack_clients_receive_each_other_messages() {
    let server = Server::start();
    let hub = server.hub_url();
    let mut frank = Client::connect(&hub, Protocol::Json, Some("frank")).await;
    let mut grace = Client::connect(&hub, Protocol::MessagePack, Some("grace")).await;
    frank
        .connection
        .invoke::<()>("SendToUser", ("grace", "from json"))
        .await
        .unwrap();
    assert_eq!(grace.inbox.next().await, call(Some("frank"), "from json"));
    grace
        .connection
        .invoke::<()>("SendToUser", ("frank", "from messagepack"))
        .await
        .unwrap();
    assert_eq!(
        frank.inbox.next().await,
        call(Some("grace"), "from messagepack")
    );
    stop_all(&[&frank, &grace]).await;
    server.stop().await;
}
