//! The names of keys and channels under `CACHE_KEY_PREFIX`.
//!
//! Keys of one URL (`K` = `<prefix>:{<digest>}`) share one hash slot through
//! the hash tag `{<digest>}`, so a pipeline over them never crosses slots on
//! a Redis Cluster. Each is written with a TTL:
//! - `K`: its entry, or a Vary index when its responses vary;
//! - `K:v:<digest of the varied request values>`: one entry per variant;
//! - `K:variants`: the variant keys;
//! - `<entry key>:lock`: held by the replica filling that entry (`SET NX PX`).
//!
//! Tag sets, for purges without scanning, each in the tag's own slot:
//! `<prefix>:tag:path:<path prefix>`, `<prefix>:tag:key:<surrogate key>` and
//! `<prefix>:tag:any-key`, each the URL keys tagged.
//!
//! Events (`filled <entry key>`, `invalidated <entry key> ...`, all of one
//! URL) are pub/sub messages: on one node, on `<prefix>:events`; on a
//! cluster, sharded pub/sub (`SPUBLISH`) on one of [`EVENT_SHARDS`] channels
//! `<prefix>:events:{<n>}` chosen by the URL's digest, so each message
//! travels within one shard instead of over the whole cluster bus.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::cache::key::{EntryKey, UrlKey};
use crate::storage::{Event, Tag};

/// Sharded event channels on a cluster: enough to spread over the shards of
/// any cluster this runs on, few enough for every replica to follow them all.
pub(super) const EVENT_SHARDS: u128 = 16;

#[derive(Debug, Clone)]
pub(super) struct Keyspace {
    pub(super) prefix: Arc<str>,
    /// On a cluster: sharded pub/sub, one pipeline per slot.
    pub(super) cluster: bool,
}

impl Keyspace {
    pub(super) fn entry(&self, key: EntryKey) -> String {
        let mut name = format!("{}:{{{:032x}}}", self.prefix, key.url.digest());
        if let Some(variant) = key.variant {
            let _infallible = write!(name, ":v:{variant:032x}");
        }
        name
    }

    pub(super) fn lock(&self, key: EntryKey) -> String {
        format!("{}:lock", self.entry(key))
    }

    pub(super) fn variants(&self, url: UrlKey) -> String {
        format!("{}:variants", self.entry(EntryKey::url(url)))
    }

    pub(super) fn tag(&self, tag: &Tag) -> String {
        match tag {
            Tag::Path(path) => format!("{}:tag:path:{path}", self.prefix),
            Tag::SurrogateKey(key) => format!("{}:tag:key:{key}", self.prefix),
            Tag::AnyKey => format!("{}:tag:any-key", self.prefix),
        }
    }

