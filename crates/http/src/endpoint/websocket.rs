//! Requests on `{path}`: the WebSocket transport, and the status codes of ASP.NET Core's dispatcher for the
//! transports this endpoint does not serve (HUB-PROTOCOL.md §2.2, §2.5).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{ACCEPT, UPGRADE};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use courier::TransportInfo;
use courier::server::Identity;
use futures::SinkExt;

use super::registry::{Action, Claim, Refusal};
use super::{ConnectionHandler, NewConnection, Shared};
use crate::ids::new_id;
use crate::server_transport::{Ending, WebSocketTransport};

const NO_CONNECTION: &str = "No Connection with that ID";
const ID_REQUIRED: &str = "Connection ID required";
/// How long closing a WebSocket the endpoint refuses may take (ASP.NET Core's `WebSocketOptions.CloseTimeout`).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A query parameter, decoded, its name matched ignoring ASCII case as ASP.NET Core does.
pub(super) fn query_value(parts: &Parts, name: &str) -> Option<String> {
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.into_owned())
}

pub(super) async fn connection<H: ConnectionHandler>(
    State(shared): State<Arc<Shared<H>>>,
    request: Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let info = Shared::<H>::transport_info(&parts);
    let Some(identity) = shared.handler.authenticate(&info).await else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    // An empty id counts as none, as in ASP.NET Core.
    let id = query_value(&parts, "id").filter(|id| !id.is_empty());
    match parts.method {
        Method::GET => match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => websocket(&shared, upgrade, id, info, identity),
            Err(rejection) if parts.headers.contains_key(UPGRADE) => rejection.into_response(),
            Err(_) => {
                let event_stream = parts
                    .headers
                    .get(ACCEPT)
                    .and_then(|accept| accept.to_str().ok())
                    .is_some_and(|accept| accept.contains("text/event-stream"));
                let transport = if event_stream {
                    "ServerSentEvents"
                } else {
                    "LongPolling"
                };
                known_id(&shared, id.as_deref()).unwrap_or_else(|| {
                    (
                        StatusCode::NOT_FOUND,
                        format!("{transport} transport not supported by this end point type"),
                    )
                        .into_response()
                })
            }
        },
        Method::POST => known_id(&shared, id.as_deref()).unwrap_or_else(|| {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "POST requests are not allowed for WebSocket connections.",
            )
                .into_response()
        }),
        Method::DELETE => known_id(&shared, id.as_deref()).unwrap_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                "Cannot terminate this connection using the DELETE endpoint.",
            )
                .into_response()
        }),
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// The response for a missing or unknown id; `None` when the id names a connection.
fn known_id<H: ConnectionHandler>(shared: &Shared<H>, id: Option<&str>) -> Option<Response> {
    match id {
        None => Some((StatusCode::BAD_REQUEST, ID_REQUIRED).into_response()),
        Some(id) if !shared.registry.contains(id) => {
            Some((StatusCode::NOT_FOUND, NO_CONNECTION).into_response())
        }
        Some(_) => None,
    }
}

/// Upgrades a WebSocket request: a negotiated connection's first or re-attached WebSocket, or (without `id`) a
/// connection made on the spot.
fn websocket<H: ConnectionHandler>(
    shared: &Arc<Shared<H>>,
    upgrade: WebSocketUpgrade,
    id: Option<String>,
    info: TransportInfo,
    identity: Identity,
) -> Response {
    let size = shared.options.max_message_size;
    let upgrade = upgrade
        .max_message_size(size)
        .max_frame_size(size)
        .read_buffer_size(shared.options.read_buffer_size);
    let Some(token) = id else {
        let Ok(connection_id) = new_id() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let shared = Arc::clone(shared);
        return upgrade.on_upgrade(move |socket| async move {
            let (transport, ended) = WebSocketTransport::new(socket, info, None);
            let new = NewConnection {
                connection_id,
                stateful_reconnect: false,
                identity,
            };
            // The handle lives as long as the WebSocket: nothing else can name this connection. The connect future
            // is boxed so that this task, which lives as long as the connection, is not as large as it.
            let _connection = Box::pin(shared.handler.connect(transport, new)).await;
            let _ = ended.await;
        });
    };
    let Claim {
        action,
        lease,
        superseded,
    } = match shared.registry.claim(&token) {
        Ok(claim) => claim,
        Err(Refusal::Unknown) => return (StatusCode::NOT_FOUND, NO_CONNECTION).into_response(),
        Err(Refusal::Conflict) => return StatusCode::CONFLICT.into_response(),
    };
    if let Action::Reattach(connection) = &action
        && shared.handler.has_ended(connection)
    {
        // The connection ended before the endpoint's disconnect timeout reaped its id.
        shared.registry.remove(&token, lease);
        return (StatusCode::NOT_FOUND, NO_CONNECTION).into_response();
    }
    let (failed, failed_token) = (Arc::clone(shared), token.clone());
    let shared = Arc::clone(shared);
    upgrade
        .on_failed_upgrade(move |_| {
            failed
                .registry
                .released(&failed_token, lease, Ending::Broken);
        })
        .on_upgrade(move |socket| async move {
            let (transport, ended) = WebSocketTransport::new(socket, info, Some(superseded));
            match action {
                Action::Start {
                    connection_id,
                    stateful,
                } => {
                    let new = NewConnection {
                        connection_id,
                        stateful_reconnect: stateful,
                        identity,
                    };
                    // Boxed, as above: this task lives as long as the connection.
                    match Box::pin(shared.handler.connect(transport, new)).await {
                        Some(connection) => {
                            shared.registry.started(&token, lease, Arc::new(connection));
                        }
                        None => return shared.registry.remove(&token, lease),
                    }
                }
                Action::Reattach(connection) => {
                    if let Err(mut transport) =
                        Box::pin(shared.handler.reattach(&connection, transport)).await
                    {
                        // The connection ended after the upgrade began: end the WebSocket with a close frame.
                        shared.registry.remove(&token, lease);
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, transport.close()).await;
                        return;
                    }
                }
            }
            let ending = ended.await.unwrap_or(Ending::Dropped);
            shared.registry.released(&token, lease, ending);
        })
}
