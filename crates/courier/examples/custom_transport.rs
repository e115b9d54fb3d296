//! A hub carried over a custom transport: length-prefixed frames on a plain TCP stream.
//!
//! Any ordered duplex of frames can carry a hub. Here each frame is a 4-byte big-endian length, one byte for the
//! frame kind (0 text, 1 binary) and the payload, on a tokio `TcpStream` (`LengthDelimitedCodec` does the
//! lengths). The server listens on 127.0.0.1 (a free port); a tiny client in the same program speaks raw frames
//! to it: the JSON handshake, one invocation of `Add`, and it prints the result.
//!
//! Run it with `cargo run -p courier --example custom_transport`.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use courier::server::{ConnectionOptions, Context, Hub, HubError};
use courier::{Frame, Transport, TransportError, TransportInfo};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// A frame transport over a TCP stream.
struct TcpTransport {
    framed: Framed<TcpStream, LengthDelimitedCodec>,
    info: TransportInfo,
}

impl TcpTransport {
    fn new(stream: TcpStream) -> Self {
        let mut info = TransportInfo::new();
        if let Ok(addr) = stream.peer_addr() {
            info = info.with_remote_addr(addr);
        }
        // Frames larger than 1 MiB are a protocol error of this transport (the hub applies its own message limit).
        let codec = LengthDelimitedCodec::builder()
            .max_frame_length(1024 * 1024)
            .new_codec();
        Self {
            framed: Framed::new(stream, codec),
            info,
        }
    }
}

/// The wire form of a frame: kind byte, then payload.
fn encode(frame: Frame) -> Bytes {
    let (kind, payload) = match frame {
        Frame::Text(payload) => (0, payload),
        Frame::Binary(payload) => (1, payload),
    };
    let mut out = BytesMut::with_capacity(payload.len() + 1);
    out.put_u8(kind);
    out.put_slice(&payload);
    out.freeze()
}

fn decode(mut bytes: BytesMut) -> Result<Frame, TransportError> {
    if bytes.is_empty() {
        return Err(TransportError::Protocol(
            "a frame without its kind byte".into(),
        ));
    }
    let kind = bytes.split_to(1)[0];
    let payload = bytes.freeze();
    match kind {
        0 => Ok(Frame::Text(payload)),
        1 => Ok(Frame::Binary(payload)),
        other => Err(TransportError::Protocol(format!(
            "unknown frame kind {other}"
        ))),
    }
}

impl Stream for TcpTransport {
    type Item = Result<Frame, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.framed
            .poll_next_unpin(cx)
            .map(|item| item.map(|bytes| decode(bytes?)))
    }
}

impl Sink<Frame> for TcpTransport {
    type Error = TransportError;

    fn poll_ready(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), TransportError>> {
        Sink::<Bytes>::poll_ready(Pin::new(&mut self.framed), cx).map_err(TransportError::from)
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Frame) -> Result<(), TransportError> {
        Pin::new(&mut self.framed)
            .start_send(encode(frame))
            .map_err(TransportError::from)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), TransportError>> {
        Sink::<Bytes>::poll_flush(Pin::new(&mut self.framed), cx).map_err(TransportError::from)
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), TransportError>> {
        Sink::<Bytes>::poll_close(Pin::new(&mut self.framed), cx).map_err(TransportError::from)
    }
}

impl Transport for TcpTransport {
    fn info(&self) -> &TransportInfo {
        &self.info
    }
}

/// Accepts TCP connections and hands each one to the hub.
async fn serve(listener: TcpListener, hub: Hub) {
    while let Ok((stream, _)) = listener.accept().await {
        if let Err(error) = hub
            .accept(TcpTransport::new(stream), ConnectionOptions::default())
            .await
        {
            eprintln!("refused a connection: {error}");
        }
    }
}

/// The client: raw frames, no library. Returns the completion of its invocation.
async fn client(
    addr: std::net::SocketAddr,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let mut transport = TcpTransport::new(TcpStream::connect(addr).await?);
    transport
        .send(Frame::Text(Bytes::from_static(
            b"{\"protocol\":\"json\",\"version\":1}\x1e",
        )))
        .await?;
    let call = b"{\"type\":1,\"invocationId\":\"1\",\"target\":\"Add\",\"arguments\":[40,2]}\x1e";
    transport
        .send(Frame::Text(Bytes::from_static(call)))
        .await?;
    let mut handshake_done = false;
    loop {
        let frame = transport
            .next()
            .await
            .ok_or("the server closed the connection")??;
        // A frame holds whole JSON records, each ended by 0x1E; the first record is the handshake response.
        for record in frame
            .payload()
            .split(|b| *b == 0x1e)
            .filter(|r| !r.is_empty())
        {
            let message: serde_json::Value = serde_json::from_slice(record)?;
            if !handshake_done {
                if let Some(error) = message.get("error") {
                    return Err(format!("handshake refused: {error}").into());
                }
                handshake_done = true;
            } else if message["type"] == 3 {
                transport.close().await?;
                return Ok(message);
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::builder()
        .method("Add", |_ctx: Context, (a, b): (i64, i64)| async move {
            Ok::<_, HubError>(a + b)
        })
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, hub.clone()));

    let answer = client(addr).await?;
    #[allow(clippy::print_stdout)]
    {
        println!("server at {addr} answered: {answer}");
    }
    hub.shutdown(std::time::Duration::from_secs(1)).await;
    Ok(())
}
