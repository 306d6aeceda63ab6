//! Sending one delivery to a webhook: a signed JSON POST that never follows
//! a redirect and never waits past the subscription's timeout.

use super::target::{self, GuardedResolver};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

/// The header that carries `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Cuttle-Signature-256";
/// The delivery's id: the same on every retry, so receivers can drop
/// repeats (delivery is at least once).
pub const DELIVERY_HEADER: &str = "X-Cuttle-Delivery";
pub const EVENT_HEADER: &str = "X-Cuttle-Event";
pub const ATTEMPT_HEADER: &str = "X-Cuttle-Attempt";

/// The signature of `body` under `secret`, as sent in [`SIGNATURE_HEADER`].
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The HTTP client every webhook delivery uses.
pub fn client(allow_link_local: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Cuttle/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10));
    let builder = if allow_link_local {
        builder
    } else {
        builder.dns_resolver(Arc::new(GuardedResolver))
    };
    builder
        .build()
        .expect("a client with a resolver and no TLS options of its own builds")
}

pub struct Request<'a> {
    pub url: &'a str,
    pub body: &'a str,
    pub secret: &'a str,
    pub delivery_id: &'a str,
    pub category: &'a str,
    pub attempt: u32,
    pub timeout: Duration,
    pub extra_header: Option<(&'a str, &'a str)>,
    pub allow_link_local: bool,
}

/// Sends one delivery; `Ok` with the answer's status line when the
/// receiver took it (2xx), `Err` with why not.
pub async fn send(client: &reqwest::Client, r: Request<'_>) -> Result<String, String> {
    // A literal address never passes through the resolver: check it here.
    let url = target::check_url(r.url, r.allow_link_local).await?;
    let mut req = client
        .post(url)
        .timeout(r.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature(r.secret, r.body.as_bytes()))
        .header(DELIVERY_HEADER, r.delivery_id)
        .header(EVENT_HEADER, r.category)
        .header(ATTEMPT_HEADER, r.attempt.to_string())
        .body(r.body.to_owned());
    if let Some((k, v)) = r.extra_header {
        req = req.header(k, v);
    }
    let answer = req.send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {} s", r.timeout.as_secs())
        } else {
            // The chain names the cause (refused, reset, a refused address).
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    })?;
    let status = answer.status();
    if status.is_success() {
        Ok(format!("HTTP {}", status.as_u16()))
    } else if status.is_redirection() {
        let to = answer
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nowhere");
        Err(format!(
            "HTTP {}: a redirect (to {to}), which webhooks never follow",
            status.as_u16()
        ))
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
