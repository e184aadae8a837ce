//! Running a generation for an authenticated caller: the model must exist
//! and be allowed; the rate limits must let the request start; the provider
//! sizes it and the tier admits that size; it runs, on the model's
//! fallbacks while the model is unavailable; and the ticket follows the
//! event stream so that its ledger row is written however the stream ends.
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use aitier_core::{CoreError, EventStream, GenerateRequest, Provider, RequestCtx};
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

pub async fn start(
    state: &AppState,
    caller: Caller<'_>,
    model: &str,
    gen: GenerateRequest,
) -> Result<EventStream, ApiError> {
    let provider = resolve_for(state, caller.principal, model)?;
    let label = caller.tenant_label();
    let mut ticket = state
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
    let mut result = attempt(provider.as_ref(), gen.clone(), &ctx, &mut ticket).await;
    for name in state.fallbacks.get(model).into_iter().flatten() {
        match &result {
            Err(e) if e.unavailable().is_some() => {}
            _ => break,
        }
        // A fallback the key may not use, or one not up, is passed over.
        let Ok(next) = resolve_for(state, caller.principal, name) else {
            continue;
        };
        tracing::warn!(from = %model, to = %name, "falling back");
        ticket.served_by(name);
        result = attempt(next.as_ref(), gen.clone(), &ctx, &mut ticket).await;
    }
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
