//! [`WebhookNotifier`]: events as JSON POSTs (feature `webhook`).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::events::{Event, Notifier};
use crate::secret::Secret;

/// Payload shape of a [`WebhookNotifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WebhookFormat {
    /// The event as JSON (`{"event": "failed", ...}`) plus a `summary`.
    #[default]
    Json,
    /// Slack-compatible `{"text": "..."}` (also accepted by Mattermost,
    /// Rocket.Chat and Discord's `/slack` endpoints).
    Slack,
}

/// Posts events to an HTTP(S) endpoint. The URL is treated as a secret
/// (chat webhook URLs embed their token): `Debug` shows only its host.
/// Use with [`spawn_notifier`](crate::events::spawn_notifier), which retries with
/// backoff and never blocks a backup.
#[derive(Clone)]
pub struct WebhookNotifier {
    url: Secret,
    format: WebhookFormat,
    client: reqwest::Client,
}

impl WebhookNotifier {
    /// A notifier posting to `url` with a 10 s timeout per request.
    pub fn new(url: &str, format: WebhookFormat) -> Result<Self> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| Error::Config(format!("invalid webhook URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Config(
                "webhook URL must be http:// or https://".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(WebhookNotifier {
            url: Secret::new(url),
            format,
            client,
        })
    }

    fn host(&self) -> String {
        reqwest::Url::parse(self.url.expose())
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default()
    }
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("host", &self.host())
            .field("format", &self.format)
            .finish()
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, event: &Event) -> Result<()> {
        let body = match self.format {
            WebhookFormat::Json => {
                let mut v = serde_json::to_value(event).expect("events serialise");
                v["summary"] = serde_json::Value::String(event.summary());
                v
            }
            WebhookFormat::Slack => serde_json::json!({ "text": event.summary() }),
        };
        let response = self
            .client
            .post(self.url.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| Error::Store {
                store: format!("webhook {}", self.host()),
                retryable: true,
                // reqwest errors include the URL: strip it.
                source: e.without_url().to_string().into(),
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(Error::Store {
                store: format!("webhook {}", self.host()),
                retryable: status.is_server_error() || status.as_u16() == 429,
                source: format!("HTTP {status}").into(),
            })
        }
    }
}
