//! The Gemini provider against a local server speaking generateContent.

mod llm_common;

use std::sync::Arc;

use bmad2pf_engine::llm::{
    GeminiProvider, LlmError, LlmProvider, LlmRequest, Message, ToolCall, ToolDefinition,
};
use llm_common::{Reply, VendorCase, complete_streamed, reported, sse_data};
use serde_json::{Value, json};

const KEY: &str = "AIzaSyTest-Key-1234567890";
const MODEL: &str = "gemini-2.0-flash";

fn gemini_case() -> VendorCase {
    VendorCase {
        provider: "gemini",
        model: MODEL,
        api_key: KEY,
        build: |url| Arc::new(GeminiProvider::new(KEY.into(), Some(url)).expect("provider")),
        error_body,
        stream_start: || sse_data(&chunk(json!([{"text": "Once"}]), None, None)),
    }
}

crate::vendor_error_tests!(crate::gemini_case);

/// Google's error body: `{"error": {"code", "message", "status"}}`.
fn error_body(status: u16, message: &str) -> Value {
    let name = match status {
        401 => "UNAUTHENTICATED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        _ => "INVALID_ARGUMENT",
    };
    json!({"error": {"code": status, "message": message, "status": name}})
}

/// The counts of a `usageMetadata`; a zero count is left out, as Gemini does.
#[derive(Clone, Copy)]
struct Counts {
    prompt: u64,
    candidates: u64,
    cached: u64,
    thoughts: u64,
}

/// Prompt and candidate tokens only.
fn counts(prompt: u64, candidates: u64) -> Counts {
    Counts {
        prompt,
        candidates,
        cached: 0,
        thoughts: 0,
    }
}

/// One `GenerateContentResponse` (a whole reply, or one stream event).
fn chunk(parts: Value, finish_reason: Option<&str>, usage: Option<Counts>) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if let Some(reason) = finish_reason {
        candidate["finishReason"] = json!(reason);
    }
    let mut reply = json!({"candidates": [candidate], "modelVersion": "gemini-2.0-flash-001",
                           "responseId": "Hn3MaP3fLI2Gz7IPp7Gg6Qc"});
    if let Some(c) = usage {
        let mut metadata = json!({
            "promptTokenCount": c.prompt, "candidatesTokenCount": c.candidates,
            "totalTokenCount": c.prompt + c.candidates + c.thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": c.prompt}]
        });
        if c.cached > 0 {
            metadata["cachedContentTokenCount"] = json!(c.cached);
            metadata["cacheTokensDetails"] = json!([{"modality": "TEXT", "tokenCount": c.cached}]);
        }
        if c.thoughts > 0 {
            metadata["thoughtsTokenCount"] = json!(c.thoughts);
        }
        reply["usageMetadata"] = metadata;
    }
    reply
}

#[tokio::test]
async fn plain_completion_sends_the_documented_request() {
    let (server, provider) = gemini_case()
        .serve(vec![Reply::json(
            200,
            chunk(
                json!([{"text": "AI learns patterns from data."}]),
                Some("STOP"),
                Some(Counts {
                    prompt: 8200,
                    candidates: 6,
                    cached: 8000,
                    thoughts: 350,
                }),
            ),
        )])
        .await;
    let mut request = LlmRequest::new(MODEL, "Explain AI in one line");
    request.system = Some("You are a cat.".into());
    request.temperature = Some(0.7);
    request.max_tokens = 256;
    request.json_output = true;
    request.messages.push(Message::Assistant {
        text: "Meow.".into(),
        tool_calls: Vec::new(),
    });
    request.messages.push(Message::User("Again".into()));
    let response = provider.complete(&request, None).await.expect("completion");

    assert_eq!(response.text, "AI learns patterns from data.");
    assert_eq!(response.model, "gemini-2.0-flash-001");
    assert_eq!(response.finish_reason.as_deref(), Some("STOP"));
    // The prompt count includes the cached tokens; the thoughts come apart
    // from the candidates and are billed as output.
    assert_eq!(response.usage, reported(8200, 356, 8000, 0, 350));

    let sent = server.single_request();
    assert_eq!(
        sent.target,
        "/v1beta/models/gemini-2.0-flash:generateContent"
    );
    assert_eq!(sent.header("x-goog-api-key"), Some(KEY));
    assert!(!sent.target.contains(KEY), "the key stays out of the URL");
    assert_eq!(
        sent.body,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Explain AI in one line"}]},
                {"role": "model", "parts": [{"text": "Meow."}]},
                {"role": "user", "parts": [{"text": "Again"}]}
            ],
            "generationConfig": {"temperature": 0.7, "maxOutputTokens": 256, "responseMimeType": "application/json"},
            "systemInstruction": {"parts": [{"text": "You are a cat."}]}
        })
    );
}

