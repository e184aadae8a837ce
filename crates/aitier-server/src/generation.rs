//! Running a generation (or an embedding) for an authenticated caller: the
//! model must exist, be allowed and serve that kind of request; the rate
//! limits must let the request start; the provider sizes it and the tier
//! admits that size; it runs, on the model's fallbacks while the model is
//! unavailable; and the ticket follows the event stream (or the answer) so
//! that its ledger row is written however the request ends.
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::StreamExt;

use aitier_core::frontend::embeddings::DecodedEmbed;
use aitier_core::frontend::{Decoded, Frontend};
use aitier_core::{
    CoreError, EmbedRequest, Embeddings, EventStream, GenerateRequest, ModelInfo, Prepared,
    Provider, RequestCtx,
};
use aitier_protocol::embeddings::{EmbeddingRequest, EmbeddingResponse};
use aitier_protocol::Usage;
use aitier_tenancy::{Principal, Ticket};

use crate::error::ApiError;
use crate::metrics::GenTimer;
use crate::state::AppState;

#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub request_id: &'a str,
    /// The request's `user` field: the tenant in open mode.
    pub user: Option<&'a str>,
    /// The API path, for the ledger.
    pub endpoint: &'a str,
    /// Passed on to upstreams.
    pub traceparent: Option<&'a str>,
}

impl Caller<'_> {
    /// Measures the request for the metrics, under the tenant of its key.
    fn timer(&self, state: &AppState, model: &str) -> GenTimer {
        let tenant = match self.principal {
            Principal::Key(k) => k.tenant.name.as_str(),
            Principal::Open => "",
        };
        GenTimer::start(&state.metrics, self.endpoint, model, tenant)
    }

    /// The tenant's name for the scheduler and the ledger.
    fn tenant_label(&self) -> String {
        match self.principal {
            Principal::Key(k) => k.tenant.name.clone(),
            // The `user` field is the client's text: keep it printable and short.
            Principal::Open => match self.user {
                Some(u) if !u.is_empty() => {
                    u.chars().filter(|c| !c.is_control()).take(128).collect()
                }
                _ => "anonymous".to_string(),
            },
        }
    }
}

/// Refuses a model the caller's key may not use.
pub fn check_allowed(principal: &Principal, model: &str) -> Result<(), ApiError> {
    if principal.allows_model(model) {
        Ok(())
    } else {
        Err(ApiError::model_not_allowed(model))
    }
}

/// The provider of `model`, for a caller allowed to use it. An unknown or
/// loading model says so before a disallowed one is refused.
pub fn resolve_for(
    state: &AppState,
    principal: &Principal,
    model: &str,
) -> Result<Arc<dyn Provider>, ApiError> {
    let provider = state.registry.resolve(model)?;
    check_allowed(principal, model)?;
    Ok(provider)
}

/// The ticket and scheduling context of a request about to be admitted.
async fn begin(
    state: &AppState,
    caller: &Caller<'_>,
    model: &str,
) -> Result<(Ticket, RequestCtx), ApiError> {
    let label = caller.tenant_label();
    let ticket = state
        .tenancy
        .begin(
            caller.principal,
            &label,
            model,
            caller.request_id,
            caller.endpoint,
        )
        .await?;
    let scheduling = state.catalog.scheduling();
    let ctx = RequestCtx {
        request_id: caller.request_id.to_string(),
        weight: caller
            .principal
            .weight()
            .unwrap_or_else(|| scheduling.weight_of(&label)),
        tenant: caller
            .principal
            .tenant_id()
            .map(str::to_string)
            .unwrap_or(label),
        deadline: Some(Instant::now() + scheduling.queue_timeout),
        traceparent: caller.traceparent.map(str::to_string),
    };
    Ok((ticket, ctx))
}

/// What a request asks a provider for: a generation or an embedding, each
/// with the provider's own two steps for it (size it, then run it).
trait Work: Clone + Send + Sync {
    type Out: Send;
    /// Why a model that cannot do it is refused ("The model `m` …").
    const REFUSAL: &'static str;
    /// Whether a model of this description can do it.
    fn served_by(info: &ModelInfo) -> bool;
    fn prepare(self, provider: &dyn Provider) -> BoxFuture<'_, Result<Prepared<Self>, CoreError>>;
    fn run(
        provider: &dyn Provider,
        prepared: Prepared<Self>,
        ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<Self::Out, CoreError>>;
}

impl Work for GenerateRequest {
    type Out = EventStream;
    const REFUSAL: &'static str = "is an embedding model; use /v1/embeddings";

    fn served_by(info: &ModelInfo) -> bool {
        info.generates
    }

    fn prepare(self, provider: &dyn Provider) -> BoxFuture<'_, Result<Prepared, CoreError>> {
        provider.prepare(self)
    }

    fn run(
        provider: &dyn Provider,
        prepared: Prepared,
        ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<EventStream, CoreError>> {
        provider.run(prepared, ctx)
    }
}

impl Work for EmbedRequest {
    type Out = Embeddings;
    const REFUSAL: &'static str = "does not support embeddings";

    fn served_by(info: &ModelInfo) -> bool {
        info.embeds
    }

    fn prepare(self, provider: &dyn Provider) -> BoxFuture<'_, Result<Prepared<Self>, CoreError>> {
        provider.prepare_embed(self)
    }

