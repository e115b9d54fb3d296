//! Who a connection's client is, as the hub's auth hook decided.

/// The outcome of an admitted auth check: the user id (or an anonymous client), and optionally a client id that
/// one device keeps across connections.
///
/// Hub methods see them as [`Context::user_id`](crate::server::Context::user_id) and
/// [`Context::client_id`](crate::server::Context::client_id); [`Clients::user`](crate::server::Clients::user)
/// sends to all connections of one user, and reliable messages go to the mailbox of a user or of a client id. The
/// auth hook is the only source of both: a client id taken from a request header is only as trustworthy as the
/// hook's check of it.
///
/// ```
/// use courier::server::Identity;
///
/// let phone = Identity::user("alice").with_client_id("alice-phone");
/// assert_eq!(phone.user_id(), Some("alice"));
/// assert_eq!(phone.client_id(), Some("alice-phone"));
/// assert_eq!(Identity::anonymous().user_id(), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    user_id: Option<String>,
    client_id: Option<String>,
}

impl Identity {
    /// A client without a user id or client id.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// A client known as `user_id`.
    pub fn user(user_id: impl Into<String>) -> Self {
        Self {
            user_id: Some(user_id.into()),
            client_id: None,
        }
    }

    /// Adds the client id of the device.
    #[must_use]
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The user id, `None` for an anonymous client.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// The client id, if the auth hook gave one.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
}

impl From<Option<String>> for Identity {
    fn from(user_id: Option<String>) -> Self {
        Self {
            user_id,
            client_id: None,
        }
    }
}
