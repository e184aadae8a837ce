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
use serde::de::DeserializeOwned;
use serde::Serialize;

use aitier_core::{
    affinity, CoreError, EmbedRequest, Embeddings, EventStream, GenEvent, GenerateRequest,
    ModelInfo, Prepared, Provider, ProviderStats, RequestCtx, RequestSize, Secret, TokenPiece,
};
use aitier_protocol::sse::SseParser;
use aitier_protocol::tokenize::{
    DetokenizeRequest, DetokenizeResponse, TokenOut, TokenizeRequest, TokenizeResponse,
};
use aitier_protocol::ErrorBody;

use crate::embed_wire;
use crate::meter::Meter;
use crate::wire::{estimate_prompt, request_body, Decoder};

const TRACEPARENT: &str = "traceparent";

/// Where and how to reach one upstream deployment.
#[derive(Clone, Debug, PartialEq)]
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
    meter: Arc<Meter>,
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
    aitier_protocol::error::retry_after(get("retry-after-ms"), get("retry-after"))
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

/// The upstream's refusal as an error: a request it calls invalid keeps its
/// own OpenAI error (so `code` and `param` reach the client); anything else
/// is the deployment's failure, which another deployment may not share.
fn refusal(
    name: &str,
    status: reqwest::StatusCode,
    body: &str,
    after: Option<Duration>,
) -> CoreError {
    let parsed = serde_json::from_str::<ErrorBody>(body).ok();
    let message = parsed
        .as_ref()
        .map(|b| b.error.message.clone())
        .unwrap_or_else(|| format!("{body:.200}"));
    // The upstream's own words go to the log; clients get ours, which
    // cannot carry the operator's account details.
    tracing::warn!(upstream = %name, %status, %message, "upstream refused");
    let code = status.as_u16();
    match code {
        400 | 413 | 422 => match parsed {
            Some(mut b) => {
                if b.error.kind.is_empty() {
                    b.error.kind = "invalid_request_error".into();
                }
                CoreError::Refused {
                    status: code,
                    error: b.error,
                }
            }
            None => CoreError::InvalidRequest {
                message,
                param: None,
            },
        },
        429 => upstream_error(format!("upstream `{name}` is rate limited"), true, after),
        // Credentials, billing, a model it lacks, or a failure: this
        // deployment's fault, so another may serve.
        _ => upstream_error(format!("upstream `{name}` failed ({code})"), true, after),
    }
}