    fn run(
        provider: &dyn Provider,
        prepared: Prepared<Self>,
        ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<Embeddings, CoreError>> {
        provider.embed(prepared, ctx)
    }
}

/// One provider: sized, admitted by that size (once per request, whichever
/// provider serves it), run.
async fn attempt<W: Work>(
    provider: &dyn Provider,
    work: &W,
    ctx: &RequestCtx,
    ticket: &mut Ticket,
) -> Result<W::Out, CoreError> {
    let prepared = work.clone().prepare(provider).await?;
    ticket.admit(prepared.size).await?;
    W::run(provider, prepared, ctx.clone()).await
}

/// Runs `work` on the model for an authenticated caller, on its fallbacks
/// while the one before could not take it (a fallback the key may not
/// use, or one not up, is passed over). Returns the answer with the
/// ticket that is to record it; a failure is recorded here.
async fn serve<W: Work>(
    state: &AppState,
    caller: &Caller<'_>,
    model: &str,
    work: &W,
) -> Result<(W::Out, Ticket), ApiError> {
    let mut provider = resolve_for(state, caller.principal, model)?;
    if !W::served_by(&provider.info()) {
        return Err(ApiError::invalid(
            Some("model".into()),
            format!("The model `{model}` {}.", W::REFUSAL),
        )
        .code("model_not_supported"));
    }
    tracing::Span::current().record("provider", model);
    let (mut ticket, ctx) = begin(state, caller, model).await?;
    let fallbacks = state.catalog.fallbacks();
    let mut fallbacks = fallbacks.get(model).into_iter().flatten();
    loop {
        let e = match attempt(provider.as_ref(), work, &ctx, &mut ticket).await {
            Ok(out) => return Ok((out, ticket)),
            Err(e) => e,
        };
        let next = e.unavailable().and_then(|_| {
            fallbacks.find_map(|name| {
                let next = resolve_for(state, caller.principal, name).ok()?;
                tracing::warn!(from = %model, to = %name, "falling back");
                tracing::Span::current().record("provider", name.as_str());
                ticket.served_by(name);
                Some(next)
            })
        });
        match next {
            Some(p) => provider = p,
            None => {
                ticket.failed(&e);
                return Err(e.into());
            }
        }
    }
}

pub async fn start(
    state: &AppState,
    caller: Caller<'_>,
    model: &str,
    gen: GenerateRequest,
) -> Result<EventStream, ApiError> {
    let mut timer = caller.timer(state, model);
    let (events, ticket) = serve(state, &caller, model, &gen)
        .await
        .inspect_err(|e| timer.failed(e))?;
    // The ticket lives as long as the stream: dropped early, it bills
    // what was sent. In the ledger's sync mode the final event waits
    // until its row is written.
    Ok(futures::stream::unfold(
        (events, ticket, timer),
        |(mut events, mut ticket, mut timer)| async move {
            let ev = events.next().await?;
            ticket.observe(&ev);
            timer.observe(&ev);
            if let Some(written) = ticket.written() {
                written.wait().await;
            }
            Some((ev, (events, ticket, timer)))
        },
    )
    .boxed())
}

/// Embeds for an authenticated caller, with the same checks, admission,
/// fallbacks and ledger row as a generation.
pub async fn embed(
    state: &AppState,
    caller: Caller<'_>,
    model: &str,
    req: EmbedRequest,
) -> Result<Embeddings, ApiError> {
    let mut timer = caller.timer(state, model);
    let (answer, mut ticket) = serve(state, &caller, model, &req)
        .await
        .inspect_err(|e| timer.failed(e))?;
    if let Some(d) = &answer.deployment {
        ticket.served_by(d);
    }
    ticket.completed(&Usage::new(answer.prompt_tokens, 0, 0), answer.estimated);
    if let Some(written) = ticket.written() {
        written.wait().await;
    }
    timer.embedded(answer.prompt_tokens);
    Ok(answer)
}

/// A generation begun from an API's wire request: its events, and the
/// front-end's encoder for them.
pub struct Begun<F> {
    pub events: EventStream,
    pub encoder: F,
    pub choices: usize,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The key it was routed by, for the response.
    pub affinity: String,
}

/// Decodes a wire request with its front-end (a 400 for what cannot be
/// honoured) and begins it (see `begin_decoded`). The HTTP routes and the
/// in-process tier both come through here.
pub async fn begin_api<F: Frontend>(
    state: &AppState,
    caller: Caller<'_>,
    key: Option<String>,
    req: F::Request,
) -> Result<Begun<F>, ApiError> {
    begin_decoded(state, caller, key, F::decode(req)?).await
}

/// Gives a decoded request its affinity key (`key`, a header's, when
/// sent) and starts it for `caller`.
pub async fn begin_decoded<E>(
    state: &AppState,
    caller: Caller<'_>,
    key: Option<String>,
    decoded: Decoded<E>,
) -> Result<Begun<E>, ApiError> {
    let Decoded {
        mut request,
        delivery,
        model,
        user,
        encoder,
    } = decoded;
    let choices = request.choices();
    let affinity = crate::affinity::settle(&mut request, key);
    crate::metrics::note_model(&model);
    let caller = Caller {
        user: user.as_deref(),
        ..caller
    };
    let events = start(state, caller, &model, request).await?;
    Ok(Begun {
        events,
        encoder,
        choices,
        stream: delivery.stream,
        affinity,
    })
}

/// Decodes an embeddings request, embeds it for `caller` and encodes the
/// answer: what `/v1/embeddings` and the in-process tier do.
pub async fn embed_api(
    state: &AppState,
    caller: Caller<'_>,
    req: EmbeddingRequest,
) -> Result<EmbeddingResponse, ApiError> {
    let DecodedEmbed {
        request,
        model,
        user,
        encoder,
    } = aitier_core::frontend::embeddings::decode(req)?;
    crate::metrics::note_model(&model);
    let caller = Caller {
        user: user.as_deref(),
        ..caller
    };
    let answer = embed(state, caller, &model, request).await?;
    Ok(encoder.respond(answer))
}
