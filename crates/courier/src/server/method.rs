//! Hub methods: binding wire arguments to typed Rust arguments, and the type-erased handlers.

use std::any::TypeId;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use courier_protocol::{ByteString, Payload, Protocol};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::server::{Context, HubError};

/// One item of a client-to-server stream as the connection hands it over: a value, or the error the client
/// completed the stream with.
pub(crate) type UploadItem = Result<Payload, String>;

/// A client-to-server stream received as a hub method argument.
///
/// Put it in the method's argument tuple where the stream parameter goes; the client lists the stream's id in
/// `streamIds` instead of sending a value for it. Items arrive as `Ok`; a client that completes the stream with an
/// error yields one `Err` ([`HubError::Hub`] with its text), and an item that does not bind to `T` yields an `Err`
/// ([`HubError::Internal`]). The stream ends when the client completes it.
///
/// ```
/// use courier::server::{Context, Hub, HubError, UploadStream};
/// use futures::StreamExt;
///
/// let hub = Hub::builder()
///     .method("Sum", |_ctx: Context, (mut numbers,): (UploadStream<i64>,)| async move {
///         let mut sum = 0;
///         while let Some(n) = numbers.next().await {
///             sum += n?;
///         }
///         Ok::<_, HubError>(sum)
///     })
///     .build();
/// # drop(hub);
/// ```
#[derive(Debug)]
pub struct UploadStream<T> {
    receiver: mpsc::Receiver<UploadItem>,
    ended: bool,
    _item: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Stream for UploadStream<T> {
    type Item = Result<T, HubError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(Ok(payload))) => {
                Poll::Ready(Some(payload.deserialize::<T>().map_err(HubError::internal)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.ended = true;
                Poll::Ready(Some(Err(HubError::Hub(error))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Why the arguments of an invocation could not be bound to a method.
#[derive(Debug)]
pub enum BindError {
    /// The values do not match the parameters (count or types); the text is the detail.
    Arguments(String),
    /// The number of upload streams does not match.
    StreamCount {
        /// Streams the client listed.
        sent: usize,
        /// Stream parameters of the method.
        expected: usize,
    },
}

/// Hands the values and stream ids of one invocation to the argument types, in order.
#[derive(Debug)]
pub struct Binder {
    values: std::vec::IntoIter<Payload>,
    stream_ids: std::vec::IntoIter<ByteString>,
    stream_capacity: usize,
    streams: Vec<(ByteString, mpsc::Sender<UploadItem>)>,
}

impl Binder {
    pub(crate) fn new(
        values: Vec<Payload>,
        stream_ids: Vec<ByteString>,
        stream_capacity: usize,
    ) -> Self {
        Self {
            values: values.into_iter(),
            stream_ids: stream_ids.into_iter(),
            stream_capacity,
            streams: Vec::new(),
        }
    }

    /// The upload streams the bound arguments read from, to be fed by the connection.
    pub(crate) fn into_streams(self) -> Vec<(ByteString, mpsc::Sender<UploadItem>)> {
        self.streams
    }

    fn next_value<T: DeserializeOwned>(&mut self) -> Result<T, BindError> {
        let payload = self
            .values
            .next()
            .ok_or_else(|| BindError::Arguments("missing argument".into()))?;
        payload.deserialize().map_err(|_| {
            BindError::Arguments(
                "Error binding arguments. Make sure that the types of the provided values match the types of the \
                 hub method being invoked."
                    .into(),
            )
        })
    }

    fn next_stream<T>(&mut self) -> UploadStream<T> {
        let (sender, receiver) = mpsc::channel(self.stream_capacity.max(1));
        if let Some(id) = self.stream_ids.next() {
            self.streams.push((id, sender));
        }
        UploadStream {
            receiver,
            ended: false,
            _item: std::marker::PhantomData,
        }
    }
}

/// One parameter of a hub method: any `DeserializeOwned` value, or an [`UploadStream`].
pub trait HubArgument: Sized + Send + 'static {
    /// Whether this parameter is an upload stream (sent as a stream id, not a value).
    const IS_STREAM: bool;

    /// Takes this parameter from the invocation.
    fn bind(binder: &mut Binder) -> Result<Self, BindError>;
}

impl<T: DeserializeOwned + Send + 'static> HubArgument for T {
    const IS_STREAM: bool = false;

    fn bind(binder: &mut Binder) -> Result<Self, BindError> {
        binder.next_value()
    }
}

impl<T: DeserializeOwned + Send + 'static> HubArgument for UploadStream<T> {
    const IS_STREAM: bool = true;

    fn bind(binder: &mut Binder) -> Result<Self, BindError> {
        Ok(binder.next_stream())
    }
}

/// The parameters of a hub method: a tuple (up to 8) of [`HubArgument`]s, `()` for none.
pub trait HubArguments: Sized + Send + 'static {
    /// How many parameters take values, and how many are upload streams.
    fn counts() -> (usize, usize);

    /// Binds the invocation's values and streams.
    fn bind(binder: &mut Binder) -> Result<Self, BindError>;
}

macro_rules! tuple_arguments {
    ($($name:ident),*) => {
        impl<$($name: HubArgument),*> HubArguments for ($($name,)*) {
            fn counts() -> (usize, usize) {
                let flags: &[bool] = &[$($name::IS_STREAM),*];
                let streams = flags.iter().filter(|s| **s).count();
                (flags.len() - streams, streams)
            }

            #[allow(unused_variables, clippy::unused_unit)]
            fn bind(binder: &mut Binder) -> Result<Self, BindError> {
                let (values, streams) = Self::counts();
                let provided = binder.values.len();
                if provided != values {
                    return Err(BindError::Arguments(format!(
                        "Invocation provides {provided} argument(s) but target expects {values}."
                    )));
                }
                let sent = binder.stream_ids.len();
                let bound = ($($name::bind(binder)?,)*);
                if sent != streams {
                    return Err(BindError::StreamCount { sent, expected: streams });
                }
                Ok(bound)
            }
        }
    };
}

tuple_arguments!();
tuple_arguments!(A);
tuple_arguments!(A, B);
tuple_arguments!(A, B, C);
tuple_arguments!(A, B, C, D);
tuple_arguments!(A, B, C, D, E);
tuple_arguments!(A, B, C, D, E, F);
tuple_arguments!(A, B, C, D, E, F, G);
tuple_arguments!(A, B, C, D, E, F, G, H);

/// Values sent as the arguments of a client method: a tuple (up to 8) of `Serialize` values, `()` for none.
pub trait Arguments {
    /// Encodes each value for `protocol`.
    fn encode(&self, protocol: Protocol) -> Result<Vec<Payload>, courier_protocol::ProtocolError>;
}

macro_rules! tuple_send_arguments {
    ($($name:ident $index:tt),*) => {
        impl<$($name: Serialize),*> Arguments for ($($name,)*) {
            #[allow(unused_variables)]
            fn encode(&self, protocol: Protocol) -> Result<Vec<Payload>, courier_protocol::ProtocolError> {
                Ok(vec![$(Payload::from_value(protocol, &self.$index)?),*])
            }
        }
    };
}

tuple_send_arguments!();
tuple_send_arguments!(A 0);
tuple_send_arguments!(A 0, B 1);
tuple_send_arguments!(A 0, B 1, C 2);
tuple_send_arguments!(A 0, B 1, C 2, D 3);
tuple_send_arguments!(A 0, B 1, C 2, D 3, E 4);
tuple_send_arguments!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_send_arguments!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_send_arguments!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// What a method returned, encoded for the caller's protocol.
pub(crate) enum Output {
    /// `()`: a void completion.
    Void,
    /// A value.
    Value(Payload),
}

type UnaryHandler = dyn Fn(Context, &mut Binder) -> Result<BoxFuture<'static, Result<Output, HubError>>, BindError>
    + Send
    + Sync;
type StreamHandler = dyn Fn(Context, &mut Binder) -> Result<BoxStream<'static, Result<Payload, HubError>>, BindError>
    + Send
    + Sync;

/// A registered method, its types erased.
#[derive(Clone)]
pub(crate) enum Method {
    /// Returns one result (a Completion).
    Unary(Arc<UnaryHandler>),
    /// Returns a stream of items.
    Streaming(Arc<StreamHandler>),
}

impl Method {
    pub(crate) fn unary<A, R, F, Fut>(handler: F) -> Self
    where
        A: HubArguments,
        R: Serialize + Send + 'static,
        F: Fn(Context, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HubError>> + Send + 'static,
    {
        Self::Unary(Arc::new(move |ctx: Context, binder: &mut Binder| {
            let args = A::bind(binder)?;
            let protocol = ctx.protocol();
            let call = handler(ctx, args);
            Ok(async move {
                let value = call.await?;
                if TypeId::of::<R>() == TypeId::of::<()>() {
                    return Ok(Output::Void);
                }
                Payload::from_value(protocol, &value)
                    .map(Output::Value)
                    .map_err(HubError::internal)
            }
            .boxed())
        }))
    }

    pub(crate) fn streaming<A, T, F, S>(handler: F) -> Self
    where
        A: HubArguments,
        T: Serialize + Send + 'static,
        F: Fn(Context, A) -> S + Send + Sync + 'static,
        S: Stream<Item = Result<T, HubError>> + Send + 'static,
    {
        Self::Streaming(Arc::new(move |ctx: Context, binder: &mut Binder| {
            let args = A::bind(binder)?;
            let protocol = ctx.protocol();
            let items = handler(ctx, args);
            Ok(items
                .map(move |item| {
                    item.and_then(|value| {
                        Payload::from_value(protocol, &value).map_err(HubError::internal)
                    })
                })
                .boxed())
        }))
    }
}
