//! The negotiate exchange (HUB-PROTOCOL.md §2.1): `POST {hub}/negotiate?negotiateVersion=1`,
//! answered with a JSON document, before the transport is opened.
//!
//! The types are plain serde types; serialising a [`NegotiateResponse`] with `serde_json`
//! writes the keys in the order .NET writes them, so the bytes match the official server.
//!
//! ```
//! use courier_protocol::negotiate::{AvailableTransport, NegotiateResponse};
//!
//! let response = NegotiateResponse {
//!     negotiate_version: Some(1),
//!     connection_id: Some("AbCdEfGhIjKlMnOpQrStUw".into()),
//!     connection_token: Some("zYxWvUtSrQpOnMlKjIhGfE".into()),
//!     available_transports: Some(vec![AvailableTransport::web_sockets()]),
//!     ..NegotiateResponse::default()
//! };
//! let json = serde_json::to_string(&response).unwrap();
//! assert_eq!(
//!     json,
//!     r#"{"negotiateVersion":1,"connectionId":"AbCdEfGhIjKlMnOpQrStUw","connectionToken":"zYxWvUtSrQpOnMlKjIhGfE","availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]}]}"#
//! );
//! assert_eq!(NegotiateResponse::parse(json.as_bytes())?, response);
//! # Ok::<(), courier_protocol::ProtocolError>(())
//! ```

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::ProtocolError;

/// The highest negotiate version (1: the response carries a separate secret `connectionToken`).
pub const NEGOTIATE_VERSION: i32 = 1;

/// The query of a negotiate request, as a server reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NegotiateRequest {
    /// `negotiateVersion`: 0 when absent. Servers clamp values above [`NEGOTIATE_VERSION`].
    pub negotiate_version: i32,
    /// `useStatefulReconnect=true`: the client would like stateful reconnect.
    pub use_stateful_reconnect: bool,
}

impl NegotiateRequest {
    /// Reads the request query (the part after `?`, without it). Parameter names are matched
    /// ignoring ASCII case, as .NET does; unknown parameters are ignored. A `negotiateVersion`
    /// that is not an integer fails with .NET's text.
    pub fn from_query(query: &str) -> Result<Self, ProtocolError> {
        let mut request = Self::default();
        for (name, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            if name.eq_ignore_ascii_case("negotiateVersion") {
                request.negotiate_version = value.parse().map_err(|_| {
                    ProtocolError::InvalidNegotiate(
                        "The client requested a non-integer protocol version.".into(),
                    )
                })?;
            } else if name.eq_ignore_ascii_case("useStatefulReconnect") {
                request.use_stateful_reconnect = value.eq_ignore_ascii_case("true");
            }
        }
        Ok(request)
    }

    /// The query a client sends, e.g. `negotiateVersion=1&useStatefulReconnect=true`.
    pub fn to_query(&self) -> String {
        let mut query = format!("negotiateVersion={}", self.negotiate_version);
        if self.use_stateful_reconnect {
            query.push_str("&useStatefulReconnect=true");
        }
        query
    }
}

/// The negotiate response body. One type covers the three shapes .NET clients accept:
/// a connection (`connection_id`, `available_transports`, and for version 1 `connection_token`),
/// a redirect (`url`, `access_token`), or an error (`error` alone). Absent fields are not written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NegotiateResponse {
    /// Stateful reconnect was granted (written, first, only when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_stateful_reconnect: bool,
    /// The negotiate version the server chose (0 or 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negotiate_version: Option<i32>,
    /// Redirect: negotiate again against this URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Redirect: the bearer token to use at `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// The public connection id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The secret id for transport requests (`id=`); version 1 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_token: Option<String>,
    /// The transports the client may use, in the server's order of preference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_transports: Option<Vec<AvailableTransport>>,
    /// Negotiation failed with this message (still HTTP 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What [`NegotiateResponse::parse`] reads, including the key that betrays a legacy server.
