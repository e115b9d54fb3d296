//! What travels between the hub and the clients.

use serde::{Deserialize, Serialize};

/// The hub method a client calls to send a chat message: arguments `(to, text)`, result the message id.
pub(crate) const SEND: &str = "Send";

/// The client method that carries a chat message to its recipient, reliably: the handler's return is the ack.
pub(crate) const DELIVER: &str = "Deliver";

/// The client method that carries a receipt to the sender: arguments `(id, status)`, where status is
/// `delivered`, `expired` or `dead-lettered` (the hub's default receipt method).
pub(crate) const RECEIPT: &str = "Receipt";

/// The single argument of [`DELIVER`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Delivery {
    /// The message id, as the sender's receipt names it.
    pub(crate) id: String,
    /// The sender's user id.
    pub(crate) from: String,
    /// The message.
    pub(crate) text: String,
}
