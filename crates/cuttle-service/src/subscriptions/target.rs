//! Where a webhook may be sent. A subscription is a way to make the server
//! send requests, so link-local addresses (169.254.0.0/16 and fe80::/10,
//! where cloud metadata services hand out credentials) are refused unless
//! the operator allows them: when the subscription is saved, and again at
//! every delivery, by the resolver the webhook client uses (a name may
//! resolve differently later).

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Whether `ip` is one a webhook must not reach by default.
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.is_link_local();
            }
            (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn refused(host: &str) -> String {
    format!(
        "'{host}' is a link-local address, which webhooks may not reach (the server's operator can allow it with --allow-link-local-webhooks)"
    )
}

/// Checks a webhook address: an absolute http(s) URL whose host, if it
/// resolves now, resolves to no link-local address (unless allowed). A name
/// that does not resolve yet is accepted; the delivery retries it.
pub async fn check_url(text: &str, allow_link_local: bool) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("'{text}' is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("'{text}' must start with http:// or https://"));
    }
    let Some(host) = url.host_str().map(str::to_owned) else {
        return Err(format!("'{text}' has no host"));
    };
    if allow_link_local {
        return Ok(url);
    }
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return if is_link_local(ip) {
            Err(refused(&ip.to_string()))
        } else {
            Ok(url)
        };
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let lookup = tokio::net::lookup_host((host.as_str(), port));
    if let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(3), lookup).await {
        if let Some(bad) = addrs.map(|a| a.ip()).find(|ip| is_link_local(*ip)) {
            return Err(format!(
                "'{host}' resolves to {}",
                refused(&bad.to_string())
            ));
        }
    }
    Ok(url)
}

/// The webhook client's resolver: the system's, without link-local
/// addresses.
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| !is_link_local(a.ip()))
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                return Err(refused(&host).into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_addresses_are_recognised() {
        for bad in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "::ffff:169.254.1.1",
        ] {
            assert!(is_link_local(bad.parse().unwrap()), "{bad}");
        }
        for good in ["127.0.0.1", "10.0.0.1", "8.8.8.8", "::1", "fd00::1"] {
            assert!(!is_link_local(good.parse().unwrap()), "{good}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:9/hook", false).await.is_ok());
        assert!(check_url("https://localhost/hook", false).await.is_ok());
        let metadata = check_url("http://169.254.169.254/latest/meta-data", false).await;
        assert!(metadata.unwrap_err().contains("link-local"));
        assert!(check_url("http://[fe80::1]/", false).await.is_err());
        assert!(check_url("http://169.254.169.254/", true).await.is_ok());
        assert!(check_url("ftp://example.com/", false)
            .await
            .unwrap_err()
            .contains("http"));
        assert!(check_url("not a url", false).await.is_err());
    }

    #[tokio::test]
    async fn the_resolver_drops_link_local_answers() {
        // Loopback resolves and passes; a literal link-local name is refused.
        let ok = GuardedResolver
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap();
        assert!(ok.count() > 0);
        let bad = GuardedResolver
            .resolve("169.254.169.254".parse().unwrap())
            .await;
        assert!(bad.is_err());
    }
}
