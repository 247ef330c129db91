//! Who a request comes from, as the layers that find out write it into the request's
//! extensions and the others read it: the connection it arrived on ([`ConnectionInfo`],
//! written by [`Server`](crate::server::Server); the client's address from whichever server
//! accepted it is [`peer_addr`]) and the authenticated [`Consumer`] (written by
//! [`auth`](crate::auth)), read by the proxy, rate limiting, balancing, metrics, the access log
//! and plugins. A module of its own, so that readers need not depend on the server or on
//! authentication.

mod connection;

use std::sync::Arc;

pub(crate) use connection::Drain;
pub use connection::{ConnectionInfo, peer_addr};

/// An authenticated client, in the request's extensions after [`Auth`](crate::auth::Auth)
/// let it through: the consumer, the credential it used, and whether it is the anonymous consumer.
///
/// ```
/// use tower_gateway::auth::Consumers;
/// use tower_gateway::identity::Consumer;
///
/// let consumers = Consumers::new();
/// consumers.insert(Consumer::new("4e8e7f0a").username("ann").custom_id("crm-17"));
/// consumers.add_api_key("ann", "ann-key").unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// The consumer's id (Kong: a UUID).
    pub id: Arc<str>,
    /// Its username, if it has one.
    pub username: Option<Arc<str>>,
    /// Its `custom_id`, if it has one.
    pub custom_id: Option<Arc<str>>,
    /// The id of the credential that authenticated this request (none for the anonymous
    /// consumer).
    pub credential: Option<Arc<str>>,
    /// What `X-Credential-Identifier` tells the upstream, when it is not the credential's id:
    /// a JWT credential's `key` (Kong's jwt plugin sends the key, key-auth the id).
    pub credential_identifier: Option<Arc<str>>,
    /// Whether authentication failed and the request goes on as the anonymous consumer.
    pub anonymous: bool,
}

impl Consumer {
    /// A consumer with an id and nothing else.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self {
            id: id.into(),
            username: None,
            custom_id: None,
            credential: None,
            credential_identifier: None,
            anonymous: false,
        }
    }

    /// Sets the username.
    pub fn username(mut self, username: impl Into<Arc<str>>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets the `custom_id`.
    pub fn custom_id(mut self, custom_id: impl Into<Arc<str>>) -> Self {
        self.custom_id = Some(custom_id.into());
        self
    }

    pub(crate) fn with_credential(&self, credential: &Arc<str>) -> Self {
        let mut consumer = self.clone();
        consumer.credential = Some(credential.clone());
        consumer.credential_identifier = None;
        consumer
    }
}
