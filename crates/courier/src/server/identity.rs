//! Who a connection's client is, as the hub's auth hook decided.

/// The outcome of an admitted auth check: the user id, or an anonymous client. Hub methods see the user id as
/// [`Context::user_id`](crate::server::Context::user_id), and [`Clients::user`](crate::server::Clients::user) sends to
/// all connections of one user.
///
/// ```
/// use courier::server::Identity;
///
/// assert_eq!(Identity::user("alice").user_id(), Some("alice"));
/// assert_eq!(Identity::anonymous().user_id(), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    user_id: Option<String>,
}

impl Identity {
    /// A client without a user id.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// A client known as `user_id`.
    pub fn user(user_id: impl Into<String>) -> Self {
        Self {
            user_id: Some(user_id.into()),
        }
    }

    /// The user id, `None` for an anonymous client.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    pub(crate) fn into_user_id(self) -> Option<String> {
        self.user_id
    }
}

impl From<Option<String>> for Identity {
    fn from(user_id: Option<String>) -> Self {
        Self { user_id }
    }
}
