//! A scripted client for driving the hub over the in-memory transport, with readable message builders (the h2
//! test style).
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use bytes::BytesMut;
use courier::server::{ConnectionHandle, ConnectionOptions, Hub};
use courier::transport::memory::{self, MemoryTransport};
use courier::{Frame, TransportInfo};
use courier_protocol::handshake::{HandshakeRequest, HandshakeResponse};
use courier_protocol::{
    CancelInvocation, Close, Completion, CompletionResult, Headers, HubMessage, Invocation,
    MessageReader, Payload, Protocol, StreamInvocation, StreamItem,
};
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub const PROTOCOLS: [Protocol; 2] = [Protocol::Json, Protocol::MessagePack];

/// The client end of one connection.
pub struct Peer {
    pub transport: MemoryTransport,
    pub protocol: Protocol,
    reader: MessageReader,
    /// Frame kinds received, in order (true = text).
    pub text_frames: Vec<bool>,
}

impl Peer {
    /// Opens a transport to the hub without a handshake.
    pub async fn open(hub: &Hub, protocol: Protocol) -> (Self, ConnectionHandle) {
        Self::open_with(
            hub,
            protocol,
            TransportInfo::new(),
            ConnectionOptions::default(),
        )
        .await
    }

    pub async fn open_with(
        hub: &Hub,
        protocol: Protocol,
        info: TransportInfo,
        options: ConnectionOptions,
    ) -> (Self, ConnectionHandle) {
        let (server, client) = memory::pair_with(info, 64);
        let handle = hub.accept(server, options).await.expect("accepted");
        (Self::over(client, protocol), handle)
    }

    /// A peer over an already open transport (after a reattach, say).
    pub fn over(transport: MemoryTransport, protocol: Protocol) -> Self {
        Self {
            transport,
            protocol,
            reader: MessageReader::new(protocol, None),
            text_frames: Vec::new(),
        }
    }

    /// Opens a connection and completes the handshake at `version` 1.
    pub async fn connect(hub: &Hub, protocol: Protocol) -> (Self, ConnectionHandle) {
        let (mut peer, handle) = Self::open(hub, protocol).await;
        peer.handshake(1).await;
        (peer, handle)
    }

    /// Sends the handshake request and expects success.
    pub async fn handshake(&mut self, version: i32) {
        let mut out = BytesMut::new();
        HandshakeRequest::new(self.protocol, version).write(&mut out);
        self.send_frame(Frame::Text(out.freeze())).await;
        assert_eq!(
            self.handshake_response().await,
            HandshakeResponse::success()
        );
    }

    /// Reads the handshake response (the whole first frame must be it).
    pub async fn handshake_response(&mut self) -> HandshakeResponse {
        let frame = self.next_frame().await.expect("a handshake response");
        let (response, used) = HandshakeResponse::parse(frame.payload(), None)
            .expect("valid response")
            .expect("complete response");
        self.reader.push(&frame.payload()[used..]);
        response
    }

    /// Closes the transport cleanly.
    pub async fn close(&mut self) {
        self.transport.close().await.expect("closable");
    }

    pub async fn send_frame(&mut self, frame: Frame) {
        self.transport.send(frame).await.expect("server end open");
    }

    /// Sends one message in its own frame.
    pub async fn send(&mut self, message: HubMessage) {
        self.send_all(&[message]).await;
    }

    /// Sends several messages in one frame.
    pub async fn send_all(&mut self, messages: &[HubMessage]) {
        let mut out = BytesMut::new();
        for message in messages {
            self.protocol.encode(message, &mut out).expect("encodable");
        }
        let frame = match self.protocol {
            Protocol::Json => Frame::Text(out.freeze()),
            Protocol::MessagePack => Frame::Binary(out.freeze()),
        };
        self.send_frame(frame).await;
    }

    async fn next_frame(&mut self) -> Option<Frame> {
        let frame = tokio::time::timeout(Duration::from_secs(600), self.transport.next())
            .await
            .expect("the server answers within 10 minutes")?
            .ok()?;
        self.text_frames.push(matches!(frame, Frame::Text(_)));
        Some(frame)
    }

    /// The messages of the next frame (the reader must hold nothing from earlier frames).
    pub async fn recv_frame(&mut self) -> Vec<HubMessage> {
        let frame = self.next_frame().await.expect("a frame");
        self.reader.push(frame.payload());
        std::iter::from_fn(|| self.reader.next_message().expect("valid messages")).collect()
    }

    /// The next message of any type, or `None` when the server closed the transport.
    pub async fn recv_any(&mut self) -> Option<HubMessage> {
        loop {
            if let Some(message) = self
                .reader
                .next_message()
                .expect("valid messages from the server")
            {
                return Some(message);
            }
            let frame = self.next_frame().await?;
            self.reader.push(frame.payload());
        }
    }

