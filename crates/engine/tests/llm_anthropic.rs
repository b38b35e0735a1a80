//! The Anthropic provider against a local server speaking the Messages API.

mod llm_common;

use std::sync::Arc;

use bmad2pf_engine::llm::{AnthropicProvider, LlmRequest, Message, ToolCall, ToolDefinition};
use llm_common::{Reply, VendorCase, complete_streamed, reported, sse_event};
use serde_json::{Value, json};

const KEY: &str = "sk-ant-api03-test-key";
const MODEL: &str = "claude-sonnet-4-5";

fn anthropic_case() -> VendorCase {
    VendorCase {
        provider: "anthropic",
        model: MODEL,
        api_key: KEY,
        build: |url| Arc::new(AnthropicProvider::new(KEY.into(), Some(url)).expect("provider")),
        error_body,
        stream_start: || sse_event("message_start", &message_start(25, 0, 0)),
    }
}

crate::vendor_error_tests!(crate::anthropic_case);

/// Anthropic's error body: `{"type": "error", "error": {"type", "message"}}`.
fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        401 => "authentication_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500 => "api_error",
        _ => "invalid_request_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})
}

fn message(content: Value, stop_reason: &str) -> Value {
    json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {"input_tokens": 21, "cache_creation_input_tokens": 188, "cache_read_input_tokens": 2048,
                  "cache_creation": {"ephemeral_5m_input_tokens": 188, "ephemeral_1h_input_tokens": 0},
                  "output_tokens": 7, "service_tier": "standard"}
    })
}

/// `message_start`; Anthropic's `input_tokens` leaves out the cache reads and writes.
fn message_start(input_tokens: u64, cache_write: u64, cache_read: u64) -> Value {
    json!({"type": "message_start", "message": {
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant",
        "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": cache_write,
                  "cache_read_input_tokens": cache_read, "output_tokens": 1}
    }})
}

fn text_delta(index: usize, text: &str) -> String {
    sse_event(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
    )
}

fn block_stop(index: usize) -> String {
    sse_event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": index}),
    )
}

/// A whole text block at `index`: its start, one delta with `text`, its stop.
fn text_block(index: usize, text: &str) -> Vec<String> {
    vec![
        sse_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        ),
        text_delta(index, text),
        block_stop(index),
    ]
}

fn message_end(stop_reason: &str, output_tokens: u64) -> Vec<String> {
    vec![
        sse_event(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                    "usage": {"output_tokens": output_tokens}}),
        ),
        sse_event("message_stop", &json!({"type": "message_stop"})),
    ]
}

#[tokio::test]
async fn plain_completion_sends_the_documented_request() {
    let (server, provider) = anthropic_case()
        .serve(vec![Reply::json(
            200,
            message(
                json!([{"type": "text", "text": "Hi! My name is Claude."}]),
                "end_turn",
            ),
        )])
        .await;
    let mut request = LlmRequest::new(MODEL, "Hello");
    request.system = Some("You are a helpful assistant.".into());
    request.max_tokens = 1024;
    request.temperature = Some(0.5);
    request.messages.push(Message::Assistant {
        text: "Hi.".into(),
        tool_calls: Vec::new(),
    });
    request
        .messages
        .push(Message::User("What is your name?".into()));
    let response = provider.complete(&request, None).await.expect("completion");

    assert_eq!(response.text, "Hi! My name is Claude.");
    assert_eq!(response.model, "claude-sonnet-4-5-20250929");
    assert_eq!(response.finish_reason.as_deref(), Some("end_turn"));
    // input_tokens (21) + cache writes (188) + cache reads (2048).
    assert_eq!(response.usage, reported(2257, 7, 2048, 188, 0));

    let sent = server.single_request();
    assert_eq!(sent.target, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(
        sent.body,
        json!({
            "model": MODEL,
            "max_tokens": 1024,
            "temperature": 0.5,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},
                {"role": "user", "content": [{"type": "text", "text": "What is your name?"}]}
            ],
            "system": "You are a helpful assistant."
        })
    );
}

#[tokio::test]
async fn without_a_temperature_none_is_sent() {
    let ok = Reply::json(
        200,
        message(json!([{"type": "text", "text": "Hi"}]), "end_turn"),
    );
    llm_common::no_temperature_is_sent_without_one(&anthropic_case(), ok).await;
}

