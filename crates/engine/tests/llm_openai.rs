//! The OpenAI provider against a local server speaking Chat Completions, and the
//! same type serving `openai_compatible` at a custom base URL.

mod llm_common;

use std::sync::Arc;

use bmad2pf_engine::llm::{
    Cutoff, LlmProvider, LlmRequest, Message, OpenAiProvider, ToolCall, ToolDefinition,
};
use llm_common::{Reply, VendorCase, VendorServer, complete_streamed, reported, sse_data};
use serde_json::{Value, json};

const KEY: &str = "sk-test-0123456789abcdef";

fn openai_case() -> VendorCase {
    VendorCase {
        provider: "openai",
        model: "gpt-4o-mini",
        api_key: KEY,
        build: |url| {
            Arc::new(
                OpenAiProvider::openai(KEY.into(), Some(&format!("{url}/v1"))).expect("provider"),
            )
        },
        error_body,
        stream_start: || sse_data(&chunk(json!({"role": "assistant", "content": ""}), None)),
    }
}

fn compatible_case() -> VendorCase {
    VendorCase {
        provider: "openai_compatible",
        model: "llama3.2",
        api_key: KEY,
        build: |url| {
            Arc::new(
                OpenAiProvider::compatible(&format!("{url}/v1/"), Some(KEY.into()))
                    .expect("provider"),
            )
        },
        error_body,
        stream_start: || sse_data(&chunk(json!({"role": "assistant", "content": ""}), None)),
    }
}

mod openai {
    crate::vendor_error_tests!(crate::openai_case);
}

mod compatible {
    crate::vendor_error_tests!(crate::compatible_case);
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
fn error_body(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", json!("invalid_api_key")),
        404 => ("invalid_request_error", json!("model_not_found")),
        429 => ("requests", json!("rate_limit_exceeded")),
        500 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// A `chat.completion` reply as the API sends it.
fn completion(message: Value, finish_reason: &str) -> Value {
    json!({
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": 1519, "completion_tokens": 410, "total_tokens": 1929,
            "prompt_tokens_details": {"cached_tokens": 1280, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        },
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306"
    })
}

/// A `chat.completion.chunk` with one choice delta.
fn chunk(delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_06737a9306",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        "usage": null
    })
}

/// The final chunk `stream_options.include_usage` adds: no choices, the
/// counts, cached prompt tokens and reasoning tokens included in the totals.
fn usage_chunk(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> Value {
    json!({
        "id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_06737a9306", "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                  "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0}}
    })
}

/// Each call's id and arguments, in order.
fn ids_and_arguments(calls: Vec<ToolCall>) -> Vec<(String, Value)> {
    calls.into_iter().map(|c| (c.id, c.arguments)).collect()
}

fn weather_tool() -> ToolDefinition {
    ToolDefinition {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }
}

#[tokio::test]
async fn plain_completion_sends_the_documented_request() {
    let (server, provider) = openai_case()
        .serve(vec![Reply::json(
            200,
            completion(
                json!({"role": "assistant", "content": "Hello there!", "refusal": null}),
                "stop",
            ),
        )])
        .await;
    let mut request = LlmRequest::new("gpt-4o-mini", "Say hello");
    request.system = Some("You are terse.".into());
    request.temperature = Some(0.3);
    request.max_tokens = 50;
    request.json_output = true;
    let response = provider.complete(&request, None).await.expect("completion");

    assert_eq!(response.text, "Hello there!");
    assert_eq!(response.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(response.finish_reason.as_deref(), Some("stop"));
    // Cached prompt tokens are already part of `prompt_tokens`, reasoning
    // tokens part of `completion_tokens`.
    assert_eq!(response.usage, reported(1519, 410, 1280, 0, 256));

    let sent = server.single_request();
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.target, "/v1/chat/completions");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        sent.body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say hello"}
            ],
            "temperature": 0.3,
            "max_completion_tokens": 50,
            "response_format": {"type": "json_object"}
        })
    );
}

