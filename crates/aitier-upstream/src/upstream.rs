//! One OpenAI-compatible endpoint as a provider. Every request is sent
//! streamed with `include_usage`; the SSE chunks are relayed as events as
//! they arrive. Dropping the event stream drops the HTTP response, which
//! closes the upstream connection at once: a client that leaves stops the
//! upstream's work too.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::Value;

use aitier_core::{
    CoreError, EventStream, GenEvent, GenerateRequest, ModelInfo, Provider, RequestCtx,
    RequestHooks, RequestSize, Secret, TokenPiece,
};
use aitier_protocol::Usage;

use crate::sse::SseParser;
use crate::wire::{estimate_prompt, request_body, Decoder};

/// Where and how to reach one upstream deployment.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// The deployment's name in logs and ledger rows.
    pub name: String,
    /// Up to and including `/v1`, e.g. `http://vllm:8000/v1`.
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// The model name the upstream knows.
    pub model: String,
    /// Longest wait for the response to start, and between two chunks.
    pub timeout: Duration,
}

pub struct Upstream {
    cfg: UpstreamConfig,
    client: reqwest::Client,
}

/// Why an attempt failed before anything was streamed, for the router.
pub fn upstream_error(
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
) -> CoreError {
    CoreError::Upstream {
        message,
        retryable,
        retry_after,
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let secs = match get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        Some(ms) => ms / 1000.0,
        None => get("retry-after")?.parse::<f64>().ok()?,
    };
    // Whatever the upstream wrote (NaN, 1e309, negative), a sane wait.
    Duration::try_from_secs_f64(secs.clamp(0.0, 3600.0)).ok()
}

