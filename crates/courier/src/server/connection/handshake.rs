//! The server side of the handshake (HUB-PROTOCOL.md §3).

use bytes::{Bytes, BytesMut};
use courier_protocol::handshake::{HandshakeRequest, HandshakeResponse};
use courier_protocol::{Protocol, ProtocolError};
use futures::{SinkExt, StreamExt};
use std::time::Duration;

use tokio::time::Instant;

use crate::server::HubOptions;
use crate::{Frame, Transport};

/// A completed handshake.
pub(super) struct Agreed {
    pub(super) protocol: Protocol,
    pub(super) version: i32,
    /// Bytes that followed the request in the same frames: the first hub messages.
    pub(super) leftover: Bytes,
}

const CANCELED: &str = "Handshake was canceled.";
const UNEXPECTED: &str = "An unexpected error occurred during connection handshake.";

/// Reads the client's request within the handshake timeout and answers it. `None` means the handshake failed (the
/// error response, if any, was sent) and the connection ends.
pub(super) async fn run(transport: &mut dyn Transport, options: &HubOptions) -> Option<Agreed> {
    let deadline = Instant::now() + options.handshake_timeout;
    let mut received = BytesMut::new();
    loop {
        match HandshakeRequest::parse(&received, options.maximum_receive_message_size) {
            Ok(Some((request, used))) => {
                let protocol = match check(&request, transport.info().supports_binary) {
                    Ok(protocol) => protocol,
                    Err(error) => {
                        return refuse(transport, options.send_timeout, error).await;
                    }
                };
                let frame = match protocol {
                    Protocol::Json => Frame::Text,
                    Protocol::MessagePack => Frame::Binary,
                };
                if !respond(
                    transport,
                    options.send_timeout,
                    frame,
                    HandshakeResponse::success(),
                )
                .await
                {
                    return None;
                }
                let leftover = received.split_off(used).freeze();
                return Some(Agreed {
                    protocol,
                    version: request.version,
                    leftover,
                });
            }
            Ok(None) => {}
            Err(ProtocolError::MessageTooLarge { .. }) => {
                return refuse(transport, options.send_timeout, CANCELED).await;
            }
            Err(error) => {
                let text = if options.enable_detailed_errors {
                    format!("{UNEXPECTED} InvalidDataException: {error}")
                } else {
                    UNEXPECTED.to_owned()
                };
                return refuse(transport, options.send_timeout, text).await;
            }
        }
        match tokio::time::timeout_at(deadline, transport.next()).await {
            Ok(Some(Ok(frame))) => received.extend_from_slice(frame.payload()),
            // The client went away: nobody to answer.
            Ok(None | Some(Err(_))) => return None,
            Err(_) => {
                return refuse(transport, options.send_timeout, CANCELED).await;
            }
        }
    }
}

/// The protocol the request may use, or the error text for the response (texts as ASP.NET Core's).
fn check(request: &HandshakeRequest, supports_binary: bool) -> Result<Protocol, String> {
    let Some(protocol) = request.known_protocol() else {
        return Err(format!(
            "The protocol '{}' is not supported.",
            request.protocol
        ));
    };
    if request.version > Protocol::VERSION {
        return Err(format!(
            "The server does not support version {} of the '{}' protocol.",
            request.version, protocol
        ));
    }
    if protocol == Protocol::MessagePack && !supports_binary {
        return Err(format!(
            "Cannot use the '{protocol}' protocol on the current transport. The transport does not support 'Binary' \
             transfer format."
        ));
    }
    Ok(protocol)
}

/// Answers the request with a handshake error (always a text frame, as .NET); the connection then ends.
async fn refuse(
    transport: &mut dyn Transport,
    send_timeout: Duration,
    error: impl Into<String>,
) -> Option<Agreed> {
    respond(
        transport,
        send_timeout,
        Frame::Text,
        HandshakeResponse::error(error),
    )
    .await;
    None
}

/// Sends a handshake response within the send timeout; whether it was sent.
async fn respond(
    transport: &mut dyn Transport,
    send_timeout: Duration,
    frame: fn(Bytes) -> Frame,
    response: HandshakeResponse,
) -> bool {
    let mut out = BytesMut::new();
    response.write(&mut out);
    matches!(
        tokio::time::timeout(send_timeout, transport.send(frame(out.freeze()))).await,
        Ok(Ok(()))
    )
}