    /// The next message that is not a Ping (the server pings whenever paused time jumps 15 s).
    pub async fn recv(&mut self) -> HubMessage {
        loop {
            match self
                .recv_any()
                .await
                .expect("a message, not the end of the connection")
            {
                HubMessage::Ping => {}
                message => return message,
            }
        }
    }

    /// Expects the server to close the transport, skipping Pings; returns the Close message if one came.
    pub async fn expect_end(&mut self) -> Option<Close> {
        let mut close = None;
        while let Some(message) = self.recv_any().await {
            match message {
                HubMessage::Close(c) => close = Some(c),
                HubMessage::Ping => {}
                other => panic!("expected the end of the connection, got {other:?}"),
            }
        }
        close
    }

    /// Invokes and returns the completion.
    pub async fn call(&mut self, id: &str, target: &str, args: &[Value]) -> Completion {
        self.send(invocation(self.protocol, Some(id), target, args))
            .await;
        expect_completion(self.recv().await)
    }

    /// Invokes and returns the result value.
    pub async fn call_ok<T: DeserializeOwned>(
        &mut self,
        id: &str,
        target: &str,
        args: &[Value],
    ) -> T {
        result(&self.call(id, target, args).await)
    }

    /// Invokes and returns the error text.
    pub async fn call_err(&mut self, id: &str, target: &str, args: &[Value]) -> String {
        error(&self.call(id, target, args).await)
    }
}

pub fn payloads(protocol: Protocol, args: &[Value]) -> Vec<Payload> {
    args.iter()
        .map(|arg| Payload::from_value(protocol, arg).expect("encodable"))
        .collect()
}

pub fn invocation(
    protocol: Protocol,
    id: Option<&str>,
    target: &str,
    args: &[Value],
) -> HubMessage {
    HubMessage::Invocation(Invocation {
        headers: Headers::new(),
        invocation_id: id.map(Into::into),
        target: target.into(),
        arguments: payloads(protocol, args),
        stream_ids: Vec::new(),
    })
}

pub fn invocation_with_streams(
    protocol: Protocol,
    id: Option<&str>,
    target: &str,
    args: &[Value],
    streams: &[&str],
) -> HubMessage {
    HubMessage::Invocation(Invocation {
        headers: Headers::new(),
        invocation_id: id.map(Into::into),
        target: target.into(),
        arguments: payloads(protocol, args),
        stream_ids: streams.iter().map(|s| (*s).into()).collect(),
    })
}

pub fn stream_invocation(protocol: Protocol, id: &str, target: &str, args: &[Value]) -> HubMessage {
    HubMessage::StreamInvocation(StreamInvocation {
        headers: Headers::new(),
        invocation_id: id.into(),
        target: target.into(),
        arguments: payloads(protocol, args),
        stream_ids: Vec::new(),
    })
}

pub fn stream_item(protocol: Protocol, id: &str, item: &Value) -> HubMessage {
    HubMessage::StreamItem(StreamItem {
        headers: Headers::new(),
        invocation_id: id.into(),
        item: Payload::from_value(protocol, item).expect("encodable"),
    })
}

pub fn cancel(id: &str) -> HubMessage {
    HubMessage::CancelInvocation(CancelInvocation {
        headers: Headers::new(),
        invocation_id: id.into(),
    })
}

pub fn completion(id: &str, result: CompletionResult) -> HubMessage {
    HubMessage::Completion(Completion {
        headers: Headers::new(),
        invocation_id: id.into(),
        result,
    })
}

pub fn completion_value(protocol: Protocol, id: &str, value: &Value) -> HubMessage {
    completion(
        id,
        CompletionResult::Value(Payload::from_value(protocol, value).expect("encodable")),
    )
}

pub fn completion_error(id: &str, error: &str) -> HubMessage {
    completion(id, CompletionResult::Error(error.into()))
}

pub fn expect_completion(message: HubMessage) -> Completion {
    match message {
        HubMessage::Completion(completion) => completion,
        other => panic!("expected a completion, got {other:?}"),
    }
}

pub fn expect_invocation(message: HubMessage) -> Invocation {
    match message {
        HubMessage::Invocation(invocation) => invocation,
        other => panic!("expected an invocation, got {other:?}"),
    }
}

pub fn result<T: DeserializeOwned>(completion: &Completion) -> T {
    match &completion.result {
        CompletionResult::Value(payload) => {
            payload.deserialize().expect("result of the expected type")
        }
        other => panic!("expected a result, got {other:?}"),
    }
}

pub fn error(completion: &Completion) -> String {
    match &completion.result {
        CompletionResult::Error(error) => error.to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The first argument of an invocation.
pub fn arg<T: DeserializeOwned>(invocation: &Invocation, index: usize) -> T {
    invocation.arguments[index]
        .deserialize()
        .expect("argument of the expected type")
}
