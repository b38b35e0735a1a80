//! `RedisDocStore`: versioned documents in Redis, shared by every replica.
//!
//! Keys (after `key_prefix`):
//! - `doc:{id}`: a hash with the latest version: `content` (the Markdown),
//!   `bytes` (its UTF-8 length), `modified` (unix ms of the write),
//!   `version` and `writer` (JSON, as in [`DocWriter`]). Keeping size and
//!   time beside the content lets `meta` and listings skip the content.
//! - `doc:{id}:versions`: a hash from version number to that version as
//!   JSON (`{"content", "writer", "at"}`).
//! - `docs`: a sorted set of every document id, all with score 0, so Redis
//!   orders it by bytes — the order listings use — and a story's documents
//!   (`{story}__…`) are one `ZRANGEBYLEX` range.
//!
//! A put is one Lua script, atomic in Redis: it numbers the version, writes
//! the head and the version and indexes the id, so readers see the old or
//! the new version, never a mix, and concurrent writers get distinct
//! numbers (the last one wins). A delete removes all three the same way.
//! A document written before versions existed reads as version 1 by `api`.
//! Replicas share no files, so this backend keeps no Markdown mirror.

use async_trait::async_trait;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use super::ids::check_story_id;
use super::now_ms;
use super::redis_connection::RedisConnection;
use super::{DocId, DocMeta, DocStore, DocVersion, DocWriter, Document, StoreError};

/// KEYS: head, versions, index. ARGV: id, content, bytes, at, writer, version JSON.
/// Returns the new version's number.
const PUT_SCRIPT: &str = r"
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'content', ARGV[2], 'bytes', ARGV[3], 'modified', ARGV[4], 'writer', ARGV[5])
redis.call('HSET', KEYS[2], version, ARGV[6])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
return version
";

/// One stored version, the value of a `doc:{id}:versions` field.
#[derive(Serialize, Deserialize)]
struct StoredVersion {
    content: String,
    writer: DocWriter,
    at: u64,
}

/// Documents in Redis (see the module docs).
#[derive(Debug, Clone)]
pub struct RedisDocStore {
    redis: RedisConnection,
    put: Script,
}

impl RedisDocStore {
    /// Documents on `redis`, under its key prefix.
    pub fn new(redis: RedisConnection) -> Self {
        Self {
            redis,
            put: Script::new(PUT_SCRIPT),
        }
    }

    fn doc_key(&self, id: &DocId) -> String {
        self.redis.key(&format!("doc:{id}"))
    }

    fn versions_key(&self, id: &DocId) -> String {
        self.redis.key(&format!("doc:{id}:versions"))
    }

    fn parse_writer(&self, id: &DocId, text: Option<String>) -> Result<DocWriter, StoreError> {
        match text {
            None => Ok(DocWriter::Api),
            Some(text) => serde_json::from_str(&text).map_err(|err| {
                self.redis
                    .corrupt(&format!("the writer of document `{id}`"), err)
            }),
        }
    }

    /// All stored versions of `id`, oldest first.
    async fn stored_versions(&self, id: &DocId) -> Result<Vec<(u64, StoredVersion)>, StoreError> {
        let mut redis = self.redis.handle();
        let fields: Vec<(u64, String)> =
            redis.hgetall(self.versions_key(id)).await.map_err(|err| {
                self.redis
                    .unavailable(&format!("read the versions of document `{id}`"), &err)
            })?;
        let mut versions = fields
            .into_iter()
            .map(|(version, text)| {
                serde_json::from_str(&text)
                    .map(|stored| (version, stored))
                    .map_err(|err| {
                        self.redis
                            .corrupt(&format!("version {version} of document `{id}`"), err)
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        versions.sort_by_key(|(version, _)| *version);
        Ok(versions)
    }

    fn index_key(&self) -> String {
        self.redis.key("docs")
    }
}

#[async_trait]
impl DocStore for RedisDocStore {
    async fn get(&self, id: &DocId) -> Result<Option<Document>, StoreError> {
        let mut redis = self.redis.handle();
        let (content, modified, version, writer): (
            Option<String>,
            Option<u64>,
            Option<u64>,
            Option<String>,
        ) = redis
            .hmget(
                self.doc_key(id),
                &["content", "modified", "version", "writer"],
            )
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("read document `{id}`"), &err)
            })?;
        let Some(content) = content else {
            return Ok(None);
        };
        Ok(Some(Document {
            bytes: content.len() as u64,
            content,
            modified: modified.unwrap_or(0),
            version: version.unwrap_or(1),
            writer: self.parse_writer(id, writer)?,
        }))
    }

    async fn get_version(&self, id: &DocId, version: u64) -> Result<Option<Document>, StoreError> {
        let mut redis = self.redis.handle();
        let text: Option<String> =
            redis
                .hget(self.versions_key(id), version)
                .await
                .map_err(|err| {
                    self.redis
                        .unavailable(&format!("read document `{id}`"), &err)
                })?;
        text.map(|text| {
            let stored: StoredVersion = serde_json::from_str(&text).map_err(|err| {
                self.redis
                    .corrupt(&format!("version {version} of document `{id}`"), err)
            })?;
            Ok(Document {
                bytes: stored.content.len() as u64,
                content: stored.content,
                modified: stored.at,
                version,
                writer: stored.writer,
            })
        })
        .transpose()
    }

    async fn versions(&self, id: &DocId) -> Result<Vec<DocVersion>, StoreError> {
        Ok(self
            .stored_versions(id)
            .await?
            .into_iter()
            .map(|(version, stored)| DocVersion {
                version,
                bytes: stored.content.len() as u64,
                writer: stored.writer,
                at: stored.at,
            })
            .collect())
    }

    async fn put(
        &self,
        id: &DocId,
        content: &str,
        writer: DocWriter,
    ) -> Result<DocVersion, StoreError> {
        let bytes = content.len() as u64;
        let at = now_ms();
        let stored = StoredVersion {
            content: content.to_string(),
            writer,
            at,
        };
        let encode = |err| self.redis.corrupt(&format!("document `{id}`"), err);
        let writer_json = serde_json::to_string(&stored.writer).map_err(encode)?;
        let version_json = serde_json::to_string(&stored).map_err(encode)?;
        let mut redis = self.redis.handle();
        let version: u64 = self
            .put
            .key(self.doc_key(id))
            .key(self.versions_key(id))
            .key(self.index_key())
            .arg(id.as_str())
            .arg(content)
            .arg(bytes)
            .arg(at)
            .arg(writer_json)
            .arg(version_json)
            .invoke_async(&mut redis)
            .await
            .map_err(|err| {
                self.redis
                    .unavailable(&format!("write document `{id}`"), &err)
            })?;
        Ok(DocVersion {
            version,
            bytes,
            writer: stored.writer,
            at,
        })
    }

    async fn delete(&self, id: &DocId) -> Result<bool, StoreError> {
        let mut redis = self.redis.handle();
        let (deleted,): (u64,) = redis::pipe()
            .atomic()
            .del(self.doc_key(id))
            .del(self.versions_key(id))
            .ignore()
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
            .filter(|id| story_id.is_none_or(|story| id.belongs_to_story(story)))
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
