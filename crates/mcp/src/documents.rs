//! Documents as MCP resources, and the `read_document` tool.
//!
//! A story's document `{story}__{name}` is the resource
//! `doc://{story}/{name}` (Markdown). `resources/list` lists every
//! document of a story (ids without `__` are not a story's and are left
//! out); the template `doc://{story}/{name}` lets a client name one. A URI
//! is read back by joining its two parts with `__`, so the document a
//! listed URI names is the one listed, wherever the story's own `__` are.

use crate::arguments::Arguments;
use crate::errors::{as_mcp_error, refused};
use bmad2pf_engine::store::ids::DocId;
use bmad2pf_engine::store::{StoreError, doc_id};
use bmad2pf_engine::{Engine, EngineError};
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolResult, ContentBlock, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
};
use serde::Deserialize;
use serde_json::json;

const SCHEME: &str = "doc://";
const MARKDOWN: &str = "text/markdown";
/// Between the story and the name in a document id.
const SEPARATOR: &str = "__";

/// The URI of document `name` of story `story`.
pub fn document_uri(story: &str, name: &str) -> String {
    format!("{SCHEME}{story}/{name}")
}

pub fn template() -> ResourceTemplate {
    ResourceTemplate::new(format!("{SCHEME}{{story}}/{{name}}"), "document")
        .with_title("A story's document")
        .with_description(
            "The latest version of a document a run wrote for a story, as Markdown \
            (`doc://{story}/{name}`, e.g. `doc://shop-1/prd`).",
        )
        .with_mime_type(MARKDOWN)
}

/// Every document of every story, as resources.
pub async fn list(engine: &Engine) -> Result<Vec<Resource>, McpError> {
    let documents = engine
        .docs()
        .list(None)
        .await
        .map_err(|e| as_mcp_error(e.into()))?;
    Ok(documents
        .into_iter()
        .filter_map(|meta| {
            let id = meta.id.to_string();
            let (story, name) = id.split_once(SEPARATOR)?;
            Some(
                Resource::new(document_uri(story, name), id.clone())
                    .with_title(format!("{name} ({story})"))
                    .with_description(format!("Document `{name}` of story `{story}`"))
                    .with_mime_type(MARKDOWN)
                    .with_size(meta.bytes),
            )
        })
        .collect())
}

/// The document a `doc://{story}/{name}` URI names.
fn parse_uri(uri: &str) -> Result<DocId, McpError> {
    let invalid = |why: String| {
        McpError::invalid_params(
            format!("invalid document URI {uri:?}: {why}"),
            Some(json!({"uri": uri, "expected": "doc://{story}/{name}"})),
        )
    };
    let (story, name) = uri
        .strip_prefix(SCHEME)
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| invalid("expected doc://{story}/{name}".to_string()))?;
    doc_id(story, name).map_err(|e| invalid(e.to_string()))
}

/// `resources/read` of a document URI.
pub async fn read(engine: &Engine, uri: &str) -> Result<ReadResourceResult, McpError> {
    let id = parse_uri(uri)?;
    let document = engine
        .docs()
        .get(&id)
        .await
        .map_err(|e| as_mcp_error(e.into()))?
        .ok_or_else(|| {
            McpError::resource_not_found(format!("no document {uri}"), Some(json!({"uri": uri})))
        })?;
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(document.content, uri).with_mime_type(MARKDOWN),
    ]))
}

/// Arguments of `read_document`.
#[derive(Debug, Deserialize)]
struct ReadArguments {
    story_id: String,
    name: String,
    version: Option<u64>,
}

/// `read_document`: a document's text (a version of it, if asked).
pub async fn read_document(
    engine: &Engine,
    arguments: Arguments,
) -> Result<CallToolResult, McpError> {
    let arguments: ReadArguments = arguments.read()?;
    let id = match doc_id(&arguments.story_id, &arguments.name) {
        Ok(id) => id,
        Err(e) => return refused(EngineError::Store(StoreError::from(e))),
    };
    let found = match arguments.version {
        Some(version) => engine.docs().get_version(&id, version).await,
        None => engine.docs().get(&id).await,
    };
    match found {
        Ok(Some(document)) => Ok(CallToolResult::success(vec![ContentBlock::text(
            document.content,
        )])),
        Ok(None) => Err(McpError::invalid_params(
            match arguments.version {
                Some(version) => format!("document `{id}` has no version {version}"),
                None => format!("no document `{id}`"),
            },
            Some(json!({"code": "not_found"})),
        )),
        Err(error) => refused(error.into()),
    }
}