#[tokio::test]
async fn without_a_temperature_none_is_sent() {
    let ok = Reply::json(200, chunk(json!([{"text": "Hi"}]), Some("STOP"), None));
    llm_common::no_temperature_is_sent_without_one(&gemini_case(), ok).await;
}

#[tokio::test]
async fn streaming_delivers_deltas_in_order_with_usage() {
    let pieces = ["Once upon", " a time, a", " little robot", " — ✓ woke up."];
    let last = pieces.len() - 1;
    let events = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let done = i == last;
            sse_data(&chunk(
                json!([{"text": p}]),
                done.then_some("STOP"),
                Some(Counts {
                    thoughts: 90,
                    ..counts(9, if done { 31 } else { 0 })
                }),
            ))
        })
        .collect();
    let (server, provider) = gemini_case().serve(vec![Reply::Sse(events)]).await;
    let (response, tokens) =
        complete_streamed(provider.as_ref(), &LlmRequest::new(MODEL, "Tell a story")).await;
    let response = response.expect("streamed completion");

    assert_eq!(tokens, pieces);
    assert_eq!(response.text, pieces.concat());
    assert_eq!(response.usage, reported(9, 121, 0, 0, 90));
    assert_eq!(
        server.single_request().target,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    );
}

#[tokio::test]
async fn function_calls_are_parsed_and_responses_sent_back() {
    let reply = chunk(
        json!([{"functionCall": {"id": "fc-boston", "name": "get_weather", "args": {"city": "Boston"}}}]),
        Some("STOP"),
        Some(counts(52, 5)),
    );
    let (server, provider) = gemini_case().serve(vec![Reply::json(200, reply)]).await;
    let mut request = LlmRequest::new(MODEL, "Weather in Oslo, then Boston?");
    request.tools = vec![ToolDefinition {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    }];
    request.messages.push(Message::Assistant {
        text: String::new(),
        tool_calls: vec![ToolCall {
            id: "fc-oslo".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Oslo"}),
            signature: None,
        }],
    });
    request.messages.push(Message::ToolResult {
        call_id: "fc-oslo".into(),
        name: "get_weather".into(),
        content: "4°C".into(),
        is_error: false,
    });
    let response = provider.complete(&request, None).await.expect("completion");

    assert_eq!(
        response.tool_calls,
        vec![ToolCall {
            id: "fc-boston".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Boston"}),
            signature: None,
        }]
    );
    let sent = server.single_request();
    assert_eq!(
        sent.body["tools"],
        json!([{"functionDeclarations": [{"name": "get_weather", "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}])
    );
    // The call's id, which Gemini gave, goes back with the call and its response.
    assert_eq!(
        sent.body["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"id": "fc-oslo", "name": "get_weather", "args": {"city": "Oslo"}}}]})
    );
    assert_eq!(
        sent.body["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"id": "fc-oslo", "name": "get_weather", "response": {"content": "4°C"}}}]})
    );
}

/// What Gemini's `parameters` (an OpenAPI subset) refuses goes as
/// `parametersJsonSchema`; a tool without arguments declares none (Gemini
/// answers 400 to an object without properties); and no JSON mime type is
/// asked for beside tools (400 too).
#[tokio::test]
async fn tool_declarations_are_ones_gemini_accepts() {
    let (server, provider) = gemini_case()
        .serve(vec![Reply::json(
            200,
            chunk(json!([{"text": "{}"}]), Some("STOP"), None),
        )])
        .await;
    let tool = |name: &str, parameters: Value| ToolDefinition {
        name: name.into(),
        description: format!("The {name} tool"),
        parameters,
    };
    let subset = json!({"type": "object", "properties": {
        "city": {"type": "string", "description": "A city"},
        "unit": {"type": "string", "enum": ["C", "F"]},
        "days": {"type": "integer", "format": "int32", "minimum": 1},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 4}
    }, "required": ["city"]});
    let json_schema = [
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": false}),
        json!({"type": "object", "properties": {"key": {"type": "string"}, "value": {}}}),
        json!({"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}}),
        json!({"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2]}}}),
        json!({"type": "object", "properties": {"filter": {"type": "object"}}}),
        json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
               "properties": {"q": {"type": "string"}}}),
        json!({"type": "object", "additionalProperties": {"type": "string"}}),
    ];
    let mut request = LlmRequest::new(MODEL, "Status?");
    request.json_output = true;
    request.tools = vec![
        tool("now", json!({"type": "object", "properties": {}})),
        tool(
            "ping",
            json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false}),
        ),
        tool("weather", subset.clone()),
    ];
    request.tools.extend(
        json_schema
            .iter()
            .enumerate()
            .map(|(i, schema)| tool(&format!("t{i}"), schema.clone())),
    );
    provider.complete(&request, None).await.expect("completion");

    let sent = server.single_request();
    let declarations = &sent.body["tools"][0]["functionDeclarations"];
    let only = |name: &str, description: &str| json!({"name": name, "description": description});
    assert_eq!(declarations[0], only("now", "The now tool"));
    assert_eq!(declarations[1], only("ping", "The ping tool"));
    assert_eq!(
        declarations[2],
        json!({"name": "weather", "description": "The weather tool", "parameters": subset})
    );
    for (i, schema) in json_schema.iter().enumerate() {
        assert_eq!(
            declarations[3 + i],
            json!({"name": format!("t{i}"), "description": format!("The t{i} tool"),
                   "parametersJsonSchema": schema}),
        );
    }
    assert_eq!(
        sent.body["generationConfig"],
        json!({"temperature": 0.2, "maxOutputTokens": 2000})
    );
}

/// A stream that fails after it began carries Google's error body as an
/// event: read as the status it names.
#[tokio::test]
async fn an_error_event_in_a_stream_is_the_error_it_names() {
    let events = vec![
        sse_data(&chunk(json!([{"text": "Once"}]), None, None)),
        sse_data(&json!({"error": {"code": 503, "status": "UNAVAILABLE",
            "message": "The model is overloaded. Please try again later."}})),
    ];
    let error = gemini_case()
        .call(Reply::Sse(events), true, std::time::Duration::from_secs(30))
        .await;
    assert_eq!(error.code(), "llm_server_error", "{error}");
    assert!(error.to_string().contains("overloaded"), "{error}");
    assert!(error.is_retryable());
}

/// Gemini now and then answers STOP with no parts at all.
#[tokio::test]
async fn a_candidate_without_parts_is_an_empty_reply() {
    let reply = json!({"candidates": [{"content": {"role": "model"}, "finishReason": "STOP", "index": 0}],
                       "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
                       "modelVersion": "gemini-2.5-flash"});
    let error = gemini_case()
        .call(
            Reply::json(200, reply),
            false,
            std::time::Duration::from_secs(30),
        )
        .await;
    assert_eq!(error.code(), "llm_empty_reply", "{error}");
    assert!(error.to_string().contains("finish reason STOP"), "{error}");
    assert!(error.is_retryable());
}

/// An empty text part is refused; a model turn with nothing in it (a blank
/// reply being repaired) is left out, and the user turns around it merge.
#[tokio::test]
async fn a_blank_model_turn_is_left_out() {
    let (server, provider) = gemini_case()
        .serve(vec![Reply::json(
            200,
            chunk(json!([{"text": "{}"}]), Some("STOP"), None),
        )])
        .await;
    let mut request = LlmRequest::new(MODEL, "Status?");
    request.messages.push(Message::Assistant {
        text: String::new(),
        tool_calls: Vec::new(),
    });
    request.messages.push(Message::User("Reply again.".into()));
    provider.complete(&request, None).await.expect("completion");
    assert_eq!(
        server.single_request().body["contents"],
        json!([{"role": "user", "parts": [{"text": "Status?"}, {"text": "Reply again."}]}])
    );
}

/// Gemini 3 puts a `thoughtSignature` beside each `functionCall` and
/// answers 400 to a later turn whose calls come back without theirs.
#[tokio::test]
async fn thought_signatures_go_back_with_their_function_calls() {
    let calls = json!([
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2lnLW9zbG8="},
        {"functionCall": {"name": "get_weather", "args": {"city": "Bergen"}}}
    ]);
    let answer = chunk(json!([{"text": "4°C and 6°C"}]), Some("STOP"), None);
    let (server, provider) = gemini_case()
        .serve(vec![
            Reply::Sse(vec![sse_data(&chunk(calls, Some("STOP"), None))]),
            Reply::json(200, answer),
        ])
        .await;
    let mut request = LlmRequest::new(MODEL, "Weather in Oslo and Bergen?");
    request.tools = vec![ToolDefinition {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters: json!({"type": "object"}),
    }];
    let (asked, _) = complete_streamed(provider.as_ref(), &request).await;
    let asked = asked.expect("streamed function calls");
    let signatures: Vec<Option<&str>> = asked
        .tool_calls
        .iter()
        .map(|c| c.signature.as_deref())
        .collect();
    assert_eq!(signatures, [Some("c2lnLW9zbG8="), None]);

    request.messages.push(Message::Assistant {
        text: String::new(),
        tool_calls: asked.tool_calls.clone(),
    });
    for (call, (content, is_error)) in asked
        .tool_calls
        .iter()
        .zip([("4°C", false), ("error: no station in Bergen", true)])
    {
        request.messages.push(Message::ToolResult {
            call_id: call.id.clone(),
            name: call.name.clone(),
            content: content.into(),
            is_error,
        });
    }
    let answered = provider.complete(&request, None).await.expect("answer");
    assert_eq!(answered.text, "4°C and 6°C");
    let requests = server.requests();
    assert_eq!(
        requests[1].body["contents"][1],
        json!({"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2lnLW9zbG8="},
            {"functionCall": {"name": "get_weather", "args": {"city": "Bergen"}}}
        ]})
    );
    // Gemini gave these calls no id, so none goes back with their
    // responses; a failure is told by the response's `error` key.
    assert_eq!(
        requests[1].body["contents"][2]["parts"],
        json!([
            {"functionResponse": {"name": "get_weather", "response": {"content": "4°C"}}},
            {"functionResponse": {"name": "get_weather", "response": {"error": "error: no station in Bergen"}}}
        ])
    );
}

#[tokio::test]
async fn an_invalid_key_reported_as_400_is_an_auth_error() {
    // What Google really answers for a wrong key.
    let body = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}});
    let error = gemini_case()
        .call(
            Reply::json(400, body),
            false,
            std::time::Duration::from_secs(30),
        )
        .await;
    assert_eq!(error.code(), "llm_auth");
}

#[tokio::test]
async fn quota_errors_carry_the_retry_delay_from_the_body() {
    let body = json!({"error": {"code": 429, "message": "You exceeded your current quota.",
        "status": "RESOURCE_EXHAUSTED", "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}});
    let error = gemini_case()
        .call(
            Reply::json(429, body),
            false,
            std::time::Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        error.retry_after(),
        Some(std::time::Duration::from_secs(37))
    );
}

#[tokio::test]
async fn blocked_prompts_are_errors_not_empty_replies() {
    let blocked = json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                         "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}});
    let error = gemini_case()
        .call(
            Reply::json(200, blocked),
            false,
            std::time::Duration::from_secs(30),
        )
        .await;
    assert!(
        matches!(error, LlmError::ContentBlocked { .. }),
        "{error:?}"
    );
    let withheld = json!({"candidates": [{"finishReason": "SAFETY", "index": 0}]});
    let error = gemini_case()
        .call(
            Reply::json(200, withheld),
            false,
            std::time::Duration::from_secs(30),
        )
        .await;
    assert!(
        matches!(error, LlmError::ContentBlocked { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn model_names_cannot_escape_the_models_path() {
    let provider = GeminiProvider::new(KEY.into(), Some("http://127.0.0.1:9")).expect("provider");
    for model in ["../../v1/files", "gemini?alt=x", "", "models//x"] {
        let error = provider
            .complete(&LlmRequest::new(model, "hi"), None)
            .await
            .expect_err("rejected");
        assert_eq!(error.code(), "llm_config", "{model}");
    }
}
