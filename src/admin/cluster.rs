//! Several gateway instances sharing one configuration through Redis.
//!
//! The configuration lives in Redis as the declarative document of the Admin API's entities
//! and a version number. A change made on any instance is applied to the latest document
//! and published with a compare-and-set on the version (one script), which also announces
//! the new version on a channel; every instance listens, and also polls the version every
//! second, so it catches up after a missed message or a reconnect. The keys `route:<path>`
//! (OpenResty's pattern: `SET route:/api/users user-service`) add routes to the service or
//! upstream they name, live.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde_json::Value;

use super::AdminApi;
use super::error::AdminError;
use super::store::Store;
use std::sync::PoisonError;

/// How often each instance checks the version and the `route:` keys.
const POLL: Duration = Duration::from_secs(1);
/// Attempts at publishing one change while other instances publish theirs.
const ATTEMPTS: usize = 16;
/// How long an instance counts as a member after its last heartbeat.
const MEMBER_TTL: Duration = Duration::from_secs(3);

/// Publishes a document if the version is still the one it was made from.
///
/// KEYS[1] version, KEYS[2] document; ARGV[1] expected version, ARGV[2] the document,
/// ARGV[3] the channel. Returns the new version, or -1 when another instance was first.
const PUBLISH: &str = r"
local version = tonumber(redis.call('GET', KEYS[1]) or '0')
if version ~= tonumber(ARGV[1]) then
  return -1
end
version = version + 1
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], version)
redis.call('PUBLISH', ARGV[3], version)
return version
";

/// An instance's connection to the cluster.
pub(crate) struct Link {
    client: redis::Client,
    connection: ConnectionManager,
    version_key: String,
    document_key: String,
    channel: String,
    members: String,
    member_key: String,
    publish: redis::Script,
}

fn unavailable(err: impl std::fmt::Display) -> AdminError {
    AdminError::Unavailable(format!("the cluster's Redis is unavailable: {err}"))
}

impl Link {
    async fn connect(url: &str, name: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let connection = ConnectionManager::new(client.clone()).await?;
        let prefix = format!("tower-gateway:cluster:{name}");
        Ok(Self {
            client,
            connection,
            version_key: format!("{prefix}:version"),
            document_key: format!("{prefix}:config"),
            channel: format!("{prefix}:changes"),
            members: format!("{prefix}:member:*"),
            member_key: format!("{prefix}:member:{}", super::entity::new_id()),
            publish: redis::Script::new(PUBLISH),
        })
    }

    /// The cluster's version and document (version 0: none yet).
    async fn fetch(&self) -> Result<(u64, Option<Value>), AdminError> {
        let mut connection = self.connection.clone();
        let (version, document): (Option<u64>, Option<String>) = redis::pipe()
            .get(&self.version_key)
            .get(&self.document_key)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let document = match document {
            Some(text) => Some(serde_json::from_str(&text).map_err(|err| {
                AdminError::BadBody(format!("the cluster's configuration is not JSON: {err}"))
            })?),
            None => None,
        };
        Ok((version.unwrap_or(0), document))
    }

    /// Publishes `document` over `expected`; `None` when another instance was first.
    async fn publish(&self, expected: u64, document: &Value) -> Result<Option<u64>, AdminError> {
        let mut connection = self.connection.clone();
        let version: i64 = self
            .publish
            .key(&self.version_key)
            .key(&self.document_key)
            .arg(expected)
            .arg(document.to_string())
            .arg(&self.channel)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(u64::try_from(version).ok())
    }

    /// Every key matching `pattern`, sorted.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, AdminError> {
        let mut connection = self.connection.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Says this instance is alive (for [`MEMBER_TTL`]).
    async fn heartbeat(&self) -> Result<(), AdminError> {
        let mut connection = self.connection.clone();
        let ttl = u64::try_from(MEMBER_TTL.as_millis()).unwrap_or(u64::MAX);
        connection
            .pset_ex::<_, _, ()>(&self.member_key, 1, ttl)
            .await
            .map_err(unavailable)
    }

    /// The `route:<path>` keys and the service or upstream each names, sorted.
    async fn route_keys(&self) -> Result<Vec<(String, String)>, AdminError> {
        let keys = self.scan("route:*").await?;
        let mut connection = self.connection.clone();
        let mut out = Vec::new();
        for key in keys {
            let target: Option<String> = connection.get(&key).await.map_err(unavailable)?;
            let path = key.trim_start_matches("route:").to_owned();
            if let Some(target) = target.filter(|t| !t.is_empty()) {
                out.push((path, target));
            }
        }
        Ok(out)
    }

    /// A change made on the cluster's latest configuration, published, then put in place.
    pub(crate) async fn mutate<T>(
        &self,
        admin: &AdminApi,
        version: &mut u64,
        change: impl Fn(&mut Store) -> Result<T, AdminError>,
    ) -> Result<T, AdminError> {
        for _ in 0..ATTEMPTS {
            let (latest, document) = self.fetch().await?;
            let mut next = match document {
                Some(document) if latest != *version => {
                    Store::from_doc(&document, admin.registry())?
                }
                _ => admin.snapshot(),
            };
            let out = change(&mut next)?;
            let gateway = admin.prepare(&next)?;
            match self.publish(latest, &next.to_doc()).await? {
                Some(published) => {
                    admin.install(next, gateway);
                    *version = published;
                    return Ok(out);
                }
                // Another instance published first: make the change again on its document.
                None => continue,
            }
        }
        Err(AdminError::Unavailable(
            "the cluster's configuration kept changing; try again".into(),
        ))
    }
}

