//! One request's passage through the limits: the places and tokens it holds,
//! what it used, and the ledger row it leaves when it ends, however it ends
//! (finished, failed, refused, or dropped because the client went away).
//! The server admits it once the provider has sized the request, then
//! feeds it the provider's events.
use std::time::{Duration, Instant};

use aitier_core::{CoreError, FinishReason, GenEvent, RequestSize};
use aitier_protocol::Usage;

use crate::admission::{Admission, Holds};
use crate::ledger::{LedgerSlot, Written};
use crate::principal::Principal;
use crate::store::{Outcome, UsageRecord};

/// Who asked, for what, for the ledger row.
pub(crate) struct Identity {
    pub principal: Principal,
    pub tenant_label: String,
    pub model: String,
    pub request_id: String,
    pub endpoint: String,
}

pub struct Ticket {
    admission: Admission,
    /// Taken when the row is written.
    slot: Option<LedgerSlot>,
    /// In sync mode, once the row is queued: resolves when it is written.
    written: Option<Written>,
    who: Identity,
    started: Instant,
    ts: i64,
    holds: Holds,
    provider: Option<String>,
    prompt_tokens: u32,
    /// Completion tokens seen in deltas, billed if the request ends early.
    generated: u32,
    first_token: Option<Duration>,
    finish_reason: Option<FinishReason>,
    admitted: bool,
    estimated: bool,
}

impl Ticket {
    pub(crate) fn new(admission: Admission, slot: LedgerSlot, who: Identity) -> Self {
        Self {
            admission,
            slot: Some(slot),
            written: None,
            who,
            started: Instant::now(),
            ts: aitier_core::clock::now_ms(),
            holds: Holds::default(),
            provider: None,
            prompt_tokens: 0,
            generated: 0,
            first_token: None,
            finish_reason: None,
            admitted: false,
            estimated: false,
        }
    }

    /// Concurrency and request rate; a refusal is written to the ledger.
    pub(crate) async fn enter(&mut self) -> Result<(), CoreError> {
        let result = self
            .admission
            .enter(&self.who.principal, &mut self.holds)
            .await;
        if let Err(e) = &result {
            self.failed(e);
        }
        result
    }

    /// Tokens per minute and budgets, for a request of `size`. Only the
    /// first call counts: a request is admitted once, whichever provider
    /// serves it.
    pub async fn admit(&mut self, size: RequestSize) -> Result<(), CoreError> {
        if std::mem::replace(&mut self.admitted, true) {
            return Ok(());
        }
        self.prompt_tokens = size.prompt_tokens;
        let result = self
            .admission
            .admit(&self.who.principal, size, &mut self.holds)
            .await;
        if let Err(e) = &result {
            self.failed(e);
        }
        result
    }

    /// The model (a fallback) or deployment that served the request;
    /// defaults to the model asked for.
    pub fn served_by(&mut self, provider: &str) {
        self.provider = Some(provider.to_string());
    }

    /// Follows the provider's events; the final one writes the row.
    pub fn observe(&mut self, ev: &GenEvent) {
        match ev {
            GenEvent::Started {
                prompt_tokens,
                deployment,
                ..
            } => {
                self.prompt_tokens = *prompt_tokens;
                if let Some(d) = deployment {
                    self.provider = Some(d.clone());
                }
            }
            GenEvent::Delta { tokens, .. } | GenEvent::ToolCall { tokens, .. } => {
                self.generated += tokens;
                self.first_token
                    .get_or_insert_with(|| self.started.elapsed());
            }
            GenEvent::Finished { reason, .. } => {
                // With several choices, one cut short makes the request's reason `length`.
                if self.finish_reason != Some(FinishReason::Length) {
                    self.finish_reason = Some(*reason);
                }
            }
            GenEvent::Done { usage, estimated } => {
                self.estimated = *estimated;
                self.finish(Outcome::Ok, Some(usage));
            }
            GenEvent::Error(e) => self.finish(Outcome::of(e), None),
        }
    }

    /// In the ledger's sync mode, once the row is queued: what to wait on
    /// before the end of the answer goes out.
    pub fn written(&mut self) -> Option<Written> {
        self.written.take()
    }

    /// A request answered whole (an embedding): its usage writes the row.
    pub fn completed(&mut self, usage: &Usage, estimated: bool) {
        self.estimated = estimated;
        self.finish(Outcome::Ok, Some(usage));
    }

    /// The request failed before streaming (or was refused).
    pub fn failed(&mut self, e: &CoreError) {
        self.finish(Outcome::of(e), None);
    }

    fn finish(&mut self, status: Outcome, usage: Option<&Usage>) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let (prompt, cached, completion) = match usage {
            Some(u) => (
                u.prompt_tokens,
                u.prompt_tokens_details.cached_tokens,
                u.completion_tokens,
            ),
            // Ended early: billed for what it generated, and for its prompt
            // only if that was evaluated (a token came of it).
            None if self.generated > 0 => (self.prompt_tokens, 0, self.generated),
            None => (0, 0, 0),
        };
        let holds = std::mem::take(&mut self.holds);
        if let Some(h) = holds.budgets.first() {
            self.admission.leases.ended(&h.hold);
        }
        let used = u64::from(prompt) + u64::from(completion);
        self.admission.settle(holds.places, holds.tokens, used);
        let who = &self.who;
        self.written = slot.record(UsageRecord {
            row_id: uuid::Uuid::new_v4().simple().to_string(),
            ts: self.ts,
            request_id: who.request_id.clone(),
            tenant_id: who
                .principal
                .tenant_id()
                .unwrap_or(&who.tenant_label)
                .to_string(),
            key_id: who.principal.key_id().map(str::to_string),
            model: who.model.clone(),
            provider: self.provider.clone().unwrap_or_else(|| who.model.clone()),
            endpoint: who.endpoint.clone(),
            prompt_tokens: u64::from(prompt),
            cached_tokens: u64::from(cached),
            completion_tokens: u64::from(completion),
            ttft_ms: self.first_token.map(|d| d.as_millis() as u64),
            duration_ms: self.started.elapsed().as_millis() as u64,
            status,
            finish_reason: self.finish_reason.filter(|_| status == Outcome::Ok),
            estimated: self.estimated,
            reservations: holds.budgets,
        });
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Not finished: the client went away. Bill what was generated.
        self.finish(Outcome::Cancelled, None);
    }
}