    /// `PUBLISH`, or `SPUBLISH` on a cluster.
    pub(super) fn publish_command(&self) -> &'static str {
        if self.cluster { "SPUBLISH" } else { "PUBLISH" }
    }

    /// The channel an event goes to.
    pub(super) fn channel_of(&self, event: &Event) -> String {
        let url = match event {
            Event::Filled(key) => Some(key.url),
            Event::Invalidated(keys) => keys.first().map(|key| key.url),
        };
        let shard = url.map_or(0, |url| url.digest() % EVENT_SHARDS);
        self.channel(shard)
    }

    /// Every channel a replica follows.
    pub(super) fn channels(&self) -> Vec<String> {
        if self.cluster {
            (0..EVENT_SHARDS).map(|shard| self.channel(shard)).collect()
        } else {
            vec![self.channel(0)]
        }
    }

    fn channel(&self, shard: u128) -> String {
        if self.cluster {
            format!("{}:events:{{{shard}}}", self.prefix)
        } else {
            format!("{}:events", self.prefix)
        }
    }

    /// The entry key a stored name stands for: `<prefix>:{<hex>}[:v:<hex>]`.
    pub(super) fn parse(&self, name: &str) -> Option<EntryKey> {
        let rest = name.strip_prefix(&*self.prefix)?.strip_prefix(":{")?;
        let hex = |s: &str| (s.len() == 32).then(|| u128::from_str_radix(s, 16).ok())?;
        let (url, rest) = rest.split_once('}')?;
        let variant = match rest {
            "" => None,
            _ => Some(hex(rest.strip_prefix(":v:")?)?),
        };
        Some(EntryKey {
            url: UrlKey::from_digest(hex(url)?),
            variant,
        })
    }

    pub(super) fn message(&self, event: &Event) -> String {
        match event {
            Event::Filled(key) => format!("filled {}", self.entry(*key)),
            Event::Invalidated(keys) => {
                keys.iter().fold("invalidated".to_owned(), |mut text, key| {
                    text.push(' ');
                    text.push_str(&self.entry(*key));
                    text
                })
            }
        }
    }

    pub(super) fn event(&self, message: &str) -> Option<Event> {
        let mut words = message.split(' ');
        match words.next()? {
            "filled" => Some(Event::Filled(self.parse(words.next()?)?)),
            "invalidated" => Some(Event::Invalidated(
                words.filter_map(|w| self.parse(w)).collect(),
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::target::Target;

    fn keyspace(cluster: bool) -> Keyspace {
        Keyspace {
            prefix: Arc::from("api-cache"),
            cluster,
        }
    }

    fn url() -> UrlKey {
        UrlKey::of(&Target::parse("/air_quality", None).unwrap())
    }

    #[test]
    fn names_and_events_round_trip() {
        let keys = keyspace(false);
        assert_eq!(
            keys.entry(EntryKey::url(url())),
            "api-cache:{b3231c75c1834b123a585db254cb22c0}"
        );
        let variant = EntryKey::variant(url(), 7);
        assert_eq!(keys.parse(&keys.entry(variant)), Some(variant));
        assert_eq!(keys.parse(&keys.variants(url())), None);
        assert_eq!(keys.parse(&keys.lock(variant)), None);
        assert_eq!(keys.parse("other:{b3231c75c1834b123a585db254cb22c0}"), None);
        for event in [
            Event::Filled(variant),
            Event::Invalidated(vec![EntryKey::url(url()), variant]),
        ] {
            assert_eq!(keys.event(&keys.message(&event)), Some(event));
        }
        assert_eq!(keys.event("nonsense"), None);
    }

    /// What Redis Cluster hashes: the part between the first `{` and the next `}`.
    fn hash_tag(name: &str) -> &str {
        let open = name.find('{').unwrap();
        let close = open + name[open..].find('}').unwrap();
        &name[open + 1..close]
    }

    #[test]
    fn every_key_of_a_url_has_the_urls_hash_tag() {
        let keys = keyspace(true);
        let variant = EntryKey::variant(url(), 7);
        let tag = hash_tag(&keys.entry(EntryKey::url(url()))).to_owned();
        for name in [
            keys.entry(variant),
            keys.lock(EntryKey::url(url())),
            keys.lock(variant),
            keys.variants(url()),
        ] {
            assert_eq!(hash_tag(&name), tag, "{name}");
        }
        assert!(!keys.tag(&Tag::Path("/air_quality".into())).contains('{'));
    }

    #[test]
    fn a_cluster_spreads_events_over_sharded_channels_by_url() {
        let keys = keyspace(true);
        assert_eq!(keys.publish_command(), "SPUBLISH");
        let channels = keys.channels();
        assert_eq!(channels.len(), 16);
        let event = Event::Filled(EntryKey::url(url()));
        assert!(channels.contains(&keys.channel_of(&event)));
        let same_url = Event::Invalidated(vec![EntryKey::variant(url(), 3)]);
        assert_eq!(keys.channel_of(&event), keys.channel_of(&same_url));
        let single = keyspace(false);
        assert_eq!(single.publish_command(), "PUBLISH");
        assert_eq!(single.channels(), ["api-cache:events"]);
        assert_eq!(single.channel_of(&event), "api-cache:events");
    }
}
