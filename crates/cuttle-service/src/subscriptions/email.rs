//! Sending one delivery as an email, through the SMTP server the operator
//! configured (`--smtp-url`, `--smtp-from`).

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// `smtp://[user:password@]host[:port]` (STARTTLS when offered… see
    /// lettre's URL forms: `smtps://` for TLS from the start,
    /// `?tls=required` to insist on STARTTLS).
    pub url: String,
    pub from: String,
}

impl SmtpConfig {
    /// Checks the configuration at start, so a typo is caught then and not
    /// at the first event.
    pub fn check(&self) -> Result<(), String> {
        AsyncSmtpTransport::<Tokio1Executor>::from_url(&self.url)
            .map_err(|e| format!("--smtp-url is not an SMTP URL: {e}"))?;
        self.from
            .parse::<Mailbox>()
            .map_err(|e| format!("--smtp-from '{}' is not an address: {e}", self.from))?;
        Ok(())
    }
}

/// What an email delivery sends, fixed when the event is fanned out.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EmailBody {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one email; `Ok` with the server's answer, `Err` with why not.
pub async fn send(
    config: &SmtpConfig,
    body: &EmailBody,
    delivery_id: &str,
) -> Result<String, String> {
    let from: Mailbox = config
        .from
        .parse()
        .map_err(|e| format!("the sender address '{}': {e}", config.from))?;
    let mut message = Message::builder().from(from).subject(&body.subject);
    for to in &body.to {
        let to: Mailbox = to.parse().map_err(|e| format!("the address '{to}': {e}"))?;
        message = message.to(to);
    }
    let message = message
        .message_id(Some(format!("<{delivery_id}@cuttle>")))
        .body(body.text.clone())
        .map_err(|e| format!("the message could not be built: {e}"))?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.url)
        .map_err(|e| format!("the SMTP URL: {e}"))?
        .timeout(Some(TIMEOUT))
        .build();
    match tokio::time::timeout(TIMEOUT, transport.send(message)).await {
        Ok(Ok(answer)) => Ok(format!("SMTP {}", answer.code())),
        Ok(Err(e)) => Err(format!("SMTP: {e}")),
        Err(_) => Err(format!(
            "no answer from the SMTP server within {} s",
            TIMEOUT.as_secs()
        )),
    }
}
