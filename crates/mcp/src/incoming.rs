//! What a client sends, checked before the SDK sees it, over either
//! transport: one JSON text in, one [`Incoming`] out.
//!
//! The SDK reads a message in one go, as the whole JSON-RPC union of every
//! request it knows, and falls back to a "custom request" when a known
//! method's params do not fit: `tools/call` without a `name` would be
//! answered "method not found" (-32601), and `params: "x"` fails the whole
//! union, which loses the id, so the client waits forever for an answer.
//! Here a request of a known method has its params read as that method's
//! own type first; one that does not fit is answered `invalid params`
//! (-32602) with the request's id, and any other JSON that is no JSON-RPC
//! message is answered `invalid request` (-32600), with its id when it has
//! one. A notification is never answered (JSON-RPC), so one that does not
//! fit is only dropped. Whether text that is not JSON at all is answered is
//! the transport's choice ([`Incoming::NotJson`]).

use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequest, ClientJsonRpcMessage, CompleteRequest, GetPromptRequest, InitializeRequest,
    ListPromptsRequest, ListResourceTemplatesRequest, ListResourcesRequest, ListToolsRequest,
    PingRequest, ReadResourceRequest, RequestId,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// The UTF-8 byte order mark, which JSON parsers may ignore (RFC 8259 §8.1).
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// One JSON text from the client, sorted.
#[derive(Debug)]
pub enum Incoming {
    /// A JSON-RPC message the SDK takes as it is.
    Message(Box<ClientJsonRpcMessage>),
    /// Not JSON (or not UTF-8): there is no id to answer to. The reason is
    /// for the log, or for a `parse error` answer.
    NotJson(String),
    /// JSON that is no message the server can take: answer `error`, to `id`
    /// when the message carries one a client can match.
    Refused {
        id: Option<RequestId>,
        error: McpError,
    },
    /// A notification whose params do not fit its method (or that is no
    /// message at all): notifications are never answered. The reason is
    /// for the log.
    UnfitNotification(String),
}

impl Incoming {
    /// Sorts one JSON text (a line over stdio, a body over HTTP).
    pub fn check(text: &[u8]) -> Self {
        let text = text.strip_prefix(UTF8_BOM).unwrap_or(text);
        let value: Value = match serde_json::from_slice(text) {
            Ok(value) => value,
            Err(error) => return Self::NotJson(error.to_string()),
        };
        let Value::Object(object) = value else {
            let what = if value.is_array() {
                "a batch (a JSON array); send one message at a time"
            } else {
                "not a JSON object"
            };
            return Self::Refused {
                id: None,
                error: McpError::invalid_request(format!("invalid request: {what}"), None),
            };
        };
        let id = object.get("id").map(|id| usable_id(id.clone()));
        let method = object.get("method").and_then(Value::as_str);
        if let (Some(method), Some(id)) = (method, &id) {
            let Some(id) = id.clone() else {
                return Self::Refused {
                    id: None,
                    error: McpError::invalid_request(
                        "invalid request: `id` must be a string or an integer",
                        None,
                    ),
                };
            };
            if let Some(Err(problem)) = params_fit(method, &object) {
                // The SDK's params types are read through a wrapper that
                // names itself in serde's message; a client knows it as an object.
                let problem = problem.to_string().replace("struct WithMeta", "an object");
                return Self::Refused {
                    id: Some(id),
                    error: McpError::invalid_params(
                        format!("invalid params for `{method}`: {problem}"),
                        Some(json!({
                            "method": method,
                            "problems": [{"path": "/params", "message": problem}],
                        })),
                    ),
                };
            }
        }
        match serde_json::from_slice::<ClientJsonRpcMessage>(text) {
            Ok(message) => Self::Message(Box::new(message)),
            Err(error) if method.is_some() && id.is_none() => {
                Self::UnfitNotification(error.to_string())
            }
            Err(error) => Self::Refused {
                id: id.flatten(),
                error: McpError::invalid_request(
                    format!(
                        "invalid request: not a JSON-RPC 2.0 message this server takes ({error})"
                    ),
                    None,
                ),
            },
        }
    }
}

/// `id` as a request id, if it is one (a string or an integer).
fn usable_id(id: Value) -> Option<RequestId> {
    serde_json::from_value(id).ok()
}