impl Upstream {
    pub fn new(cfg: UpstreamConfig, client: reqwest::Client) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            client,
            meter: Arc::default(),
        })
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.cfg
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.cfg.base_url.trim_end_matches('/'))
    }

    /// llama.cpp's `/tokenize` lives beside `/v1`, not under it; so does
    /// aitier's.
    fn root_url(&self, path: &str) -> String {
        let base = self.cfg.base_url.trim_end_matches('/');
        let root = base.strip_suffix("/v1").unwrap_or(base);
        format!("{root}/{path}")
    }

    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url);
        match &self.cfg.api_key {
            Some(k) => r.bearer_auth(&k.0),
            None => r,
        }
    }

    /// One health probe: the upstream lists its models.
    pub async fn probe(&self) -> bool {
        let send = self
            .request(reqwest::Method::GET, self.url("models"))
            .send();
        matches!(tokio::time::timeout(self.cfg.timeout, send).await, Ok(Ok(r)) if r.status().is_success())
    }

    /// Sends a POST with these headers and waits, within the timeout, for
    /// the response to start, whatever its status.
    async fn send<B: Serialize>(
        &self,
        url: String,
        body: &B,
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Response, CoreError> {
        let name = &self.cfg.name;
        let mut req = self.request(reqwest::Method::POST, url).json(body);
        for (h, v) in headers {
            req = req.header(*h, *v);
        }
        let send = req.send();
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
        Ok(resp)
    }

    /// A response that did not succeed, as its error.
    async fn refused(&self, resp: reqwest::Response) -> CoreError {
        let (status, after) = (resp.status(), retry_after(resp.headers()));
        let text = error_text(resp, self.cfg.timeout).await;
        refusal(&self.cfg.name, status, &text, after)
    }

    /// `send`, with a refusal as its error.
    async fn post<B: Serialize>(
        &self,
        url: String,
        body: &B,
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Response, CoreError> {
        let resp = self.send(url, body, headers).await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.refused(resp).await)
        }
    }

    /// The whole body of a successful response, read within the timeout.
    async fn body(&self, resp: reqwest::Response) -> Result<Bytes, CoreError> {
        match tokio::time::timeout(self.cfg.timeout, resp.bytes()).await {
            Ok(Ok(b)) => Ok(b),
            _ => Err(upstream_error(
                format!("upstream `{}` broke off its answer", self.cfg.name),
                true,
                None,
            )),
        }
    }

    /// A small JSON exchange (`/tokenize`, `/detokenize`).
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, CoreError> {
        let resp = self.send(self.root_url(path), body, &[]).await?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND
            || status == reqwest::StatusCode::METHOD_NOT_ALLOWED
        {
            // An upstream without the route (vLLM's and OpenAI's differ or
            // are missing): this model cannot do it.
            return Err(CoreError::invalid(
                "model",
                format!("/{path} is not available for this upstream model"),
            ));
        }
        if !status.is_success() {
            return Err(self.refused(resp).await);
        }
        let bytes = self.body(resp).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            upstream_error(
                format!(
                    "upstream `{}` answered {path} with an unexpected body: {e}",
                    self.cfg.name
                ),
                false,
                None,
            )
        })
    }

    async fn start(
        &self,
        prepared: Prepared,
        traceparent: Option<String>,
    ) -> Result<EventStream, CoreError> {
        // The size this request was admitted by.
        let prompt_estimate = prepared.size.prompt_tokens;
        let req = prepared.request;
        let body = request_body(&req, &self.cfg.model);
        let endpoint = body.endpoint();
        // The key goes on, so that a balancer in front of the upstream's
        // replicas keeps the same requests together (see `affinity`).
        let key = affinity::of_request(&req);
        let mut headers = vec![(affinity::HEADER, key.as_str())];
        headers.extend(traceparent.as_deref().map(|tp| (TRACEPARENT, tp)));
        let resp = self
            .post(self.url(endpoint.path()), &body, &headers)
            .await?;
        let decoder = Decoder::new(endpoint, req.choices(), prompt_estimate);
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json {
            return self.whole_answer(resp, decoder).await;
        }
        let flow = Flow {
            body: resp.bytes_stream().boxed(),
            parser: SseParser::default(),
            decoder,
            queue: VecDeque::new(),
            ended: false,
            idle: self.cfg.timeout,
            name: self.cfg.name.clone(),
        };
        Ok(futures::stream::unfold(flow, |mut f| async move {
            let ev = f.next().await?;
            Some((ev, f))
        })
        .boxed())
    }

    async fn embed_remote(
        &self,
        prepared: Prepared<EmbedRequest>,
        traceparent: Option<String>,
    ) -> Result<Embeddings, CoreError> {
        let req = &prepared.request;
        let body = embed_wire::request_body(req, &self.cfg.model);
        let headers: Vec<_> = traceparent
            .as_deref()
            .map(|tp| (TRACEPARENT, tp))
            .into_iter()
            .collect();
        let resp = self.post(self.url("embeddings"), &body, &headers).await?;
        let bytes = self.body(resp).await?;
        embed_wire::read(&bytes, req.input.count(), prepared.size.prompt_tokens)
            .map_err(|e| upstream_error(format!("upstream `{}`: {e}", self.cfg.name), false, None))
    }

    /// An upstream that ignores `stream`: its whole answer, as events.
    async fn whole_answer(
        &self,
        resp: reqwest::Response,
        mut decoder: Decoder,
    ) -> Result<EventStream, CoreError> {
        let body = self.body(resp).await?;
        let events = decoder.whole(&body).map_err(|e| {
            upstream_error(format!("upstream `{}`: {e}", self.cfg.name), false, None)
        })?;
        Ok(futures::stream::iter(events).boxed())
    }
}

/// The state of one relayed stream.
struct Flow {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    parser: SseParser,
    decoder: Decoder,
    queue: VecDeque<GenEvent>,
    ended: bool,
    idle: Duration,
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
                self.queue.extend(events);
                Ok(())
            }
            Err(e) => Err(self.fail(e.to_string())),
        }
    }

    fn close(&mut self) {
        // Content chunks are one token each for the servers we know.
        let events = self.decoder.close(|chunks| chunks);
        self.queue.extend(events);
        self.ended = true;
    }

    /// Bytes from the body, parsed into queued events.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), GenEvent> {
        for payload in self.parser.push(bytes) {
            self.take(&payload)?;
            if self.decoder.done {
                break;
            }
        }
        Ok(())
    }

    /// The body ended: what was left in the parser, and whether `[DONE]` came.
    fn ended_body(&mut self) -> Result<(), GenEvent> {
        if let Some(payload) = self.parser.finish() {
            self.take(&payload)?;
        }
        if self.decoder.done {
            return Ok(());
        }
        Err(self.fail(format!(
            "upstream `{}` ended the stream before [DONE]",
            self.name
        )))
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
            let fed = match tokio::time::timeout(self.idle, self.body.next()).await {
                Err(_) => {
                    let idle = self.idle;
                    Err(self.fail(format!("upstream `{}` stalled for {idle:?}", self.name)))
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(upstream = %self.name, error = %e, "upstream body failed");
                    Err(self.fail(format!("upstream `{}` broke off the stream", self.name)))
                }
                Ok(Some(Ok(bytes))) => self.feed(&bytes),
                Ok(None) => self.ended_body(),
            };
            if let Err(ev) = fed {
                return Some(ev);
            }
        }
    }
}

