//! `POST {path}/negotiate` (HUB-PROTOCOL.md §2.1).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use courier_protocol::ProtocolError;
use courier_protocol::negotiate::{
    AvailableTransport, NEGOTIATE_VERSION, NegotiateRequest, NegotiateResponse,
};

use super::{ConnectionHandler, Shared};
use crate::ids::new_id;

/// The lowest negotiate version served (`MinimumProtocolVersion`).
const MINIMUM_VERSION: i32 = 0;

pub(super) async fn negotiate<H: ConnectionHandler>(
    State(shared): State<Arc<Shared<H>>>,
    request: Request,
) -> Response {
    let (parts, _body) = request.into_parts();
    if parts.method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let info = Shared::<H>::transport_info(&parts);
    if shared.handler.authenticate(&info).await.is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let body = match NegotiateRequest::from_query(parts.uri.query().unwrap_or("")) {
        Ok(request) if request.negotiate_version < MINIMUM_VERSION => {
            NegotiateResponse::error(format!(
                "The client requested version '{}', but the server does not support this version.",
                request.negotiate_version
            ))
        }
        Ok(request) => match connection(&shared, request) {
            Ok(response) => response,
            Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
        Err(ProtocolError::InvalidNegotiate(text)) => NegotiateResponse::error(text),
        Err(other) => NegotiateResponse::error(other.to_string()),
    };
    // Serialising plain strings, numbers and lists cannot fail.
    let json = serde_json::to_vec(&body).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// Registers a new connection and describes it.
fn connection<H: ConnectionHandler>(
    shared: &Arc<Shared<H>>,
    request: NegotiateRequest,
) -> Result<NegotiateResponse, getrandom::Error> {
    let version = request.negotiate_version.min(NEGOTIATE_VERSION);
    let stateful = request.use_stateful_reconnect && shared.options.allow_stateful_reconnects;
    let connection_id = new_id()?;
    // Version 0 clients put the connection id itself in `id=`.
    let token = if version > 0 {
        new_id()?
    } else {
        connection_id.clone()
    };
    shared
        .registry
        .negotiated(token.clone(), connection_id.clone(), stateful);
    Ok(NegotiateResponse {
        use_stateful_reconnect: stateful,
        negotiate_version: Some(version),
        connection_id: Some(connection_id),
        connection_token: (version > 0).then_some(token),
        available_transports: Some(vec![AvailableTransport::web_sockets()]),
        ..NegotiateResponse::default()
    })
}
