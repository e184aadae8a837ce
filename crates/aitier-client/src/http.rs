//! The HTTP transport: one pooled connection set per client (HTTP/2 when
//! a TLS server offers it), timeouts, and retries as the OpenAI SDKs do
//! them: connection failures, timeouts, 408, 409, 429 and 5xx are retried
//! with exponential backoff unless the tier says `x-should-retry: false`
//! (and always when it says `true`), waiting what `retry-after-ms` or
//! `retry-after` asks when that is under a minute.
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use aitier_protocol::error::retry_after;
use aitier_protocol::sse::{Payload, SseParser};
use aitier_protocol::{ErrorBody, ErrorDetail};

use crate::error::Error;
use crate::ChunkStream;

/// How an HTTP client behaves; `Default` is the OpenAI SDKs' behaviour.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Longest wait for a whole answer, or between two chunks of a stream.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            max_retries: 2,
        }
    }
}

/// A retry waits at most this long, whatever the tier asks.
const LONGEST_ASKED_WAIT: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const LONGEST_BACKOFF: Duration = Duration::from_secs(8);

#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    /// Up to and including `/v1`, without a trailing slash.
    base: String,
    options: HttpOptions,
}

impl Http {
    pub(crate) fn new(
        base_url: &str,
        api_key: Option<&str>,
        options: HttpOptions,
    ) -> Result<Self, Error> {
        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            let value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| Error::Connection("the API key is not a valid header value".into()))?;
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Connection(e.to_string()))?;
        Ok(Self {
            client,
            base: base_url.trim_end_matches('/').to_string(),
            options,
        })
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let resp = self.send(Method::GET, path, None::<&()>, false).await?;
        self.read(resp).await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Error> {
        let resp = self.send(Method::POST, path, Some(body), false).await?;
        self.read(resp).await
    }

    /// Posts a request that streams; its chunks as they come.
    pub(crate) async fn post_stream<B: Serialize, C: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<ChunkStream<C>, Error> {
        let resp = self.send(Method::POST, path, Some(body), true).await?;
        let timeout = self.options.timeout;
        let bytes = resp.bytes_stream();
        let chunks = futures::stream::unfold(
            (bytes, SseParser::default(), Vec::<String>::new(), false),
            move |(mut bytes, mut parser, mut pending, mut ended)| async move {
                loop {
                    if ended {
                        return None;
                    }
                    if !pending.is_empty() {
                        let data = pending.remove(0);
                        let item = match Payload::<C>::decode(&data) {
                            Ok(Payload::Chunk(c)) => Ok(c),
                            Ok(Payload::Done) => return None,
                            Ok(Payload::Error(body)) => Err(Error::Stream { error: body.error }),
                            Err(e) => Err(Error::Decode(format!("{e}: {data:.200}"))),
                        };
                        ended = item.is_err();
                        return Some((item, (bytes, parser, pending, ended)));
                    }
                    match bytes.next().await {
                        Some(Ok(b)) => pending = parser.push(&b),
                        Some(Err(e)) => {
                            let err = transport_error(&e, timeout);
                            return Some((Err(err), (bytes, parser, pending, true)));
                        }
                        None => match parser.finish() {
                            Some(tail) => pending.push(tail),
                            None => {
                                let err =
                                    Error::Connection("the stream ended before [DONE]".into());
                                return Some((Err(err), (bytes, parser, pending, true)));
                            }
                        },
                    }
                }
            },
        );
        Ok(chunks.boxed())
    }

    /// Sends until an attempt succeeds, one fails for good, or the retries
    /// are spent. A stream is retried only until its response starts.
    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        stream: bool,
    ) -> Result<reqwest::Response, Error> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            let mut req = self.client.request(method.clone(), &url);
            if !stream {
                req = req.timeout(self.options.timeout);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let (err, retry, asked) = match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let headers = resp.headers();
                    let retry = should_retry(resp.status(), headers);
                    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
                    let asked = retry_after(get("retry-after-ms"), get("retry-after"));
                    (refusal(resp, asked).await, retry, asked)
                }
                Err(e) => (transport_error(&e, self.options.timeout), true, None),
            };
            if !retry || attempt >= self.options.max_retries {
                return Err(err);
            }
            tokio::time::sleep(backoff(attempt, asked)).await;
            attempt += 1;
        }
    }

    async fn read<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T, Error> {
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(&e, self.options.timeout))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Decode(format!("{e}: {:.200}", String::from_utf8_lossy(&bytes))))
    }
}

fn transport_error(e: &reqwest::Error, timeout: Duration) -> Error {
    if e.is_timeout() {
        Error::Timeout(timeout)
    } else {
        Error::Connection(e.to_string())
    }
}

/// The tier's say first, then the statuses a retry can help.
fn should_retry(status: StatusCode, headers: &HeaderMap) -> bool {
    match headers.get("x-should-retry").and_then(|v| v.to_str().ok()) {
        Some("true") => return true,
        Some("false") => return false,
        _ => {}
    }
    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
}

/// The wait before retry `attempt` (from 0): what the tier asked when it
/// is reasonable, else 0.5 s doubling to 8 s, less up to a quarter of
/// jitter so that many clients do not retry in step.
fn backoff(attempt: u32, asked: Option<Duration>) -> Duration {
    if let Some(d) = asked.filter(|d| *d <= LONGEST_ASKED_WAIT) {
        return d;
    }
    let base = FIRST_BACKOFF
        .saturating_mul(1 << attempt.min(16))
        .min(LONGEST_BACKOFF);
    base.mul_f64(1.0 - rand::rng().random_range(0.0..0.25))
}

/// A non-2xx answer as an error, with the tier's OpenAI error body (or
/// what it sent instead).
async fn refusal(resp: reqwest::Response, retry_after: Option<Duration>) -> Error {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let error = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => body.error,
        Err(_) => ErrorDetail {
            message: format!("{text:.500}"),
            kind: if status.is_server_error() {
                "server_error"
            } else {
                "invalid_request_error"
            }
            .into(),
            param: None,
            code: None,
        },
    };
    Error::Api {
        status: status.as_u16(),
        error,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tier_decides_before_the_status() {
        let mut h = HeaderMap::new();
        assert!(should_retry(StatusCode::TOO_MANY_REQUESTS, &h));
        assert!(should_retry(StatusCode::BAD_GATEWAY, &h));
        assert!(!should_retry(StatusCode::BAD_REQUEST, &h));
        h.insert("x-should-retry", HeaderValue::from_static("false"));
        assert!(!should_retry(StatusCode::TOO_MANY_REQUESTS, &h));
        h.insert("x-should-retry", HeaderValue::from_static("true"));
        assert!(should_retry(StatusCode::BAD_REQUEST, &h));
    }

    #[test]
    fn backoff_takes_a_reasonable_ask_and_doubles_otherwise() {
        let ask = Duration::from_millis(1500);
        assert_eq!(backoff(0, Some(ask)), ask);
        for (attempt, full) in [(0, 0.5), (1, 1.0), (2, 2.0), (5, 8.0), (40, 8.0)] {
            let d = backoff(attempt, Some(Duration::from_secs(3600))).as_secs_f64();
            assert!(d <= full && d > full * 0.75, "attempt {attempt}: {d}");
        }
    }
}
