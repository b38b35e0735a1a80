//! A webhook URL as a client gives it (SPEC 8.5): checked when the run is
//! requested, shown masked on the run, logged as its host only.
//!
//! A URL may carry credentials in its userinfo (`https://user:pass@…`) or
//! its query (`?token=…`), so neither leaves the store: the run shows
//! `https://***@host/path?***` and logs name the host.

use crate::error::EngineError;
use reqwest::Url;

/// The longest URL accepted; a longer one is no webhook anyone configures,
/// and every delivery stores it.
const MAX_URL_LEN: usize = 2048;

/// A checked webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target(Url);

impl Target {
    /// `text` when it is an http(s) URL with a host, in `allowed_hosts`
    /// unless that is empty; else `invalid_webhook`.
    pub fn parse(text: &str, allowed_hosts: &[String]) -> Result<Self, EngineError> {
        let invalid = |why: String| EngineError::InvalidWebhook(why);
        if text.len() > MAX_URL_LEN {
            return Err(invalid(format!(
                "the URL is longer than {MAX_URL_LEN} characters"
            )));
        }
        let url = Url::parse(text).map_err(|e| invalid(format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "the scheme is `{}`; webhooks are http or https",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| invalid("the URL has no host".into()))?;
        if !allowed_hosts.is_empty()
            && !allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(host))
        {
            return Err(invalid(format!(
                "host `{host}` is not in runtime.yaml `webhooks.allowed_hosts`"
            )));
        }
        Ok(Self(url))
    }

    /// The URL itself, to send to and to store as the run's target.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The URL as a run shows it (see the module docs).
    pub fn masked(&self) -> String {
        masked(&self.0)
    }
}

/// `url` with its userinfo and query replaced by `***` and no fragment.
pub(crate) fn masked(url: &Url) -> String {
    let mut shown = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        shown.push_str("***@");
    }
    shown.push_str(url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    if url.query().is_some() {
        shown.push_str("?***");
    }
    shown
}

/// The host of a stored URL, for logs; `?` for one that does not parse.
pub(crate) fn host_of(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_an_allowed_host() {
        let any: Vec<String> = Vec::new();
        assert!(Target::parse("https://hooks.example.com/x", &any).is_ok());
        assert!(Target::parse("http://127.0.0.1:9000/", &any).is_ok());
        for bad in [
            "ftp://hooks.example.com/x",
            "file:///etc/passwd",
            "hooks.example.com/x",
            "https://",
            "",
            "mailto:a@example.com",
        ] {
            assert!(
                matches!(
                    Target::parse(bad, &any),
                    Err(EngineError::InvalidWebhook(_))
                ),
                "{bad}"
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(Target::parse(&long, &any).is_err());
        let allowed = vec!["Hooks.Example.com".to_string()];
        assert!(Target::parse("https://hooks.example.com/x", &allowed).is_ok());
        let refused = Target::parse("https://evil.example.com/x", &allowed);
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("evil.example.com"), "{message}");
        assert!(message.contains("allowed_hosts"), "{message}");
    }

    #[test]
    fn userinfo_and_query_are_masked_and_logs_get_the_host() -> Result<(), EngineError> {
        let target = Target::parse(
            "https://user:secret@hooks.example.com:8443/in/bmad?token=abc#frag",
            &[],
        )?;
        assert_eq!(
            target.masked(),
            "https://***@hooks.example.com:8443/in/bmad?***"
        );
        let plain = Target::parse("http://127.0.0.1/hook", &[])?;
        assert_eq!(plain.masked(), "http://127.0.0.1/hook");
        assert_eq!(host_of(target.as_str()), "hooks.example.com");
        assert_eq!(host_of("not a url"), "?");
        Ok(())
    }
}
