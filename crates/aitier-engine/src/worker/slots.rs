//! Which slot a sequence runs in: a new one takes the slot holding the
//! longest prefix of its prompt, an ending one leaves its cells there as
//! prefix cache, and one paused for another tenant puts its cells aside
//! and takes them up again in whatever slot it resumes in.
use std::sync::atomic::Ordering;

use llama_cpp_2::{LlamaStateSeqFlags, SeqState};

use super::Worker;
use crate::sequence::{choose_slot, common_prefix, Paused, Seq, Waiting};

impl Worker<'_> {
    /// A sequence leaves its slot; what it computed stays as prefix cache.
    pub(super) fn release(&mut self, mut seq: Seq) {
        seq.tokens.truncate(seq.n_past);
        self.vacate(seq.slot as usize, seq.tokens);
    }

    /// `slot` goes idle, its cells holding `tokens` as prefix cache.
    fn vacate(&mut self, slot: usize, tokens: Vec<u32>) {
        self.clock += 1;
        let s = &mut self.slots[slot];
        s.busy = false;
        s.tokens = tokens;
        s.last_used = self.clock;
        self.enforce_cache_budget();
    }

    pub(super) fn clear_slot(&mut self, slot: usize, from: usize) {
        if let Err(e) = self
            .ctx
            .clear_kv_cache_seq(Some(slot as u32), Some(from as u32), None)
        {
            tracing::error!(slot, error = %e, "failed to clear KV cells");
        }
        self.slots[slot].tokens.truncate(from);
    }

    /// Clears least recently used idle caches until they fit the budget.
    fn enforce_cache_budget(&mut self) {
        loop {
            let held: u64 = self
                .slots
                .iter()
                .filter(|s| !s.busy)
                .map(|s| s.tokens.len() as u64)
                .sum();
            if held <= self.cfg.cache_cells {
                return;
            }
            let Some(lru) = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.busy && !s.tokens.is_empty())
                .min_by_key(|(_, s)| s.last_used)
                .map(|(i, _)| i)
            else {
                return;
            };
            self.clear_slot(lru, 0);
        }
    }

    /// Picks the slot for a new sequence and reuses the longest cached
    /// prefix of its prompt: the slot's own cells, or (with `share`) another
    /// sequence's copied into it. Returns the slot and how many prompt
    /// tokens are cached.
    pub(super) fn place(&mut self, prompt: &[u32], share: bool) -> Option<(usize, usize)> {
        // At least the last prompt token is evaluated, for its logits.
        let usable = prompt.len().saturating_sub(1);
        let target = choose_slot(&self.slots, prompt, usable)?;
        let own = common_prefix(&self.slots[target].tokens, prompt).min(usable);
        let mut donor: Option<(usize, usize)> = None;
        for (i, s) in self.slots.iter().enumerate().filter(|_| share) {
            if i != target && !s.busy {
                let n = common_prefix(&s.tokens, prompt).min(usable);
                if n > donor.map_or(own, |d| d.1) {
                    donor = Some((i, n));
                }
            }
        }
        for seq in self.running.iter().filter(|_| share) {
            let n = common_prefix(&seq.tokens[..seq.n_past], prompt).min(usable);
            if n > donor.map_or(own, |d| d.1) {
                donor = Some((seq.slot as usize, n));
            }
        }
        let cached = match donor {
            Some((from, n)) => {
                // Each slot has its own KV stream (so attention never spans
                // other sequences' cells); llama.cpp copies whole streams
                // only, so copy, then cut back to the shared prefix.
                match self
                    .ctx
                    .kv_cache_seq_cp(from as i32, target as i32, None, None)
                {
                    Ok(()) => {
                        self.clear_slot(target, n);
                        n
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "failed to copy cached cells");
                        self.clear_slot(target, 0);
                        0
                    }
                }
            }
            None => {
                self.clear_slot(target, own);
                own
            }
        };
        self.clock += 1;
        let slot = &mut self.slots[target];
        slot.busy = true;
        slot.tokens.clear();
        slot.last_used = self.clock;
        Some((target, cached))
    }

    /// Takes running sequence `i` out of its slot and queues it ahead of
    /// its tenant's other work. Its cells go aside (a copy in host memory,
    /// a few milliseconds) while the paused sequences' fit `swap_cells`;
    /// either way the slot keeps them as prefix cache until reused.
    pub(super) fn pause(&mut self, i: usize) {
        let mut seq = self.running.swap_remove(i);
        seq.logits_at = None;
        seq.mask = None;
        let aside: u64 = self.waiting.iter().map(Waiting::cells_aside).sum();
        let fits = seq.n_past > 0 && aside + seq.n_past as u64 <= self.cfg.swap_cells;
        let cells = fits
            .then(|| {
                self.ctx
                    .state_seq_get(seq.slot, LlamaStateSeqFlags::empty())
            })
            .and_then(|r| {
                r.map_err(
                    |e| tracing::warn!(error = %e, "could not keep a paused sequence's cells"),
                )
                .ok()
            });
        tracing::debug!(
            req = seq.req,
            tenant = %seq.tenant,
            cells = seq.n_past,
            kept = cells.is_some(),
            "paused for another tenant"
        );
        self.counters.preempted.fetch_add(1, Ordering::Relaxed);
        self.vacate(seq.slot as usize, seq.tokens[..seq.n_past].to_vec());
        // Its tenant is charged for what it still has to do.
        let redo = if cells.is_some() {
            0
        } else {
            seq.n_past as u64
        };
        let cost = u64::from(seq.max_new.saturating_sub(seq.generated)) + redo;
        let (tenant, weight) = (seq.tenant.clone(), seq.weight);
        let paused = Paused {
            seq: Box::new(seq),
            cells,
        };
        self.waiting
            .push_front(&tenant, weight, Waiting::Paused(paused), cost);
    }

    /// Puts a paused sequence back in a slot, with its cells from the
    /// prefix cache if a slot still holds them, else from the copy kept
    /// aside, else recomputed from as much prefix as is cached. Hands it
    /// back when no slot is free.
    pub(super) fn resume(&mut self, p: Paused<SeqState>) -> Result<(), Paused<SeqState>> {
        // Cells kept aside are restored whole: copying another slot's
        // prefix in first would be work thrown away.
        let Some((slot, cached)) = self.place(&p.seq.tokens, p.cells.is_none()) else {
            return Err(p);
        };
        let Paused { mut seq, cells } = p;
        seq.n_past = if cached >= seq.n_past {
            cached
        } else {
            match cells.map(|c| self.ctx.state_seq_set(&c, slot as i32)) {
                Some(Ok(())) => seq.n_past,
                Some(Err(e)) => {
                    // llama.cpp cleared what it had begun to write.
                    tracing::warn!(error = %e, "could not restore a paused sequence's cells");
                    self.clear_slot(slot, 0);
                    0
                }
                None => cached,
            }
        };
        seq.slot = slot as i32;
        self.running.push(*seq);
        Ok(())
    }
}