impl AdminApi {
    /// Joins the cluster of gateways sharing the Redis server at `url` under `name`: when
    /// the cluster has a configuration, this instance takes it; otherwise this instance's
    /// becomes the cluster's. From then on every Admin API change (and file reload) on any
    /// instance reaches every instance, within a second. Needs a tokio runtime; the watching
    /// task ends when the last handle on this Admin API is dropped.
    pub async fn join_cluster(&self, url: &str, name: &str) -> Result<(), String> {
        let link = Link::connect(url, name)
            .await
            .map_err(|err| format!("cannot reach the cluster's Redis at {url}: {err}"))?;
        let message = |err: AdminError| {
            err.body()["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        {
            let mut version = self.shared.writes.lock().await;
            let (mut latest, mut document) = link.fetch().await.map_err(message)?;
            // No configuration: a new cluster, or a Redis that lost it while members run.
            // Running members put theirs back within a poll (and say they are alive), so
            // wait that long for it rather than publish this instance's file over it.
            let waited = std::time::Instant::now();
            while document.is_none()
                && (waited.elapsed() < POLL + POLL / 2
                    || (waited.elapsed() < MEMBER_TTL
                        && !link.scan(&link.members).await.map_err(message)?.is_empty()))
            {
                tokio::time::sleep(POLL / 10).await;
                (latest, document) = link.fetch().await.map_err(message)?;
            }
            link.heartbeat().await.map_err(message)?;
            match document {
                Some(document) => {
                    let store = Store::from_doc(&document, self.registry()).map_err(message)?;
                    let gateway = self.prepare(&store).map_err(message)?;
                    self.install(store, gateway);
                    *version = latest;
                }
                None => {
                    let published = link
                        .publish(latest, &self.snapshot().to_doc())
                        .await
                        .map_err(message)?;
                    *version = published.unwrap_or(latest);
                }
            }
        }
        let client = link.client.clone();
        let channel = link.channel.clone();
        if self.shared.cluster.set(link).is_err() {
            return Err("this Admin API already joined a cluster".into());
        }
        let weak = std::sync::Arc::downgrade(&self.shared);
        tokio::spawn(watch(weak, client, channel));
        Ok(())
    }

    /// Takes the cluster's latest configuration and `route:` keys, if they changed.
    async fn sync(&self) -> Result<(), AdminError> {
        let Some(link) = self.shared.cluster.get() else {
            return Ok(());
        };
        link.heartbeat().await?;
        let routes = link.route_keys().await?;
        let routes_changed = *self
            .shared
            .route_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            != routes;
        let mut version = self.shared.writes.lock().await;
        let (latest, document) = link.fetch().await?;
        if document.is_none() && *version > 0 {
            // Redis lost the configuration (restarted without persistence): put ours back,
            // so that instances joining later find the cluster's, not their own file's.
            if let Some(published) = link.publish(latest, &self.snapshot().to_doc()).await? {
                tracing::warn!(
                    "the cluster's Redis had lost the configuration; published it again"
                );
                *version = published;
            }
            return Ok(());
        }
        let newer = latest != *version && document.is_some();
        if !newer && !routes_changed {
            return Ok(());
        }
        let store = match document {
            Some(document) if newer => Store::from_doc(&document, self.registry())?,
            _ => self.snapshot(),
        };
        let previous = std::mem::replace(
            &mut *self
                .shared
                .route_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            routes,
        );
        match self.prepare(&store) {
            Ok(gateway) => {
                self.install(store, gateway);
                *version = latest;
                tracing::info!(version = latest, "configuration taken from the cluster");
                Ok(())
            }
            Err(err) => {
                *self
                    .shared
                    .route_keys
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = previous;
                Err(err)
            }
        }
    }
}

/// Follows the cluster: on each announced version, and every second.
async fn watch(shared: std::sync::Weak<super::Shared>, client: redis::Client, channel: String) {
    let mut messages = subscribe(&client, &channel).await;
    loop {
        match &mut messages {
            Some(pubsub) => {
                let ended = {
                    let mut stream = pubsub.on_message();
                    tokio::select! {
                        message = futures_util::StreamExt::next(&mut stream) => message.is_none(),
                        () = tokio::time::sleep(POLL) => false,
                    }
                };
                if ended {
                    // The subscription was lost (Redis restarted, say): the next turn
                    // subscribes again; the polls resync meanwhile.
                    messages = None;
                }
            }
            None => {
                tokio::time::sleep(POLL).await;
                messages = subscribe(&client, &channel).await;
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let admin = AdminApi { shared };
        if let Err(err) = admin.sync().await {
            tracing::warn!(error = %err.body()["message"], "cannot follow the cluster");
        }
    }
}

async fn subscribe(client: &redis::Client, channel: &str) -> Option<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await.ok()?;
    pubsub.subscribe(channel).await.ok()?;
    Some(pubsub)
}
