//! Running a generation (or an embedding) for an authenticated caller: the
//! model must exist, be allowed and serve that kind of request; the rate
//! limits must let the request start; the provider sizes it and the tier
//! admits that size; it runs, on the model's fallbacks while the model is
//! unavailable; and the ticket follows the event stream (or the answer) so
//! that its ledger row is written however the request ends.
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use aitier_core::{
    CoreError, EmbedRequest, Embeddings, EventStream, GenerateRequest, ModelInfo, Provider,
    RequestCtx,
};
use aitier_protocol::Usage;
use aitier_tenancy::{Principal, Ticket};

use crate::error::ApiError;
use crate::state::AppState;

pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub request_id: &'a str,
    /// The request's `user` field: the tenant in open mode.
    pub user: Option<&'a str>,
    /// The API path, for the ledger.
    pub endpoint: &'a str,
}

impl Caller<'_> {
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

/// The provider of `model` for a caller allowed to use it, if it serves
/// what `serves` asks of it; else a 400 that says what it is for.
fn resolve_serving(
    state: &AppState,
    principal: &Principal,
    model: &str,
    serves: fn(&ModelInfo) -> bool,
    refusal: &str,
) -> Result<Arc<dyn Provider>, ApiError> {
    let provider = resolve_for(state, principal, model)?;
    if !serves(&provider.info()) {
        return Err(ApiError::invalid(
            Some("model".into()),
            format!("The model `{model}` {refusal}."),
        )
        .code("model_not_supported"));
    }
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
    let ctx = RequestCtx {
        request_id: caller.request_id.to_string(),
        weight: caller
            .principal
            .weight()
            .unwrap_or_else(|| state.scheduling.weight_of(&label)),
        tenant: caller
            .principal
            .tenant_id()
            .map(str::to_string)
            .unwrap_or(label),
        deadline: Some(Instant::now() + state.scheduling.queue_timeout),
    };
    Ok((ticket, ctx))
}

/// The models to try, in order, when `model` cannot take a request: a
/// fallback the key may not use, or one not up, is passed over.
struct Fallbacks<'a> {
    state: &'a AppState,
    principal: &'a Principal,
    model: &'a str,
    names: std::slice::Iter<'a, String>,
}

impl<'a> Fallbacks<'a> {
    fn of(state: &'a AppState, principal: &'a Principal, model: &'a str) -> Self {
        let names = state.fallbacks.get(model).map_or(&[][..], Vec::as_slice);
        Self {
            state,
            principal,
            model,
            names: names.iter(),
        }
    }

    /// The next provider to try after an attempt failed with `e`, if the
    /// failure was the model's unavailability; the ticket names it.
    fn after(&mut self, e: &CoreError, ticket: &mut Ticket) -> Option<Arc<dyn Provider>> {
        e.unavailable()?;
        for name in self.names.by_ref() {
            if let Ok(next) = resolve_for(self.state, self.principal, name) {
                tracing::warn!(from = %self.model, to = %name, "falling back");
                ticket.served_by(name);
                return Some(next);
            }
        }
        None
    }
}

pub async fn start(
    state: &AppState,
    caller: Caller<'_>,
    model: &str,
    gen: GenerateRequest,
) -> Result<EventStream, ApiError> {
    let provider = resolve_serving(
        state,
        caller.principal,
        model,
        |i| i.generates,
        "is an embedding model; use /v1/embeddings",
    )?;
    let (mut ticket, ctx) = begin(state, &caller, model).await?;
    let mut fallbacks = Fallbacks::of(state, caller.principal, model);
    let mut provider = provider;
    let result = loop {
        match attempt(provider.as_ref(), gen.clone(), &ctx, &mut ticket).await {
            Err(e) => match fallbacks.after(&e, &mut ticket) {
                Some(next) => provider = next,
                None => break Err(e),
            },
            ok => break ok,
        }
    };
    match result {
        // The ticket lives as long as the stream: dropped early, it bills
        // what was sent.
        Ok(events) => Ok(events.inspect(move |ev| ticket.observe(ev)).boxed()),
        Err(e) => {
            ticket.failed(&e);
            Err(e.into())
        }
    }
}

/// Embeds for an authenticated caller, with the same checks, admission,
/// fallbacks and ledger row as a generation.
pub async fn embed(
    state: &AppState,
    caller: Caller<'_>,
    model: &str,
    req: EmbedRequest,
) -> Result<Embeddings, ApiError> {
    let provider = resolve_serving(
        state,
        caller.principal,
        model,
        |i| i.embeds,
        "does not support embeddings",
    )?;
    let (mut ticket, ctx) = begin(state, &caller, model).await?;
    let mut fallbacks = Fallbacks::of(state, caller.principal, model);
    let mut provider = provider;
    let result = loop {
        match attempt_embed(provider.as_ref(), req.clone(), &ctx, &mut ticket).await {
            Err(e) => match fallbacks.after(&e, &mut ticket) {
                Some(next) => provider = next,
                None => break Err(e),
            },
            ok => break ok,
        }
    };
    match result {
        Ok(answer) => {
            if let Some(d) = &answer.deployment {
                ticket.served_by(d);
            }
            let usage = Usage::new(answer.prompt_tokens, 0, 0);
            ticket.completed(&usage, answer.estimated);
            Ok(answer)
        }
        Err(e) => {
            ticket.failed(&e);
            Err(e.into())
        }
    }
}

/// One provider: sized, admitted by that size (once per request), run.
async fn attempt(
    provider: &dyn Provider,
    gen: GenerateRequest,
    ctx: &RequestCtx,
    ticket: &mut Ticket,
) -> Result<EventStream, CoreError> {
    let prepared = provider.prepare(gen).await?;
    ticket.admit(prepared.size).await?;
    provider.run(prepared, ctx.clone()).await
}

/// `attempt` for an embedding.
async fn attempt_embed(
    provider: &dyn Provider,
    req: EmbedRequest,
    ctx: &RequestCtx,
    ticket: &mut Ticket,
) -> Result<Embeddings, CoreError> {
    let prepared = provider.prepare_embed(req).await?;
    ticket.admit(prepared.size).await?;
    provider.embed(prepared, ctx.clone()).await
}