/// Whether the params of a request for `method` fit that method, for the
/// methods of the current protocol (`None` for any other: the SDK and the
/// handler answer those; the legacy subscriptions and logging methods are
/// not served, and are answered `method not found` whatever their params).
fn params_fit(method: &str, message: &Map<String, Value>) -> Option<Result<(), serde_json::Error>> {
    let mut request = Map::new();
    request.insert("method".into(), Value::String(method.into()));
    if let Some(params) = message.get("params") {
        request.insert("params".into(), params.clone());
    }
    let request = Value::Object(request);
    // The SDK reads the params of a list request leniently: a `cursor` that
    // is not a string would be taken as no params at all, and the first
    // page listed as if no cursor had been sent.
    let paginated = matches!(
        method,
        "tools/list" | "resources/list" | "resources/templates/list" | "prompts/list"
    );
    if paginated
        && let Some(cursor) = request.pointer("/params/cursor")
        && !(cursor.is_string() || cursor.is_null())
    {
        return Some(Err(serde::de::Error::custom(
            "invalid type for `cursor`: expected a string",
        )));
    }
    Some(match method {
        "initialize" => fits::<InitializeRequest>(request),
        "ping" => fits::<PingRequest>(request),
        "tools/list" => fits::<ListToolsRequest>(request),
        "tools/call" => fits::<CallToolRequest>(request),
        "resources/list" => fits::<ListResourcesRequest>(request),
        "resources/templates/list" => fits::<ListResourceTemplatesRequest>(request),
        "resources/read" => fits::<ReadResourceRequest>(request),
        "prompts/list" => fits::<ListPromptsRequest>(request),
        "prompts/get" => fits::<GetPromptRequest>(request),
        "completion/complete" => fits::<CompleteRequest>(request),
        _ => return None,
    })
}

fn fits<T: DeserializeOwned>(request: Value) -> Result<(), serde_json::Error> {
    serde_json::from_value::<T>(request).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{ClientRequest, ErrorCode, JsonRpcMessage, NumberOrString};

    fn refused(text: &str) -> (Option<RequestId>, McpError) {
        match Incoming::check(text.as_bytes()) {
            Incoming::Refused { id, error } => (id, error),
            other => panic!("{text} was not refused: {other:?}"),
        }
    }

    #[test]
    fn a_known_method_with_params_that_do_not_fit_is_invalid_params_with_its_id() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_run","arguments":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1,2]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":5}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":5}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#,
        ] {
            let (id, error) = refused(text);
            assert_eq!(id, Some(NumberOrString::Number(1)), "{text}");
            assert_eq!(error.code, ErrorCode::INVALID_PARAMS, "{text}");
            let data = error.data.unwrap_or_default();
            assert_eq!(data["problems"][0]["path"], "/params", "{text}");
        }
    }

    #[test]
    fn json_that_is_no_message_is_invalid_request_with_the_id_it_has() {
        let (id, error) = refused(r#"{"id":"a","method":"ping"}"#);
        assert_eq!(id, Some(NumberOrString::String("a".into())));
        assert_eq!(error.code, ErrorCode::INVALID_REQUEST);
        for text in [
            r#"{"foo":1}"#,
            "42",
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call"}"#,
        ] {
            let (id, error) = refused(text);
            assert_eq!(id, None, "{text}");
            assert_eq!(error.code, ErrorCode::INVALID_REQUEST, "{text}");
        }
    }

    #[test]
    fn messages_that_fit_pass_and_the_rest_is_sorted() {
        let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_run","arguments":{"run_id":"x"}}}"#;
        let Incoming::Message(message) = Incoming::check(call.as_bytes()) else {
            panic!("a right call is a message")
        };
        let JsonRpcMessage::Request(request) = *message else {
            panic!("a right call is a request")
        };
        assert!(matches!(request.request, ClientRequest::CallToolRequest(_)));
        let bom = b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}";
        assert!(matches!(Incoming::check(bom), Incoming::Message(_)));
        for garbage in [&b"hello"[..], b"", b"{\"a\":\"\xff\"}", b"{"] {
            assert!(matches!(Incoming::check(garbage), Incoming::NotJson(_)));
        }
        let bad_notification =
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":"x"}"#;
        assert!(matches!(
            Incoming::check(bad_notification.as_bytes()),
            Incoming::UnfitNotification(_) | Incoming::Message(_)
        ));
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert!(matches!(
            Incoming::check(initialized.as_bytes()),
            Incoming::Message(message) if matches!(*message, JsonRpcMessage::Notification(_))
        ));
    }
}