impl Provider for Upstream {
    /// The upstream decides what it serves.
    fn info(&self) -> ModelInfo {
        ModelInfo {
            context_length: 0,
            generates: true,
            embeds: true,
        }
    }

    /// No tokenizer here: the prompt is estimated, and the completion is
    /// capped only by `max_tokens`.
    fn prepare(&self, req: GenerateRequest) -> BoxFuture<'_, Result<Prepared, CoreError>> {
        let prompt_estimate = estimate_prompt(&req);
        let n = req.choices() as u32;
        let size = RequestSize {
            prompt_tokens: prompt_estimate,
            choices: n,
            max_tokens: req.max_tokens,
            completion_cap: req.max_tokens.map_or(u32::MAX, |m| m.saturating_mul(n)),
        };
        let prepared = Prepared::new(req, size);
        Box::pin(async move { Ok(prepared) })
    }

    fn run(
        &self,
        prepared: Prepared,
        ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<EventStream, CoreError>> {
        Box::pin(async move {
            let events = self.start(prepared, ctx.traceparent).await?;
            Ok(self.meter.watch(events))
        })
    }

    fn stats(&self) -> ProviderStats {
        self.meter.stats()
    }

    fn prepare_embed(
        &self,
        req: EmbedRequest,
    ) -> BoxFuture<'_, Result<Prepared<EmbedRequest>, CoreError>> {
        let size = RequestSize {
            prompt_tokens: embed_wire::estimate(&req),
            choices: req.input.count() as u32,
            max_tokens: Some(0),
            completion_cap: 0,
        };
        Box::pin(async move { Ok(Prepared::new(req, size)) })
    }

    fn embed(
        &self,
        prepared: Prepared<EmbedRequest>,
        ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<Embeddings, CoreError>> {
        Box::pin(self.embed_remote(prepared, ctx.traceparent))
    }

    /// Through the upstream's own `/tokenize` (llama.cpp's server, aitier).
    fn tokenize(
        &self,
        text: String,
        add_special: bool,
        parse_special: bool,
    ) -> BoxFuture<'_, Result<Vec<TokenPiece>, CoreError>> {
        Box::pin(async move {
            let req = TokenizeRequest {
                model: Some(self.cfg.model.clone()),
                content: text,
                add_special,
                parse_special,
                with_pieces: true,
            };
            let resp: TokenizeResponse = self.call("tokenize", &req).await?;
            Ok(resp
                .tokens
                .into_iter()
                .map(|t| match t {
                    TokenOut::Id(id) => TokenPiece {
                        id,
                        piece: String::new(),
                    },
                    TokenOut::WithPiece { id, piece } => TokenPiece { id, piece },
                })
                .collect())
        })
    }

    fn detokenize(&self, tokens: Vec<u32>) -> BoxFuture<'_, Result<String, CoreError>> {
        Box::pin(async move {
            let req = DetokenizeRequest {
                model: Some(self.cfg.model.clone()),
                tokens,
            };
            let resp: DetokenizeResponse = self.call("detokenize", &req).await?;
            Ok(resp.content)
        })
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

    #[test]
    fn an_invalid_request_keeps_the_upstreams_code_and_param() {
        let body = r#"{"error":{"message":"too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        match refusal("u", reqwest::StatusCode::BAD_REQUEST, body, None) {
            CoreError::Refused { status, error } => {
                assert_eq!(status, 400);
                assert_eq!(error.code.as_deref(), Some("context_length_exceeded"));
                assert_eq!(error.param.as_deref(), Some("messages"));
            }
            other => panic!("{other:?}"),
        }
        // llama.cpp's numeric code is no OpenAI code.
        let llama = r#"{"error":{"code":400,"message":"bad","type":"invalid_request_error"}}"#;
        assert!(matches!(
            refusal("u", reqwest::StatusCode::BAD_REQUEST, llama, None),
            CoreError::Refused { error, .. } if error.code.is_none() && error.message == "bad"
        ));
        assert!(matches!(
            refusal("u", reqwest::StatusCode::BAD_GATEWAY, "oops", None),
            CoreError::Upstream {
                retryable: true,
                ..
            }
        ));
    }
}