/// The start of an error body, read with a deadline and a size cap: an
/// upstream that stalls or floods its error must not hold the request.
async fn error_text(resp: reqwest::Response, timeout: Duration) -> String {
    const CAP: usize = 8 * 1024;
    let mut body = resp.bytes_stream();
    let mut text = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = body.next().await {
            text.extend_from_slice(&chunk);
            if text.len() >= CAP {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    text.truncate(CAP);
    String::from_utf8_lossy(&text).into_owned()
}

/// The upstream's own error message, when it sent an OpenAI-shaped body.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("{body:.200}"))
}

impl Upstream {
    pub fn new(cfg: UpstreamConfig, client: reqwest::Client) -> Arc<Self> {
        Arc::new(Self { cfg, client })
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.cfg
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.cfg.base_url.trim_end_matches('/'))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, self.url(path));
        match &self.cfg.api_key {
            Some(k) => r.bearer_auth(&k.0),
            None => r,
        }
    }

    /// One health probe: the upstream lists its models.
    pub async fn probe(&self) -> bool {
        let send = self.request(reqwest::Method::GET, "models").send();
        matches!(tokio::time::timeout(self.cfg.timeout, send).await, Ok(Ok(r)) if r.status().is_success())
    }

    async fn start(&self, req: GenerateRequest, ctx: RequestCtx) -> Result<EventStream, CoreError> {
        let prompt_estimate = estimate_prompt(&req);
        let choices = req.choices();
        if let Some(h) = &ctx.hooks {
            let n = choices as u32;
            h.admit(RequestSize {
                prompt_tokens: prompt_estimate,
                choices: n,
                max_tokens: req.max_tokens,
                completion_cap: req.max_tokens.map_or(u32::MAX, |m| m.saturating_mul(n)),
            })
            .await?;
        }
        let (endpoint, body) = request_body(&req, &self.cfg.model);
        let name = &self.cfg.name;
        let send = self
            .request(reqwest::Method::POST, endpoint.path())
            .json(&body)
            .send();
        let resp = match tokio::time::timeout(self.cfg.timeout, send).await {
            Err(_) => {
                return Err(upstream_error(
                    format!(
                        "upstream `{name}` did not answer within {:?}",
                        self.cfg.timeout
                    ),
                    true,
                    None,
                ))
            }
            Ok(Err(e)) => {
                // Not reqwest's text: it names the URL, which may carry credentials.
                let why = if e.is_connect() {
                    "cannot connect"
                } else if e.is_timeout() {
                    "timed out"
                } else {
                    "request failed"
                };
                tracing::warn!(upstream = %name, error = %e, "upstream request failed");
                return Err(upstream_error(
                    format!("upstream `{name}`: {why}"),
                    true,
                    None,
                ));
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if !status.is_success() {
            let after = retry_after(resp.headers());
            let text = error_text(resp, self.cfg.timeout).await;
            let message = error_message(&text);
            // The upstream's own words go to the log; clients get ours,
            // which cannot carry the operator's account details.
            tracing::warn!(upstream = %name, %status, %message, "upstream refused");
            let code = status.as_u16();
            return Err(match code {
                // The request itself is wrong: the client should see why.
                400 | 413 | 422 => CoreError::InvalidRequest {
                    message,
                    param: None,
                },
                429 => upstream_error(format!("upstream `{name}` is rate limited"), true, after),
                // Credentials, billing, a model it lacks, or a failure: this
                // deployment's fault, so another may serve.
                _ => upstream_error(format!("upstream `{name}` failed ({code})"), true, after),
            });
        }
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json {
            // An upstream that ignores `stream`: take its whole answer.
            let body = match tokio::time::timeout(self.cfg.timeout, resp.bytes()).await {
                Ok(Ok(b)) => b,
                _ => {
                    return Err(upstream_error(
                        format!("upstream `{name}` broke off its answer"),
                        true,
                        None,
                    ))
                }
            };
            let events = whole_answer(&body, choices, prompt_estimate, ctx.hooks.as_deref())
                .map_err(|e| upstream_error(format!("upstream `{name}`: {e}"), false, None))?;
            return Ok(futures::stream::iter(events).boxed());
        }
        let flow = Flow {
            body: resp.bytes_stream().boxed(),
            parser: SseParser::default(),
            decoder: Decoder::new(choices),
            queue: VecDeque::from([GenEvent::Started {
                prompt_tokens: prompt_estimate,
            }]),
            ended: false,
            idle: self.cfg.timeout,
            hooks: ctx.hooks.clone(),
            prompt_estimate,
            name: self.cfg.name.clone(),
        };
        Ok(futures::stream::unfold(flow, |mut f| async move {
            let ev = f.next().await?;
            Some((ev, f))
        })
        .boxed())
    }
}

/// A non-streamed answer (`chat.completion` or `text_completion`) as the
/// events a stream of it would have given.
fn whole_answer(
    body: &[u8],
    choices: usize,
    prompt_estimate: u32,
    hooks: Option<&dyn RequestHooks>,
) -> Result<Vec<GenEvent>, String> {
    let mut chunk: Value =
        serde_json::from_slice(body).map_err(|e| format!("malformed JSON answer: {e}"))?;
    let mut decoder = Decoder::new(choices);
    let mut events = vec![GenEvent::Started {
        prompt_tokens: prompt_estimate,
    }];
    // The same shape as one big chunk: `message` stands where `delta` would.
    if let Some(list) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
        for c in list {
            if let Some(m) = c.get_mut("message").map(Value::take) {
                c["delta"] = m;
            }
        }
    }
    events.extend(decoder.decode_value(&chunk).map_err(|e| e.to_string())?);
    let chunks = events
        .iter()
        .filter(|e| matches!(e, GenEvent::Delta { .. }))
        .count() as u32;
    let (rest, estimated) = decoder.close(|_| {
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                GenEvent::Delta { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        Usage::new(
            prompt_estimate,
            crate::wire::estimate_tokens(&text).max(chunks),
            0,
        )
    });
    if let Some(h) = hooks {
        if estimated {
            h.usage_estimated();
        }
        if let Some(GenEvent::Done { usage }) = rest.last() {
            h.generated(usage.completion_tokens);
        }
    }
    events.extend(rest);
    Ok(events)
}

/// The state of one relayed stream.
struct Flow {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    parser: SseParser,
    decoder: Decoder,
    queue: VecDeque<GenEvent>,
    ended: bool,
    idle: Duration,
    hooks: Option<Arc<dyn RequestHooks>>,
    prompt_estimate: u32,
    name: String,
}

impl Flow {
    fn fail(&mut self, message: String) -> GenEvent {
        self.ended = true;
        self.queue.clear();
        tracing::warn!(upstream = %self.name, %message, "upstream stream failed");
        GenEvent::Error(upstream_error(message, false, None))
    }

    fn take(&mut self, payload: &str) -> Result<(), GenEvent> {
        match self.decoder.decode(payload) {
            Ok(events) => {
                for ev in events {
                    if let (GenEvent::Delta { .. }, Some(h)) = (&ev, &self.hooks) {
                        h.generated(1);
                    }
                    self.queue.push_back(ev);
                }
                Ok(())
            }
            Err(e) => Err(self.fail(e.to_string())),
        }
    }

    fn close(&mut self) {
        let prompt = self.prompt_estimate;
        let (events, estimated) = self.decoder.close(|chunks| Usage::new(prompt, chunks, 0));
        if estimated {
            if let Some(h) = &self.hooks {
                h.usage_estimated();
            }
        }
        self.queue.extend(events);
        self.ended = true;
    }

    async fn next(&mut self) -> Option<GenEvent> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some(ev);
            }
            if self.ended {
                return None;
            }
            if self.decoder.done {
                self.close();
                continue;
            }
            match tokio::time::timeout(self.idle, self.body.next()).await {
                Err(_) => {
                    let idle = self.idle;
                    return Some(
                        self.fail(format!("upstream `{}` stalled for {idle:?}", self.name)),
                    );
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(upstream = %self.name, error = %e, "upstream body failed");
                    return Some(
                        self.fail(format!("upstream `{}` broke off the stream", self.name)),
                    );
                }
                Ok(Some(Ok(bytes))) => {
                    for payload in self.parser.push(&bytes) {
                        if let Err(ev) = self.take(&payload) {
                            return Some(ev);
                        }
                        if self.decoder.done {
                            break;
                        }
                    }
                }
                Ok(None) => {
                    if let Some(payload) = self.parser.finish() {
                        if let Err(ev) = self.take(&payload) {
                            return Some(ev);
                        }
                    }
                    if !self.decoder.done {
                        return Some(self.fail(format!(
                            "upstream `{}` ended the stream before [DONE]",
                            self.name
                        )));
                    }
                }
            }
        }
    }
}

