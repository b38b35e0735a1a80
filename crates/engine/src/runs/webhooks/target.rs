//! A webhook URL as a client gives it (SPEC 8.5): checked when the run is
//! requested, shown masked on the run, logged as its host only.
//!
//! A URL may carry credentials in its userinfo (`https://user:pass@…`) or
//! its query (`?token=…`), so neither leaves the store: the run shows
//! `https://***@host/path?***` and logs name the host.
//!
//! The URLs taken are exactly those of [`webhook_url_pattern`], the pattern the
//! OpenAPI document gives clients: http(s), optional userinfo, a host name
//! (its last label starting with a letter, no `xn--` label) or an IPv4
//! address, an optional port, then a path, query and fragment of the
//! characters RFC 3986 allows unescaped (and `%`). A URL parser takes more
//! (spaces, `<>`, IPv6 literals, hosts it rewrites); keeping to one written
//! shape means the document and the server never disagree about a URL.

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
        if !has_url_shape(text) {
            return Err(invalid(
                "not an http(s) URL of the documented shape (a host name or IPv4 address, \
                 then a path, query and fragment of the characters RFC 3986 allows)"
                    .into(),
            ));
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

/// Besides letters and digits, the characters a path, query or fragment
/// may hold: RFC 3986's unreserved and sub-delimiters, `:`, `@`, and `%`
/// for escapes (`-` last, so that it is no range in a character class).
const URL_PUNCTUATION: &str = "._~!$&'()*+,;=:@%-";

/// The ECMA-262 pattern of the webhook URLs taken (module docs); with
/// `allowed_hosts`, the host is one of them, in any case.
pub fn webhook_url_pattern(allowed_hosts: &[String]) -> String {
    let label = "(?![Xx][Nn]--)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?";
    let last = "(?![Xx][Nn]--)[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?";
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    let host = if allowed_hosts.is_empty() {
        format!("(({label}\\.)*{last}|({octet}\\.){{3}}{octet})")
    } else {
        let hosts: Vec<String> = allowed_hosts.iter().map(|h| any_case(h)).collect();
        format!("({})", hosts.join("|"))
    };
    let port =
        "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
    let url_chars = format!("A-Za-z0-9{URL_PUNCTUATION}");
    let userinfo = url_chars.replace('@', "");
    format!(
        "^https?://([{userinfo}]+@)?{host}(:{port})?(/[{url_chars}]*)*(\\?[/?{url_chars}]*)?(#[/?{url_chars}]*)?$"
    )
}

/// `host` as a pattern matching it in any case.
fn any_case(host: &str) -> String {
    host.chars()
        .map(|c| match c {
            c if c.is_ascii_alphabetic() => {
                format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
            }
            c if c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii() => c.to_string(),
            // `\xHH` means the same in every regex flavour clients use.
            c => format!("\\x{:02x}", u32::from(c)),
        })
        .collect()
}

/// Whether `text` matches [`webhook_url_pattern`] (the allowed hosts are checked
/// on the parsed URL, in [`Target::parse`]).
fn has_url_shape(text: &str) -> bool {
    let Some(rest) = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
    else {
        return false;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (tail, fragment) = tail.split_once('#').unwrap_or((tail, ""));
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let in_set = |c: char, extra: &str| is_url_char(c) || extra.contains(c);
    let (userinfo, host_port) = match authority.split_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let (host, port) = host_port.split_once(':').unwrap_or((host_port, ""));
    userinfo.is_none_or(|u| !u.is_empty() && u.chars().all(|c| in_set(c, "") && c != '@'))
        && (is_host_name(host) || is_ipv4(host))
        && (!host_port.contains(':') || is_port(port))
        && path.chars().all(|c| in_set(c, "/"))
        && query.chars().all(|c| in_set(c, "/?"))
        && fragment.chars().all(|c| in_set(c, "/?"))
}

fn is_url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || URL_PUNCTUATION.contains(c)
}

/// Labels of letters, digits and inner hyphens, none starting `xn--`, the
/// last one starting with a letter (else URL parsers read an IPv4 address).
fn is_host_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let good = |label: &&str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
            && !label
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
    };
    labels.iter().all(good)
        && labels
            .last()
            .is_some_and(|last| last.starts_with(|c: char| c.is_ascii_alphabetic()))
}

/// Four decimal octets, 0 to 255, without leading zeros.
fn is_ipv4(host: &str) -> bool {
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4 && octets.iter().all(|o| is_number_up_to(o, 255, true))
}

/// A port, 1 to 65535, without leading zeros.
fn is_port(port: &str) -> bool {
    is_number_up_to(port, 65_535, false)
}

fn is_number_up_to(text: &str, max: u32, zero: bool) -> bool {
    !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" && zero || !text.starts_with('0'))
        && text.parse::<u32>().is_ok_and(|n| n <= max)
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

    /// Whether `text` matches `pattern` as a JSON Schema client reads it.
    fn matches(pattern: &str, text: &str) -> bool {
        jsonschema::validator_for(&serde_json::json!({"type": "string", "pattern": pattern}))
            .is_ok_and(|v| v.is_valid(&serde_json::json!(text)))
    }

    #[test]
    fn common_webhook_urls_are_taken_and_odd_ones_refused() {
        let any: Vec<String> = Vec::new();
        for good in [
            "https://my-hooks.example.com/in?token=a-b&x=%20#top",
            "http://10.0.0.255:65535/",
            "https://user:p%40ss@hooks.example.com:8443",
            "http://ci/hook",
        ] {
            assert!(Target::parse(good, &any).is_ok(), "{good}");
            assert!(matches(&webhook_url_pattern(&any), good), "{good}");
        }
        for odd in [
            "http://a////*x y",
            "http://a/<script>",
            "http://[::1]/",
            "http://256.1.1.1/",
            "http://a.1/",
            "http://xn--a/",
            "http://a:0/",
            "http://a:65536/",
            "http://-a/",
            "http://@a/",
        ] {
            assert!(Target::parse(odd, &any).is_err(), "{odd}");
            assert!(!matches(&webhook_url_pattern(&any), odd), "{odd}");
        }
    }

    proptest::proptest! {
        /// The check and the documented pattern take the same URLs, and
        /// every URL they take parses.
        #[test]
        fn the_check_and_the_pattern_agree(
            rest in "[a-zA-Z0-9.:@/?#%*\\-_~\\[\\] <]{0,24}",
            https in proptest::bool::ANY,
            allowed in proptest::bool::ANY,
        ) {
            let text = format!("{}://{rest}", if https { "https" } else { "http" });
            let hosts: Vec<String> = if allowed { vec!["a".into(), "B.c".into()] } else { Vec::new() };
            let taken = Target::parse(&text, &hosts).is_ok();
            proptest::prop_assert_eq!(taken, matches(&webhook_url_pattern(&hosts), &text), "{}", text);
        }
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
