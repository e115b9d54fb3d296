//! Arguments: encoding a call's arguments (and upload streams), and binding a client method's arguments.

use courier_protocol::{Payload, Protocol, ProtocolError};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

type Encoder = Box<dyn FnOnce(Protocol) -> Result<Payload, ProtocolError> + Send>;
type UploadEncoder = Box<dyn FnOnce(Protocol) -> Upload + Send>;

/// An upload stream's items, encoded; an `Err` item ends the stream with that error.
pub(crate) type Upload = BoxStream<'static, Result<Payload, ProtocolError>>;

/// The arguments of a call, possibly with upload streams (client-to-server streams, HUB-PROTOCOL.md §5.3).
///
/// Tuples of `Serialize` values convert into `Args` (`()` for none, `(x,)` for one); build `Args` by hand to add
/// upload streams, which the server method receives as its stream parameters (after the plain arguments are
/// bound, in the order given).
///
/// ```
/// use courier::client::Args;
///
/// let args = Args::new().arg("numbers").upload(futures::stream::iter([1, 2, 3]));
/// # drop(args);
/// ```
#[derive(Default)]
pub struct Args {
    values: Vec<Encoder>,
    uploads: Vec<UploadEncoder>,
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("values", &self.values.len())
            .field("uploads", &self.uploads.len())
            .finish()
    }
}

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a plain argument.
    #[must_use]
    pub fn arg<T: Serialize + Send + 'static>(mut self, value: T) -> Self {
        self.values.push(Box::new(move |protocol| {
            Payload::from_value(protocol, &value)
        }));
        self
    }

    /// Adds an upload stream: each item goes to the server as a StreamItem, and the end of the stream as a
    /// Completion. The stream is read only as fast as the connection sends.
    #[must_use]
    pub fn upload<S, T>(mut self, stream: S) -> Self
    where
        S: Stream<Item = T> + Send + 'static,
        T: Serialize + Send + 'static,
    {
        self.uploads.push(Box::new(move |protocol| {
            stream
                .map(move |item| Payload::from_value(protocol, &item))
                .boxed()
        }));
        self
    }

    /// Encodes the plain arguments and prepares the upload streams for `protocol`.
    pub(crate) fn encode(
        self,
        protocol: Protocol,
    ) -> Result<(Vec<Payload>, Vec<Upload>), ProtocolError> {
        let values = self
            .values
            .into_iter()
            .map(|encode| encode(protocol))
            .collect::<Result<_, _>>()?;
        let uploads = self
            .uploads
            .into_iter()
            .map(|open| open(protocol))
            .collect();
        Ok((values, uploads))
    }
}

/// The arguments of a client method (a handler registered with
/// [`HubConnectionBuilder::on`](super::HubConnectionBuilder::on)): a tuple of `DeserializeOwned` values, bound
/// from the invocation's arguments in order. The count must match.
pub trait HandlerArgs: Sized + Send + 'static {
    /// Binds the arguments, or says why they do not fit.
    fn bind(arguments: &[Payload]) -> Result<Self, String>;
}

fn bind_one<T: DeserializeOwned>(arguments: &[Payload], index: usize) -> Result<T, String> {
    arguments[index]
        .deserialize()
        .map_err(|error| format!("argument {index}: {error}"))
}

macro_rules! tuples {
    ($( ($($name:ident $index:tt),*) ),* $(,)?) => {$(
        impl<$($name: Serialize + Send + 'static),*> From<($($name,)*)> for Args {
            #[allow(unused_mut, non_snake_case)]
            fn from(($($name,)*): ($($name,)*)) -> Self {
                let mut args = Args::new();
                $(args = args.arg($name);)*
                args
            }
        }

        impl<$($name: DeserializeOwned + Send + 'static),*> HandlerArgs for ($($name,)*) {
            #[allow(unused_variables)]
            fn bind(arguments: &[Payload]) -> Result<Self, String> {
                const COUNT: usize = 0 $(+ { let _ = $index; 1 })*;
                if arguments.len() != COUNT {
                    return Err(format!(
                        "Invocation provides {} argument(s) but target expects {COUNT}.",
                        arguments.len()
                    ));
                }
                Ok(($(bind_one::<$name>(arguments, $index)?,)*))
            }
        }
    )*};
}

tuples! {
    (),
    (A 0),
    (A 0, B 1),
    (A 0, B 1, C 2),
    (A 0, B 1, C 2, D 3),
    (A 0, B 1, C 2, D 3, E 4),
    (A 0, B 1, C 2, D 3, E 4, F 5),
}