#[tokio::test]
async fn without_a_temperature_none_is_sent() {
    let ok = Reply::json(
        200,
        completion(json!({"role": "assistant", "content": "Hi"}), "stop"),
    );
    llm_common::no_temperature_is_sent_without_one(&openai_case(), ok).await;
}

#[tokio::test]
async fn streaming_delivers_deltas_in_order_with_usage() {
    let pieces = ["Hel", "lo", ", wor", "ld — ✓"];
    let mut events = vec![sse_data(&chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        None,
    ))];
    events.extend(
        pieces
            .iter()
            .map(|p| sse_data(&chunk(json!({"content": p}), None))),
    );
    events.push(sse_data(&chunk(json!({}), Some("stop"))));
    events.push(sse_data(&usage_chunk(2060, 700, 2048, 512)));
    events.push("data: [DONE]\n\n".into());
    let (server, provider) = openai_case().serve(vec![Reply::Sse(events)]).await;
    let (response, tokens) = complete_streamed(
        provider.as_ref(),
        &LlmRequest::new("gpt-4o-mini", "Say hello"),
    )
    .await;
    let response = response.expect("streamed completion");

    assert_eq!(tokens, pieces);
    assert_eq!(response.text, pieces.concat());
    assert_eq!(response.usage, reported(2060, 700, 2048, 0, 512));
    assert_eq!(response.finish_reason.as_deref(), Some("stop"));
    let sent = server.single_request();
    assert_eq!(sent.body["stream"], json!(true));
    assert_eq!(sent.body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn tool_calls_are_parsed_and_sent_back() {
    let reply = completion(
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_abc123", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}
        }]}),
        "tool_calls",
    );
    let (server, provider) = openai_case().serve(vec![Reply::json(200, reply)]).await;
    let call = ToolCall {
        id: "call_0".into(),
        name: "get_weather".into(),
        arguments: json!({"city": "Oslo"}),
        signature: None,
    };
    let mut request = LlmRequest::new("gpt-4o-mini", "Weather in Oslo, then Paris?");
    request.tools = vec![weather_tool()];
    request.messages.push(Message::Assistant {
        text: String::new(),
        tool_calls: vec![call],
    });
    request.messages.push(Message::ToolResult {
        call_id: "call_0".into(),
        name: "get_weather".into(),
        content: "4°C, rain".into(),
        is_error: false,
    });
    let response = provider.complete(&request, None).await.expect("completion");

    assert_eq!(
        response.tool_calls,
        vec![ToolCall {
            id: "call_abc123".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"}),
            signature: None,
        }]
    );
    assert_eq!(response.text, "");
    assert_eq!(response.finish_reason.as_deref(), Some("tool_calls"));
    let sent = server.single_request();
    assert_eq!(
        sent.body["tools"],
        json!([{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }}])
    );
    assert_eq!(
        sent.body["messages"][1],
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_0", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}
        }]})
    );
    assert_eq!(
        sent.body["messages"][2],
        json!({"role": "tool", "tool_call_id": "call_0", "content": "4°C, rain"})
    );
}

#[tokio::test]
async fn streamed_tool_call_fragments_are_assembled() {
    let events = vec![
        sse_data(&chunk(
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "index": 0, "id": "call_xyz", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}]}),
            None,
        )),
        sse_data(&chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"ci"}}]}),
            None,
        )),
        sse_data(&chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\":\"Rome\"}"}}]}),
            None,
        )),
        sse_data(&chunk(json!({}), Some("tool_calls"))),
        sse_data(&usage_chunk(40, 9, 0, 0)),
        "data: [DONE]\n\n".into(),
    ];
    let (_server, provider) = openai_case().serve(vec![Reply::Sse(events)]).await;
    let mut request = LlmRequest::new("gpt-4o-mini", "Weather in Rome?");
    request.tools = vec![weather_tool()];
    let (response, tokens) = complete_streamed(provider.as_ref(), &request).await;
    let response = response.expect("completion");
    assert_eq!(response.tool_calls.len(), 1);
    assert_eq!(response.tool_calls[0].id, "call_xyz");
    assert_eq!(response.tool_calls[0].arguments, json!({"city": "Rome"}));
    assert!(tokens.is_empty());
    assert_eq!(response.usage, reported(40, 9, 0, 0, 0));
}