impl Provider for Upstream {
    fn info(&self) -> ModelInfo {
        ModelInfo { context_length: 0 }
    }

    fn generate(
        &self,
        req: GenerateRequest,
        ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<EventStream, CoreError>> {
        Box::pin(self.start(req, ctx))
    }

    fn tokenize(&self, _text: &str, _add_special: bool) -> Result<Vec<TokenPiece>, CoreError> {
        Err(CoreError::invalid(
            "model",
            "tokenize is not available for an upstream model",
        ))
    }

    fn detokenize(&self, _tokens: &[u32]) -> Result<String, CoreError> {
        Err(CoreError::invalid(
            "model",
            "detokenize is not available for an upstream model",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_retry_after_becomes_a_sane_wait() {
        let mut h = reqwest::header::HeaderMap::new();
        for (v, want) in [("2", 2.0), ("1e309", 3600.0), ("-5", 0.0), ("0.25", 0.25)] {
            h.insert("retry-after", v.parse().expect("header"));
            assert_eq!(retry_after(&h), Some(Duration::from_secs_f64(want)), "{v}");
        }
        h.insert("retry-after", "NaN".parse().expect("header"));
        assert!(retry_after(&h).is_none_or(|d| d <= Duration::from_secs(3600)));
        h.insert("retry-after-ms", "1500".parse().expect("header"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
    }
}
