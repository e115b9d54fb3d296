//! The WebSocket transport: frames both ways, status codes, skipNegotiation and stateful reconnect, between the
//! endpoint and the crate's own client.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use bytes::Bytes;
use common::{Echo, Guarded, http, serve};
use courier::{Frame, TransportError};
use courier_http::{ClientTransport, ConnectError, EndpointOptions, HttpConnector, HubEndpoint};
use futures::{SinkExt, StreamExt};
use hyper::StatusCode;
use serde_json::json;

async fn echo_server(options: EndpointOptions) -> SocketAddr {
    serve(HubEndpoint::new(Echo).options(options).router("/hub")).await
}

fn connector(addr: SocketAddr) -> HttpConnector {
    HttpConnector::new(&format!("http://{addr}/hub")).unwrap()
}

/// Sends a frame and returns the reply.
async fn round_trip(transport: &mut ClientTransport, frame: Frame) -> Frame {
    transport.send(frame).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), transport.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

fn text(text: &str) -> Frame {
    Frame::Text(Bytes::copy_from_slice(text.as_bytes()))
}

fn status(result: Result<impl std::fmt::Debug, ConnectError>) -> StatusCode {
    match result {
        Err(ConnectError::Status(status)) => status,
        other => panic!("expected an HTTP status, got {other:?}"),
    }
}

#[tokio::test]
async fn text_and_binary_frames_flow_both_ways() {
    let addr = echo_server(EndpointOptions::new()).await;
    let (mut transport, session) = connector(addr).connect().await.unwrap();
    assert_eq!(
        round_trip(&mut transport, text("{\"type\":6}\u{1e}")).await,
        text("{\"type\":6}\u{1e}")
    );
    let binary = Frame::Binary(Bytes::from_static(&[2, 0x91, 6, 0xff]));
    assert_eq!(round_trip(&mut transport, binary.clone()).await, binary);
    let id = session.connection_id().unwrap().to_owned();
    assert_eq!(round_trip(&mut transport, text("id")).await, text(&id));
    assert!(!session.stateful_reconnect());
    assert!(
        session
            .websocket_url()
            .as_str()
            .starts_with(&format!("ws://{addr}/hub?id="))
    );
}