/// The API answers 400 to a text block without visible text. An empty
/// reply that is being repaired leaves such a turn in the conversation.
#[tokio::test]
async fn a_blank_assistant_turn_is_left_out() {
    let (server, provider) = anthropic_case()
        .serve(vec![Reply::json(
            200,
            message(json!([{"type": "text", "text": "{}"}]), "end_turn"),
        )])
        .await;
    let mut request = LlmRequest::new(MODEL, "Status?");
    request.messages.push(Message::Assistant {
        text: " \n".into(),
        tool_calls: Vec::new(),
    });
    request.messages.push(Message::User("Reply again.".into()));
    provider.complete(&request, None).await.expect("completion");
    assert_eq!(
        server.single_request().body["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "Status?"},
            {"type": "text", "text": "Reply again."}
        ]}])
    );
}

/// A reply the model ended without a block: no answer, and worth another try.
#[tokio::test]
async fn a_streamed_reply_without_content_is_an_empty_reply() {
    let mut events = vec![sse_event("message_start", &message_start(25, 0, 0))];
    events.extend(message_end("end_turn", 1));
    let error = anthropic_case()
        .call(Reply::Sse(events), true, std::time::Duration::from_secs(30))
        .await;
    assert_eq!(error.code(), "llm_empty_reply", "{error}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn json_output_is_asked_for_in_the_system_prompt() {
    let (server, provider) = anthropic_case()
        .serve(vec![Reply::json(
            200,
            message(
                json!([{"type": "text", "text": "{\"ok\": true}"}]),
                "end_turn",
            ),
        )])
        .await;
    let mut request = LlmRequest::new(MODEL, "Status?");
    request.json_output = true;
    provider.complete(&request, None).await.expect("completion");
    let system = server.single_request().body["system"].clone();
    assert!(
        system.as_str().is_some_and(|s| s.contains("JSON object")),
        "{system}"
    );
}

#[tokio::test]
async fn streaming_delivers_deltas_in_order_with_usage() {
    let pieces = ["Hello", "! How", " can I hel", "p — ✓"];
    let mut events = vec![
        sse_event("message_start", &message_start(25, 1100, 0)),
        sse_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        sse_event("ping", &json!({"type": "ping"})),
    ];
    events.extend(pieces.iter().map(|p| text_delta(0, p)));
    events.push(block_stop(0));
    events.extend(message_end("end_turn", 15));
    let (server, provider) = anthropic_case().serve(vec![Reply::Sse(events)]).await;
    let (response, tokens) =
        complete_streamed(provider.as_ref(), &LlmRequest::new(MODEL, "Hello")).await;
    let response = response.expect("streamed completion");

    assert_eq!(tokens, pieces);
    assert_eq!(response.text, pieces.concat());
    assert_eq!(response.usage, reported(1125, 15, 0, 1100, 0));
    assert_eq!(response.finish_reason.as_deref(), Some("end_turn"));
    assert_eq!(server.single_request().body["stream"], json!(true));
}

#[tokio::test]
async fn tool_use_is_parsed_and_results_are_sent_back() {
    let reply = message(
        json!([
            {"type": "text", "text": "I'll check the weather."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"city": "San Francisco"}}
        ]),
        "tool_use",
    );
    let (server, provider) = anthropic_case().serve(vec![Reply::json(200, reply)]).await;
    let mut request = LlmRequest::new(MODEL, "Weather in Oslo and Bergen?");
    request.tools = vec![ToolDefinition {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    }];
    request.messages.push(Message::Assistant {
        text: String::new(),
        tool_calls: vec![
            ToolCall {
                id: "toolu_1".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Oslo"}),
                signature: None,
            },
            ToolCall {
                id: "toolu_2".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Bergen"}),
                signature: None,
            },
        ],
    });
    for (id, content, is_error) in [
        ("toolu_1", "4°C", false),
        ("toolu_2", "error: no station in Bergen", true),
    ] {
        request.messages.push(Message::ToolResult {
            call_id: id.into(),
            name: "get_weather".into(),
            content: content.into(),
            is_error,
        });
    }
    let response = provider.complete(&request, None).await.expect("completion");

    assert_eq!(response.text, "I'll check the weather.");
    assert_eq!(
        response.tool_calls,
        vec![ToolCall {
            id: "toolu_01A09q90qw90lq917835lq9".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "San Francisco"}),
            signature: None,
        }]
    );
    let sent = server.single_request();
    assert_eq!(
        sent.body["tools"],
        json!([{"name": "get_weather", "description": "Current weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    );
    // Both tool uses in one assistant turn, both results merged into one
    // user turn; the failed one marked.
    assert_eq!(
        sent.body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo and Bergen?"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Bergen"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "4°C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "error: no station in Bergen", "is_error": true}
            ]}
        ])
    );
}

