//! Webhook URL checks: plain `http://` only (this build's client has no TLS),
//! no user info or fragment, loopback unless insecure http is allowed.

use super::config::ConfigError;

/// Checks a webhook URL: `http://host[:port][/path]`, no user info, no fragment,
/// plain http to a loopback host unless `allow_insecure_http`.
pub fn check_url(url: &str, allow_insecure_http: bool) -> Result<(), ConfigError> {
    let bad = |reason| ConfigError::BadUrl {
        url: url.to_string(),
        reason,
    };
    if url.len() > 2048 {
        return Err(bad("longer than 2048 bytes"));
    }
    if url
        .chars()
        .any(|c| c.is_ascii_control() || c.is_whitespace())
    {
        return Err(bad("contains whitespace or a control character"));
    }
    if url.starts_with("https://") {
        return Err(bad(
            "https needs a TLS-enabled build, which this one is not",
        ));
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("must start with http://"))?;
    if url.contains('#') {
        return Err(bad("must not have a fragment"));
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(bad("must not carry user info"));
    }
    let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
    if host.is_empty() || port == Some(0) {
        return Err(bad("bad host or port"));
    }
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback && !allow_insecure_http {
        return Err(bad(
            "plain http to a non-loopback host needs allow_insecure_http = true",
        ));
    }
    Ok(())
}

/// Splits `host[:port]` or `[v6][:port]`; `None` when malformed.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c));
    if !host_ok {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("http://127.0.0.1:9000/hook", false).is_ok());
        assert!(check_url("http://localhost/x?y=1", false).is_ok());
        assert!(check_url("http://[::1]:80/", false).is_ok());
        assert!(check_url("http://shop.example/hook", false).is_err());
        assert!(check_url("http://shop.example/hook", true).is_ok());
        for bad in [
            "ftp://127.0.0.1/",
            "https://127.0.0.1/",
            "http://u:p@127.0.0.1/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http:///x",
            "http://127.0.0.1/a b",
            "http://127.0.0.1/#f",
            "http://[::1/",
        ] {
            assert!(check_url(bad, true).is_err(), "{bad}");
        }
    }
}