#[tokio::test]
async fn a_clean_close_ends_the_stream_on_both_sides() {
    let addr = echo_server(EndpointOptions::new()).await;
    let (mut transport, _) = connector(addr).connect().await.unwrap();
    transport.send(text("bye")).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), transport.next())
        .await
        .unwrap();
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn the_access_token_reaches_the_hook_and_the_transport() {
    let endpoint = HubEndpoint::new(Guarded("good"));
    let addr = serve(endpoint.router("/hub")).await;
    assert_eq!(
        status(connector(addr).connect().await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(connector(addr).access_token("bad").connect().await),
        StatusCode::UNAUTHORIZED
    );
    let (mut transport, mut session) = connector(addr)
        .access_token("good")
        .connect()
        .await
        .unwrap();
    assert_eq!(
        round_trip(&mut transport, text("token")).await,
        text("good")
    );
    // Re-opening sends the session's current token.
    session.set_access_token("expired");
    assert_eq!(status(session.reopen().await), StatusCode::UNAUTHORIZED);

    // A WebSocket carrying the token in the query, as browsers send it, is admitted too; without it, refused.
    let negotiate = |addr| async move {
        let response = http(
            addr,
            "POST",
            "/hub/negotiate?negotiateVersion=1",
            "Authorization: Bearer good\r\n",
        )
        .await;
        let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        format!(
            "http://{addr}/hub?id={}",
            body["connectionToken"].as_str().unwrap()
        )
    };
    let url = negotiate(addr).await;
    let refused = HttpConnector::new(&url)
        .unwrap()
        .skip_negotiation(true)
        .connect()
        .await;
    assert_eq!(status(refused), StatusCode::UNAUTHORIZED);
    let url = format!("{url}&access_token=good");
    let (mut transport, _) = HttpConnector::new(&url)
        .unwrap()
        .skip_negotiation(true)
        .connect()
        .await
        .unwrap();
    assert_eq!(
        round_trip(&mut transport, text("token")).await,
        text("good")
    );
}

#[tokio::test]
async fn an_unknown_id_gets_404() {
    let addr = echo_server(EndpointOptions::new()).await;
    let url = format!("http://{addr}/hub?id=AbCdEfGhIjKlMnOpQrStUw");
    assert_eq!(
        status(
            HttpConnector::new(&url)
                .unwrap()
                .skip_negotiation(true)
                .connect()
                .await
        ),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_second_websocket_for_an_active_connection_gets_409() {
    let addr = echo_server(EndpointOptions::new()).await;
    let (_transport, session) = connector(addr).connect().await.unwrap();
    assert_eq!(status(session.reopen().await), StatusCode::CONFLICT);
}

#[tokio::test]
async fn skip_negotiation_opens_a_connection_without_an_id() {
    let addr = echo_server(EndpointOptions::new()).await;
    let (mut transport, session) = connector(addr)
        .skip_negotiation(true)
        .connect()
        .await
        .unwrap();
    assert_eq!(session.connection_id(), None);
    assert_eq!(session.websocket_url().as_str(), format!("ws://{addr}/hub"));
    let Frame::Text(id) = round_trip(&mut transport, text("id")).await else {
        panic!("expected text")
    };
    assert_eq!(id.len(), 22);
}

#[tokio::test]
async fn version_0_servers_take_the_connection_id_as_id() {
    let addr = echo_server(EndpointOptions::new()).await;
    let url = format!("http://{addr}/hub?negotiateVersion=0");
    let (mut transport, session) = HttpConnector::new(&url).unwrap().connect().await.unwrap();
    assert_eq!(session.connection_token(), session.connection_id());
    let id = session.connection_id().unwrap().to_owned();
    assert_eq!(round_trip(&mut transport, text("id")).await, text(&id));
}

#[tokio::test]
async fn other_requests_get_the_dispatcher_status_codes() {
    let addr = echo_server(EndpointOptions::new()).await;
    let (_transport, session) = connector(addr).connect().await.unwrap();
    let known = format!("/hub?id={}", session.connection_token().unwrap());
    let cases = [
        (
            "POST",
            known.as_str(),
            405,
            "POST requests are not allowed for WebSocket connections.",
        ),
        ("POST", "/hub", 400, "Connection ID required"),
        ("POST", "/hub?id=", 400, "Connection ID required"),
        ("POST", "/hub?id=nope", 404, "No Connection with that ID"),
        ("GET", "/hub", 400, "Connection ID required"),
        ("GET", "/hub?id=nope", 404, "No Connection with that ID"),
        (
            "GET",
            known.as_str(),
            404,
            "LongPolling transport not supported by this end point type",
        ),
        (
            "DELETE",
            known.as_str(),
            400,
            "Cannot terminate this connection using the DELETE endpoint.",
        ),
        ("PUT", known.as_str(), 405, ""),
    ];
    for (method, target, status, body) in cases {
        let response = http(addr, method, target, "").await;
        assert_eq!(
            (response.status, response.body.as_str()),
            (status, body),
            "{method} {target}"
        );
    }
    let sse = http(addr, "GET", &known, "Accept: text/event-stream\r\n").await;
    assert_eq!(
        (sse.status, sse.body.as_str()),
        (
            404,
            "ServerSentEvents transport not supported by this end point type"
        )
    );
}

#[tokio::test]
async fn a_negotiated_connection_that_never_opens_is_reaped() {
    let addr =
        echo_server(EndpointOptions::new().disconnect_timeout(Duration::from_millis(100))).await;
    let response = http(addr, "POST", "/hub/negotiate?negotiateVersion=1", "").await;
    let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = format!(
        "http://{addr}/hub?id={}",
        body["connectionToken"].as_str().unwrap()
    );
    assert_eq!(
        status(
            HttpConnector::new(&url)
                .unwrap()
                .skip_negotiation(true)
                .connect()
                .await
        ),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_stateful_connection_is_reattached_after_its_websocket_is_killed() {
    let addr = echo_server(EndpointOptions::new().allow_stateful_reconnects(true)).await;
    let (mut transport, session) = connector(addr)
        .stateful_reconnect(true)
        .connect()
        .await
        .unwrap();
    assert!(session.stateful_reconnect());
    let id = session.connection_id().unwrap().to_owned();
    assert_eq!(round_trip(&mut transport, text("id")).await, text(&id));
    // Dropping the client transport drops its TCP connection without a close handshake. The client re-opens at
    // once, as the JavaScript client does (once): the server may not have noticed the drop yet.
    drop(transport);
    let mut transport = session.reopen().await.unwrap();
    assert_eq!(round_trip(&mut transport, text("id")).await, text(&id));
    assert_eq!(
        round_trip(&mut transport, text("still echoing")).await,
        text("still echoing")
    );
}

#[tokio::test]
async fn a_new_websocket_takes_over_a_stateful_connection_whose_old_one_looks_alive() {
    let addr = echo_server(EndpointOptions::new().allow_stateful_reconnects(true)).await;
    let (mut old, session) = connector(addr)
        .stateful_reconnect(true)
        .connect()
        .await
        .unwrap();
    let id = session.connection_id().unwrap().to_owned();
    assert_eq!(round_trip(&mut old, text("id")).await, text(&id));
    let mut new = session.reopen().await.unwrap();
    assert_eq!(round_trip(&mut new, text("id")).await, text(&id));
    let end = tokio::time::timeout(Duration::from_secs(5), old.next())
        .await
        .unwrap();
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");
}

#[tokio::test]
async fn a_stateful_connection_expires_after_the_disconnect_timeout() {
    let options = EndpointOptions::new()
        .allow_stateful_reconnects(true)
        .disconnect_timeout(Duration::from_millis(200));
    let addr = echo_server(options).await;
    let (transport, session) = connector(addr)
        .stateful_reconnect(true)
        .connect()
        .await
        .unwrap();
    drop(transport);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status(session.reopen().await), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_connection_without_stateful_reconnect_is_gone_with_its_websocket() {
    let addr = echo_server(EndpointOptions::new().allow_stateful_reconnects(true)).await;
    let (transport, session) = connector(addr).connect().await.unwrap();
    drop(transport);
    let mut last = StatusCode::CONFLICT;
    for _ in 0..100 {
        last = status(session.reopen().await);
        if last != StatusCode::CONFLICT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_message_above_the_limit_fails_the_transport() {
    let addr = echo_server(EndpointOptions::new().max_message_size(1024)).await;
    let (mut transport, _) = connector(addr).connect().await.unwrap();
    assert_eq!(
        round_trip(&mut transport, text(&"a".repeat(1024))).await,
        text(&"a".repeat(1024))
    );
    transport.send(text(&"a".repeat(1025))).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), transport.next())
        .await
        .unwrap();
    assert!(matches!(next, None | Some(Err(_))), "{next:?}");
}

#[tokio::test]
async fn messages_many_times_the_read_buffer_flow_both_ways() {
    let addr = echo_server(EndpointOptions::new().read_buffer_size(512)).await;
    let (mut transport, _) = connector(addr)
        .read_buffer_size(512)
        .connect()
        .await
        .unwrap();
    let big = "b".repeat(40_000);
    assert_eq!(round_trip(&mut transport, text(&big)).await, text(&big));
}

#[tokio::test]
async fn the_client_follows_redirects_with_their_access_token() {
    let hub = serve(HubEndpoint::new(Guarded("redirected")).router("/hub")).await;
    let redirect = axum::Router::new().route(
        "/entry/negotiate",
        post(move || async move {
            Json(json!({"url": format!("http://{hub}/hub"), "accessToken": "redirected"}))
        }),
    );
    let entry = serve(redirect).await;
    let (mut transport, session) = HttpConnector::new(&format!("http://{entry}/entry"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert!(
        session
            .websocket_url()
            .as_str()
            .starts_with(&format!("ws://{hub}/hub?id="))
    );
    assert_eq!(
        round_trip(&mut transport, text("token")).await,
        text("redirected")
    );
}

#[tokio::test]
async fn negotiate_failures_surface_as_errors() {
    let app = axum::Router::new()
        .route("/loop/negotiate", post(|| async { Json(json!({"url": "http://127.0.0.1:1/loop"})) }))
        .route("/relative/negotiate", post(|| async { Json(json!({"url": "/hub"})) }))
        .route("/refused/negotiate", post(|| async { Json(json!({"error": "This connection is not allowed."})) }))
        .route("/nows/negotiate", post(|| async {
            Json(json!({"negotiateVersion": 1, "connectionId": "a", "connectionToken": "b",
                "availableTransports": [{"transport": "LongPolling", "transferFormats": ["Text", "Binary"]}]}))
        }))
        .route("/granted/negotiate", post(|| async {
            Json(json!({"useStatefulReconnect": true, "negotiateVersion": 1, "connectionId": "a", "connectionToken": "b",
                "availableTransports": [{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}]}))
        }));
    let addr = serve(app).await;
    let connect = |path: &str| HttpConnector::new(&format!("http://{addr}/{path}")).unwrap();

    let refused = connect("refused").connect().await.unwrap_err();
    assert_eq!(refused.to_string(), "This connection is not allowed.");
    assert!(matches!(
        connect("relative").connect().await,
        Err(ConnectError::InvalidUrl(_))
    ));
    assert!(matches!(
        HttpConnector::new("ftp://example.com/hub"),
        Err(ConnectError::InvalidUrl(_))
    ));
    assert!(matches!(
        connect("nows").connect().await,
        Err(ConnectError::WebSocketsUnavailable)
    ));
    assert!(matches!(
        connect("granted").connect().await,
        Err(ConnectError::UnrequestedStatefulReconnect)
    ));
    assert_eq!(
        status(connect("missing").connect().await),
        StatusCode::NOT_FOUND
    );
    // A redirect to a dead port fails to connect rather than looping.
    assert!(matches!(
        connect("loop").connect().await,
        Err(ConnectError::Io(_))
    ));
}

#[tokio::test]
async fn endless_redirects_stop_after_100() {
    let app = axum::Router::new().route(
        "/loop/negotiate",
        post(|headers: axum::http::HeaderMap| async move {
            let host = headers["host"].to_str().unwrap().to_owned();
            Json(json!({"url": format!("http://{host}/loop")}))
        }),
    );
    let addr = serve(app).await;
    let result = HttpConnector::new(&format!("http://{addr}/loop"))
        .unwrap()
        .connect()
        .await;
    assert!(
        matches!(result, Err(ConnectError::TooManyRedirects)),
        "{result:?}"
    );
}

#[tokio::test]
async fn transport_errors_are_transport_errors() {
    // A server that accepts the WebSocket and drops it at once: the client sees a reset, not a clean end.
    let app = axum::Router::new().route(
        "/drop",
        axum::routing::get(|ws: axum::extract::ws::WebSocketUpgrade| async move {
            ws.on_upgrade(|socket| async move { drop(socket) })
        }),
    );
    let addr = serve(app).await;
    let (mut transport, _) = HttpConnector::new(&format!("http://{addr}/drop"))
        .unwrap()
        .skip_negotiation(true)
        .connect()
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), transport.next())
        .await
        .unwrap();
    assert!(
        matches!(
            next,
            Some(Err(TransportError::Reset | TransportError::Io(_)))
        ),
        "{next:?}"
    );
}

#[tokio::test]
async fn a_close_with_an_error_code_is_an_error_with_the_javascript_text() {
    use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
    let app = axum::Router::new().route(
        "/fault",
        axum::routing::get(|ws: WebSocketUpgrade| async move {
            ws.on_upgrade(|mut socket| async move {
                let close = CloseFrame {
                    code: 1011,
                    reason: "send loop faulted".into(),
                };
                let _ = socket.send(Message::Close(Some(close))).await;
            })
        }),
    );
    let addr = serve(app).await;
    let (mut transport, _) = HttpConnector::new(&format!("http://{addr}/fault"))
        .unwrap()
        .skip_negotiation(true)
        .connect()
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), transport.next())
        .await
        .unwrap();
    let Some(Err(error)) = next else {
        panic!("expected an error, got {next:?}")
    };
    assert_eq!(
        error.to_string(),
        "transport protocol error: WebSocket closed with status code: 1011 (send loop faulted)."
    );
}