/// Ollama and Gemini's compatible endpoint stream each call whole, without
/// the `index` OpenAI puts on every delta; some servers give no id, or the
/// arguments as an object.
#[tokio::test]
async fn streamed_tool_calls_without_an_index_are_told_apart() {
    let call = |id: Option<&str>, name: &str, arguments: Value| {
        let mut call =
            json!({"type": "function", "function": {"name": name, "arguments": arguments}});
        if let Some(id) = id {
            call["id"] = json!(id);
        }
        call
    };
    let events = vec![
        // Two calls in one chunk, then one more on its own, each with its id.
        sse_data(&chunk(
            json!({"role": "assistant", "content": "", "tool_calls": [
                call(Some("call_a"), "get_weather", json!("{\"city\":\"Oslo\"}")),
                call(Some("call_b"), "get_weather", json!("{\"city\":\"Rome\"}")),
            ]}),
            None,
        )),
        sse_data(&chunk(
            json!({"tool_calls": [call(Some("call_c"), "get_weather", json!({"city": "Lima"}))]}),
            None,
        )),
        // A call with no id, whose arguments come in two pieces.
        sse_data(&chunk(
            json!({"tool_calls": [call(None, "get_weather", json!("{\"city\":"))]}),
            None,
        )),
        sse_data(&chunk(
            json!({"tool_calls": [{"index": null, "function": {"arguments": "\"Kyiv\"}"}}]}),
            None,
        )),
        // A proxy that repeats the id and the whole name on each delta.
        sse_data(&chunk(
            json!({"tool_calls": [call(Some("call_e"), "get_weather", json!("{\"city\""))]}),
            None,
        )),
        sse_data(&chunk(
            json!({"tool_calls": [call(Some("call_e"), "get_weather", json!(":\"Quito\"}"))]}),
            None,
        )),
        sse_data(&chunk(json!({}), Some("tool_calls"))),
        "data: [DONE]\n\n".into(),
    ];
    let (_server, provider) = compatible_case().serve(vec![Reply::Sse(events)]).await;
    let mut request = LlmRequest::new("llama3.2", "Weather in four cities?");
    request.tools = vec![weather_tool()];
    let (response, _) = complete_streamed(provider.as_ref(), &request).await;
    let calls = response.expect("completion").tool_calls;
    assert!(calls.iter().all(|c| c.name == "get_weather"), "{calls:?}");
    assert_eq!(
        ids_and_arguments(calls),
        [
            ("call_a".to_string(), json!({"city": "Oslo"})),
            ("call_b".to_string(), json!({"city": "Rome"})),
            ("call_c".to_string(), json!({"city": "Lima"})),
            ("call_3".to_string(), json!({"city": "Kyiv"})),
            ("call_e".to_string(), json!({"city": "Quito"})),
        ]
    );
}

#[tokio::test]
async fn a_whole_reply_with_calls_without_ids_or_with_object_arguments_is_read() {
    let message = json!({"role": "assistant", "content": null, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
        {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
    ]});
    let reply = json!({"id": "c", "object": "chat.completion", "model": "llama3.2",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]});
    let (_server, provider) = compatible_case().serve(vec![Reply::json(200, reply)]).await;
    let mut request = LlmRequest::new("llama3.2", "Weather in Oslo and Rome?");
    request.tools = vec![weather_tool()];
    let response = provider.complete(&request, None).await.expect("completion");
    assert_eq!(
        ids_and_arguments(response.tool_calls),
        [
            ("call_0".to_string(), json!({"city": "Oslo"})),
            ("call_9".to_string(), json!({"city": "Rome"})),
        ]
    );
}