#[tokio::test]
async fn streamed_tool_use_is_assembled_from_json_deltas() {
    let mut events = vec![sse_event("message_start", &message_start(472, 0, 0))];
    events.extend(text_block(0, "Checking"));
    events.push(sse_event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}}),
    ));
    for part in ["", "{\"city\": \"San", " Francisco\"}"] {
        events.push(sse_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": part}}),
        ));
    }
    events.push(block_stop(1));
    events.extend(message_end("tool_use", 89));
    let (_server, provider) = anthropic_case().serve(vec![Reply::Sse(events)]).await;
    let (response, tokens) =
        complete_streamed(provider.as_ref(), &LlmRequest::new(MODEL, "Weather?")).await;
    let response = response.expect("completion");
    assert_eq!(tokens, ["Checking"]);
    assert_eq!(response.text, "Checking");
    assert_eq!(response.tool_calls.len(), 1);
    assert_eq!(response.tool_calls[0].id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(
        response.tool_calls[0].arguments,
        json!({"city": "San Francisco"})
    );
    assert_eq!(response.usage, reported(472, 89, 0, 0, 0));
}

#[tokio::test]
async fn an_overloaded_error_event_mid_stream_is_a_server_error() {
    let events = vec![
        sse_event("message_start", &message_start(10, 0, 0)),
        sse_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        text_delta(0, "Partial"),
        sse_event(
            "error",
            &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
    ];
    let (_server, provider) = anthropic_case().serve(vec![Reply::Sse(events)]).await;
    let (result, _) = complete_streamed(provider.as_ref(), &LlmRequest::new(MODEL, "hi")).await;
    let error = result.expect_err("the stream failed");
    assert!(
        matches!(&error, bmad2pf_engine::llm::LlmError::Server { status: 529, message, .. } if message.contains("Overloaded")),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn cumulative_counts_in_message_delta_replace_those_of_message_start() {
    // message_delta's usage is cumulative; besides output_tokens it may
    // carry the input and cache counts, which then win.
    let mut events = vec![sse_event("message_start", &message_start(30, 0, 4000))];
    events.extend(text_block(0, "Done."));
    events.push(sse_event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"input_tokens": 35, "cache_creation_input_tokens": 500,
                          "cache_read_input_tokens": 4000, "output_tokens": 42}}),
    ));
    events.push(sse_event("message_stop", &json!({"type": "message_stop"})));
    let (_server, provider) = anthropic_case().serve(vec![Reply::Sse(events)]).await;
    let (response, _) = complete_streamed(provider.as_ref(), &LlmRequest::new(MODEL, "hi")).await;
    let response = response.expect("completion");
    assert_eq!(response.usage, reported(4535, 42, 4000, 500, 0));
}

#[tokio::test]
async fn null_cache_counts_are_zero() {
    let mut reply = message(json!([{"type": "text", "text": "ok"}]), "end_turn");
    reply["usage"] = json!({"input_tokens": 12, "cache_creation_input_tokens": null,
                            "cache_read_input_tokens": null, "output_tokens": 3});
    let (_server, provider) = anthropic_case().serve(vec![Reply::json(200, reply)]).await;
    let response = provider
        .complete(&LlmRequest::new(MODEL, "hi"), None)
        .await
        .expect("completion");
    assert_eq!(response.usage, reported(12, 3, 0, 0, 0));
}

#[tokio::test]
async fn a_refusal_stop_is_a_blocked_reply_not_an_answer() {
    let whole = message(json!([{"type": "text", "text": "I can"}]), "refusal");
    let mut streamed = vec![sse_event("message_start", &message_start(10, 0, 0))];
    streamed.extend(text_block(0, "I can"));
    streamed.extend(message_end("refusal", 3));
    let (_server, provider) = anthropic_case()
        .serve(vec![Reply::json(200, whole), Reply::Sse(streamed)])
        .await;
    let request = LlmRequest::new(MODEL, "Something it declines");
    let whole = provider.complete(&request, None).await;
    let (streamed, _) = complete_streamed(provider.as_ref(), &request).await;
    for result in [whole, streamed] {
        let error = result.expect_err("declined");
        assert_eq!(error.code(), "llm_content_blocked");
        assert!(error.to_string().contains("refusal"), "{error}");
    }
}
