//! Tools declared in tools.yaml: `http` (one HTTP request) and `command` (one process).
//!
//! Both take the LLM's JSON arguments and return text. Neither goes through a
//! shell: an http tool renders its URL template with the arguments
//! percent-encoded, a command tool runs its argv as written and receives the
//! arguments as JSON on stdin. Every call has a timeout and a cap on the
//! output it keeps, so a misbehaving tool cannot stall or flood a run.

use super::{MAX_TOOL_OUTPUT_BYTES, ToolError};
use bmad2pf_compiler::bundle::ToolSpec;
use bmad2pf_compiler::template_limits;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Calls an `http` tool: GET sends nothing but the URL; other methods send the arguments as a JSON body.
pub async fn call_http(
    client: &reqwest::Client,
    spec: &ToolSpec,
    args: &serde_json::Value,
) -> Result<String, ToolError> {
    let template = spec
        .url
        .as_deref()
        .ok_or_else(|| ToolError::Failed(format!("http tool `{}` has no url", spec.name)))?;
    let url = render_url(template, args)?;
    let method = spec.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| {
        ToolError::Failed(format!("http tool `{}`: bad method {method:?}", spec.name))
    })?;
    let mut request = client
        .request(method.clone(), &url)
        .timeout(Duration::from_secs(spec.timeout_s));
    if method != reqwest::Method::GET {
        request = request.json(args);
    }
    let response = request.send().await.map_err(|e| {
        if e.is_timeout() {
            ToolError::Timeout(spec.timeout_s)
        } else {
            ToolError::Failed(format!("http tool `{}`: {e}", spec.name))
        }
    })?;
    let status = response.status();
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        ToolError::Failed(format!("http tool `{}`: reading the body: {e}", spec.name))
    })? {
        let room = MAX_TOOL_OUTPUT_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        return Err(ToolError::Failed(format!(
            "http tool `{}` answered {status}: {}",
            spec.name,
            excerpt(&text)
        )));
    }
    Ok(text)
}

/// Renders the URL template with every argument percent-encoded, so an
/// argument can never change the URL's structure.
fn render_url(template: &str, args: &serde_json::Value) -> Result<String, ToolError> {
    let encoded: serde_json::Map<String, serde_json::Value> = args
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let raw = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let value =
                percent_encoding::utf8_percent_encode(&raw, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            (k.clone(), serde_json::Value::String(value))
        })
        .collect();
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    template_limits::bound(&mut env);
    env.template_from_str(template)
        .and_then(|t| template_limits::render(&t, serde_json::Value::Object(encoded)))
        .map_err(|e| ToolError::BadArguments(format!("url template: {e}")))
}

/// Runs a `command` tool: argv as declared, arguments as JSON on stdin, stdout returned.
pub async fn call_command(spec: &ToolSpec, args: &serde_json::Value) -> Result<String, ToolError> {
    let (program, rest) = spec.command.split_first().ok_or_else(|| {
        ToolError::Failed(format!("command tool `{}` has an empty argv", spec.name))
    })?;
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            ToolError::Failed(format!(
                "command tool `{}`: cannot start {program:?}: {e}",
                spec.name
            ))
        })?;
    let input = args.to_string();
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let run = async {
        if let Some(stdin) = stdin.as_mut() {
            // A tool that does not read stdin closes it early; that is not an error.
            let _ = stdin.write_all(input.as_bytes()).await;
        }
        drop(stdin.take());
        let (out, err) = tokio::join!(read_capped(stdout.as_mut()), read_capped(stderr.as_mut()));
        let status = child.wait().await;
        (out, err, status)
    };
    let (out, err, status) = tokio::time::timeout(Duration::from_secs(spec.timeout_s), run)
        .await
        .map_err(|_| ToolError::Timeout(spec.timeout_s))?;
    let status =
        status.map_err(|e| ToolError::Failed(format!("command tool `{}`: {e}", spec.name)))?;
    if !status.success() {
        return Err(ToolError::Failed(format!(
            "command tool `{}` exited with {status}: {}",
            spec.name,
            excerpt(&err)
        )));
    }
    Ok(out)
}

/// Reads a pipe to its end, keeping at most [`MAX_TOOL_OUTPUT_BYTES`].
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<&mut R>) -> String {
    let Some(pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_TOOL_OUTPUT_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

fn excerpt(text: &str) -> String {
    let trimmed = text.trim();
    match trimmed.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_arguments_are_encoded() -> Result<(), ToolError> {
        let url = render_url(
            "http://wiki.local/search?q={{ query }}",
            &serde_json::json!({"query": "a b&c=/../x"}),
        )?;
        assert_eq!(url, "http://wiki.local/search?q=a%20b%26c%3D%2F%2E%2E%2Fx");
        Ok(())
    }

    #[test]
    fn missing_url_argument_is_an_error() {
        let err = render_url("http://h/{{ query }}", &serde_json::json!({}));
        assert!(matches!(err, Err(ToolError::BadArguments(_))));
    }
}