/// An empty answer is no answer; an empty one cut off at the token limit
/// (a reasoning model that spent its budget thinking) is a reply whose
/// cutoff the caller reports.
#[tokio::test]
async fn an_empty_answer_is_an_empty_reply_unless_cut_off() {
    let reply = |finish: &str| {
        Reply::json(
            200,
            json!({"id": "c", "object": "chat.completion", "model": "llama3.2",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": ""},
                                "finish_reason": finish}]}),
        )
    };
    let error = compatible_case()
        .call(reply("stop"), false, std::time::Duration::from_secs(30))
        .await;
    assert_eq!(error.code(), "llm_empty_reply", "{error}");

    let (_server, provider) = compatible_case().serve(vec![reply("length")]).await;
    let cut = provider
        .complete(&LlmRequest::new("llama3.2", "Think hard"), None)
        .await
        .expect("a reply cut off at the limit");
    assert_eq!(cut.cutoff(), Some(Cutoff::MaxTokens));
}

/// Mistral's API answers 422 to `stream_options`: the request goes again
/// without it, and later requests leave it out.
#[tokio::test]
async fn a_server_refusing_stream_options_is_asked_again_without_them() {
    let refusal = json!({"object": "error", "message": {"detail": [{"type": "extra_forbidden",
        "loc": ["body", "stream_options", "include_usage"], "msg": "Extra inputs are not permitted",
        "input": true}]}, "type": "invalid_request_error", "param": null, "code": null});
    let answer = || {
        Reply::Sse(vec![
            sse_data(&chunk(
                json!({"role": "assistant", "content": "Bonjour"}),
                None,
            )),
            sse_data(&chunk(json!({}), Some("stop"))),
            "data: [DONE]\n\n".into(),
        ])
    };
    let (server, provider) = compatible_case()
        .serve(vec![Reply::json(422, refusal), answer(), answer()])
        .await;
    let request = LlmRequest::new("mistral-small-latest", "Say hello");
    for _ in 0..2 {
        let (response, tokens) = complete_streamed(provider.as_ref(), &request).await;
        assert_eq!(response.expect("streamed reply").text, "Bonjour");
        assert_eq!(tokens, ["Bonjour"]);
    }
    let sent: Vec<Option<Value>> = server
        .requests()
        .iter()
        .map(|r| r.body.get("stream_options").cloned())
        .collect();
    assert_eq!(sent, [Some(json!({"include_usage": true})), None, None]);
}

#[tokio::test]
async fn compatible_server_without_key_or_usage_still_works() {
    // Some local servers ignore stream_options and answer without [DONE] or usage.
    let events = vec![
        sse_data(&chunk(json!({"role": "assistant", "content": "Hi"}), None)),
        sse_data(&chunk(json!({"content": " you"}), Some("stop"))),
    ];
    let server = VendorServer::start(vec![Reply::Sse(events)]).await;
    let provider =
        OpenAiProvider::compatible(&format!("{}/v1", server.url), None).expect("provider");
    assert_eq!(provider.name(), "openai_compatible");
    let (response, tokens) =
        complete_streamed(&provider, &LlmRequest::new("llama3.2", "one two three")).await;
    let response = response.expect("completion");
    assert_eq!(response.text, "Hi you");
    assert_eq!(tokens, ["Hi", " you"]);
    assert!(response.usage.estimated);
    assert!(response.usage.input_tokens > 0 && response.usage.output_tokens > 0);
    let sent = server.single_request();
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.body["max_tokens"], json!(2000));
}

#[tokio::test]
async fn json_reply_to_a_streaming_request_is_accepted() {
    let (_server, provider) = compatible_case()
        .serve(vec![Reply::json(
            200,
            completion(
                json!({"role": "assistant", "content": "whole reply"}),
                "stop",
            ),
        )])
        .await;
    let (response, tokens) =
        complete_streamed(provider.as_ref(), &LlmRequest::new("llama3.2", "hi")).await;
    let response = response.expect("completion");
    assert_eq!(tokens, ["whole reply"]);
    assert_eq!(response.text, "whole reply");
}

#[tokio::test]
async fn an_error_inside_the_stream_is_a_server_error() {
    let events = vec![
        sse_data(&chunk(json!({"role": "assistant", "content": "Hi"}), None)),
        sse_data(
            &json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}),
        ),
    ];
    let (_server, provider) = openai_case().serve(vec![Reply::Sse(events)]).await;
    let (result, _) =
        complete_streamed(provider.as_ref(), &LlmRequest::new("gpt-4o-mini", "hi")).await;
    let error = result.expect_err("the stream reported an error");
    assert_eq!(error.code(), "llm_server_error");
    assert!(error.to_string().contains("while processing"), "{error}");
}

