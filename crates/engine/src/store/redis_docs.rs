//! `RedisDocStore`: documents in Redis, shared by every replica.
//!
//! Keys (after `key_prefix`):
//! - `doc:{id}`: a hash with `content` (the Markdown), `bytes` (its UTF-8
//!   length) and `modified` (unix ms of the write). Keeping size and time
//!   beside the content lets `meta` and listings skip the content.
//! - `docs`: a sorted set of every document id, all with score 0, so Redis
//!   orders it by bytes — the order listings use — and a story's documents
//!   (`{story}__…`) are one `ZRANGEBYLEX` range.
//!
//! A put writes the hash (one `HSET` of all three fields: readers see the
//! old or the new version, never a mix) and adds the id to the index in one
//! `MULTI`/`EXEC`; a delete removes both the same way. Of concurrent writers
//! the last one wins, as with files.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::files::now_ms;
use super::ids::check_story_id;
use super::redis_connection::RedisConnection;
use super::{DocId, DocMeta, DocStore, Document, StoreError};

/// Documents in Redis (see the module docs).
#[derive(Debug, Clone)]
pub struct RedisDocStore {
    redis: RedisConnection,
}

impl RedisDocStore {
    /// Documents on `redis`, under its key prefix.
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }

    fn doc_key(&self, id: &DocId) -> String {
        self.redis.key(&format!("doc:{id}"))
    }

    fn index_key(&self) -> String {
        self.redis.key("docs")
    }
}

#[async_trait]
impl DocStore for RedisDocStore {
    async fn get(&self, id: &DocId) -> Result<Option<Document>, StoreError> {
        let mut redis = self.redis.handle();
        let (content, modified): (Option<String>, Option<u64>) = redis
            .hmget(self.doc_key(id), &["content", "modified"])
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("read document `{id}`"), &err)
            })?;
        Ok(content.map(|content| Document {
            bytes: content.len() as u64,
            content,
            modified: modified.unwrap_or(0),
        }))
    }

    async fn put(&self, id: &DocId, content: &str) -> Result<u64, StoreError> {
        let bytes = content.len() as u64;
        let mut redis = self.redis.handle();
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(self.doc_key(id))
            .arg("content")
            .arg(content)
            .arg("bytes")
            .arg(bytes)
            .arg("modified")
            .arg(now_ms())
            .ignore()
            .zadd(self.index_key(), id.as_str(), 0)
            .ignore()
            .exec_async(&mut redis)
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("write document `{id}`"), &err)
            })?;
        Ok(bytes)
    }

    async fn delete(&self, id: &DocId) -> Result<bool, StoreError> {
        let mut redis = self.redis.handle();
        let (deleted,): (u64,) = redis::pipe()
            .atomic()
            .del(self.doc_key(id))
            .zrem(self.index_key(), id.as_str())
            .ignore()
            .query_async(&mut redis)
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("delete document `{id}`"), &err)
            })?;
        Ok(deleted > 0)
    }

    async fn meta(&self, id: &DocId) -> Result<Option<DocMeta>, StoreError> {
        let mut redis = self.redis.handle();
        let (bytes, modified): (Option<u64>, Option<u64>) = redis
            .hmget(self.doc_key(id), &["bytes", "modified"])
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("read document `{id}`"), &err)
            })?;
        Ok(bytes.map(|bytes| DocMeta {
            id: id.clone(),
            bytes,
            modified: modified.unwrap_or(0),
        }))
    }

    async fn list(&self, story_id: Option<&str>) -> Result<Vec<DocMeta>, StoreError> {
        let (min, max) = match story_id {
            Some(story) => {
                check_story_id(story)?;
                // Ids are ASCII, so every `{story}__…` id sorts before `{story}__\xff`.
                let prefix = format!("{story}__");
                let mut max = format!("({prefix}").into_bytes();
                max.push(0xff);
                (format!("[{prefix}").into_bytes(), max)
            }
            None => (b"-".to_vec(), b"+".to_vec()),
        };
        let mut redis = self.redis.handle();
        let listed: Vec<String> = redis
            .zrangebylex(self.index_key(), min, max)
            .await
            .map_err(|err| self.redis.unavailable("list documents", &err))?;
        // Only ids this program could have written; anything else is not a document.
        let ids: Vec<DocId> = listed
            .iter()
            .filter_map(|id| DocId::parse(id).ok())
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sizes = redis::pipe();
        for id in &ids {
            sizes.hmget(self.doc_key(id), &["bytes", "modified"]);
        }
        let metas: Vec<(Option<u64>, Option<u64>)> = sizes
            .query_async(&mut redis)
            .await
            .map_err(|err| self.redis.unavailable("list documents", &err))?;
        // A document deleted between the two reads is skipped.
        Ok(ids
            .into_iter()
            .zip(metas)
            .filter_map(|(id, (bytes, modified))| {
                bytes.map(|bytes| DocMeta {
                    id,
                    bytes,
                    modified: modified.unwrap_or(0),
                })
            })
            .collect())
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }
}