#[derive(Deserialize)]
struct WireResponse {
    #[serde(flatten)]
    response: NegotiateResponse,
    #[serde(rename = "ProtocolVersion")]
    legacy_protocol_version: Option<IgnoredAny>,
}

impl NegotiateResponse {
    /// An error response, `{"error":"..."}`.
    pub fn error(error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
            ..Self::default()
        }
    }

    /// Parses a response body as the .NET client does: a redirect needs only `url`, an error only
    /// `error`; otherwise `connectionId` and `availableTransports` are required, and
    /// `connectionToken` too for version 1 and above. A response of the old ASP.NET SignalR
    /// (non-Core) is rejected with .NET's explanation.
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        let wire: WireResponse = serde_json::from_slice(body)
            .map_err(|e| ProtocolError::InvalidNegotiate(e.to_string()))?;
        if wire.legacy_protocol_version.is_some() {
            return Err(ProtocolError::InvalidNegotiate(
                "Detected a connection attempt to an ASP.NET SignalR Server. This client only supports connecting to an \
                 ASP.NET Core SignalR Server. See https://aka.ms/signalr-core-differences for details."
                    .into(),
            ));
        }
        let response = wire.response;
        if response.url.is_none() && response.error.is_none() {
            let missing = |name: &str| {
                ProtocolError::InvalidNegotiate(format!("Missing required property '{name}'."))
            };
            if response.connection_id.is_none() {
                return Err(missing("connectionId"));
            }
            if response.negotiate_version.unwrap_or(0) > 0 && response.connection_token.is_none() {
                return Err(missing("connectionToken"));
            }
            if response.available_transports.is_none() {
                return Err(missing("availableTransports"));
            }
        }
        Ok(response)
    }
}

/// One entry of `availableTransports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailableTransport {
    /// The transport.
    pub transport: TransportKind,
    /// The formats it can carry.
    pub transfer_formats: Vec<TransferFormat>,
}

impl AvailableTransport {
    /// WebSockets, `["Text","Binary"]`.
    pub fn web_sockets() -> Self {
        Self {
            transport: TransportKind::WebSockets,
            transfer_formats: vec![TransferFormat::Text, TransferFormat::Binary],
        }
    }

    /// Server-Sent Events, `["Text"]`.
    pub fn server_sent_events() -> Self {
        Self {
            transport: TransportKind::ServerSentEvents,
            transfer_formats: vec![TransferFormat::Text],
        }
    }

    /// Long Polling, `["Text","Binary"]`.
    pub fn long_polling() -> Self {
        Self {
            transport: TransportKind::LongPolling,
            transfer_formats: vec![TransferFormat::Text, TransferFormat::Binary],
        }
    }
}

/// A transport name. Names this crate does not know are kept (clients skip them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum TransportKind {
    /// `WebSockets`.
    WebSockets,
    /// `ServerSentEvents`.
    ServerSentEvents,
    /// `LongPolling`.
    LongPolling,
    /// Any other name.
    Other(String),
}

impl TransportKind {
    /// The name on the wire.
    pub fn name(&self) -> &str {
        match self {
            Self::WebSockets => "WebSockets",
            Self::ServerSentEvents => "ServerSentEvents",
            Self::LongPolling => "LongPolling",
            Self::Other(name) => name,
        }
    }
}

impl From<String> for TransportKind {
    fn from(name: String) -> Self {
        match name.as_str() {
            "WebSockets" => Self::WebSockets,
            "ServerSentEvents" => Self::ServerSentEvents,
            "LongPolling" => Self::LongPolling,
            _ => Self::Other(name),
        }
    }
}

impl From<TransportKind> for String {
    fn from(kind: TransportKind) -> Self {
        match kind {
            TransportKind::Other(name) => name,
            known => known.name().to_owned(),
        }
    }
}

/// How a transport carries messages: text (JSON) or binary (MessagePack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransferFormat {
    /// UTF-8 text: WebSocket text frames, SSE.
    Text,
    /// Arbitrary bytes: WebSocket binary frames, Long Polling.
    Binary,
}