/// vLLM reports a failure inside the stream with the HTTP status it means.
#[tokio::test]
async fn an_error_inside_the_stream_naming_a_status_is_that_error() {
    let events = vec![
        sse_data(&chunk(json!({"role": "assistant", "content": ""}), None)),
        sse_data(
            &json!({"error": {"object": "error", "type": "BadRequestError", "code": 400,
            "message": "This model's maximum context length is 8192 tokens."}}),
        ),
    ];
    let (_server, provider) = compatible_case().serve(vec![Reply::Sse(events)]).await;
    let (result, _) =
        complete_streamed(provider.as_ref(), &LlmRequest::new("llama3.2", "hi")).await;
    let error = result.expect_err("the stream reported an error");
    assert_eq!(error.code(), "llm_bad_request", "{error}");
    assert!(
        error.to_string().contains("maximum context length"),
        "{error}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn invalid_tool_arguments_are_malformed() {
    let reply = completion(
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": "}
        }]}),
        "tool_calls",
    );
    let (_server, provider) = openai_case().serve(vec![Reply::json(200, reply)]).await;
    let error = provider
        .complete(&LlmRequest::new("gpt-4o-mini", "hi"), None)
        .await
        .expect_err("bad arguments");
    assert!(error.to_string().contains("get_weather"), "{error}");
    assert_eq!(error.code(), "llm_malformed_response");
}

#[tokio::test]
async fn usage_without_details_counts_no_cache_or_reasoning() {
    // Compatible servers leave the details out, send them as null, or empty.
    let bare = |details: Option<Value>| {
        let mut reply = completion(json!({"role": "assistant", "content": "ok"}), "stop");
        reply["usage"] = json!({"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38});
        if let Some(details) = details {
            reply["usage"]["prompt_tokens_details"] = details.clone();
            reply["usage"]["completion_tokens_details"] = details;
        }
        Reply::json(200, reply)
    };
    let (_server, provider) = compatible_case()
        .serve(vec![
            bare(None),
            bare(Some(Value::Null)),
            bare(Some(json!({}))),
        ])
        .await;
    for _ in 0..3 {
        let response = provider
            .complete(&LlmRequest::new("llama3.2", "hi"), None)
            .await
            .expect("completion");
        assert_eq!(response.usage, reported(30, 8, 0, 0, 0));
    }
}

#[tokio::test]
async fn a_refusal_is_a_blocked_reply_not_an_answer() {
    let refusal = "I'm sorry, I cannot help with that request.";
    let whole = completion(
        json!({"role": "assistant", "content": null, "refusal": refusal}),
        "stop",
    );
    let streamed = vec![
        sse_data(&chunk(
            json!({"role": "assistant", "content": null, "refusal": ""}),
            None,
        )),
        sse_data(&chunk(json!({"refusal": "I'm sorry, I cannot "}), None)),
        sse_data(&chunk(json!({"refusal": "help with that request."}), None)),
        sse_data(&chunk(json!({}), Some("stop"))),
        "data: [DONE]\n\n".to_string(),
    ];
    let filtered = completion(
        json!({"role": "assistant", "content": ""}),
        "content_filter",
    );
    let (_server, provider) = openai_case()
        .serve(vec![
            Reply::json(200, whole),
            Reply::Sse(streamed),
            Reply::json(200, filtered),
        ])
        .await;
    let request = LlmRequest::new("gpt-4o-mini", "Something it declines");
    let whole = provider.complete(&request, None).await;
    let (streamed, _) = complete_streamed(provider.as_ref(), &request).await;
    let filtered = provider.complete(&request, None).await;
    for (result, reason) in [
        (whole, refusal),
        (streamed, refusal),
        (filtered, "content_filter"),
    ] {
        let error = result.expect_err("declined");
        assert_eq!(error.code(), "llm_content_blocked");
        assert!(error.to_string().contains(reason), "{error}");
        assert!(!error.is_retryable());
    }
}
