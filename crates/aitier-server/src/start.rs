//! Starting a generation for an authenticated caller: the model must exist
//! and be allowed, the rate limits must let the request in, the model's
//! fallbacks are tried when it is unavailable, and the ticket follows the
//! event stream so that its ledger row is written however the stream ends.
use std::time::Instant;

use futures::StreamExt;

use aitier_core::{EventStream, GenerateRequest, RequestCtx};
use aitier_tenancy::Principal;

use crate::app::AppState;
use crate::error::ApiError;

pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub request_id: &'a str,
    /// The request's `user` field: the tenant in open mode.
    pub user: Option<&'a str>,
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

pub fn check_model(principal: &Principal, model: &str) -> Result<(), ApiError> {
    if principal.allows_model(model) {
        Ok(())
    } else {
        Err(ApiError::model_not_allowed(model))
    }
}

pub async fn generate(
    state: &AppState,
    caller: Caller<'_>,
    model: &str,
    gen: GenerateRequest,
) -> Result<EventStream, ApiError> {
    let provider = state.registry.resolve(model)?;
    check_model(caller.principal, model)?;
    let label = caller.tenant_label();
    let ticket = state
        .tenancy
        .begin(caller.principal, &label, model, caller.request_id)
        .await?;
    let hooks = ticket.hooks();
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
        hooks: Some(hooks.clone()),
    };
    let fallbacks = state.fallbacks.get(model).cloned().unwrap_or_default();
    let mut result = provider.generate(gen.clone(), ctx.clone()).await;
    for name in &fallbacks {
        match &result {
            Err(e) if e.unavailable().is_some() => {}
            _ => break,
        }
        // A fallback the key may not use, or one not up, is passed over.
        let Ok(next) = state.registry.resolve(name) else {
            continue;
        };
        if !caller.principal.allows_model(name) {
            continue;
        }
        tracing::warn!(from = %model, to = %name, "falling back");
        hooks.served_by(name);
        result = next.generate(gen.clone(), ctx.clone()).await;
    }
    match result {
        // The ticket lives as long as the stream: dropped early, it bills
        // what was generated.
        Ok(events) => Ok(events.inspect(move |ev| ticket.observe(ev)).boxed()),
        Err(e) => {
            ticket.failed(&e);
            Err(e.into())
        }
    }
}
