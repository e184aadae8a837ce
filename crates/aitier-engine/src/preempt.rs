//! Who gives up a slot when none is free and another tenant waits: slots
//! are shared by weight like the queue is. A tenant that holds more slots
//! per weight than the waiting tenant would hold with one more pauses one
//! of its sequences (the engine keeps its cells aside, or recomputes them
//! from the prefix cache, when it resumes). The comparison is strict, so
//! the slot never goes back and forth: after the handover the waiter holds
//! no more per weight than the tenant it took from.
//!
//! Without it one tenant with more concurrent requests than there are
//! slots holds every slot, and another tenant's short request waits for
//! one of its long ones to end (271× its time alone at the default 4 slots).
//! Kept apart from the engine thread so the policy can be tested without a
//! model.
use std::collections::HashMap;

/// The slots each tenant holds, and its weight.
pub(crate) struct Holdings<'a> {
    by_tenant: HashMap<&'a str, (u64, u64)>,
}

impl<'a> Holdings<'a> {
    /// From each running sequence's tenant and weight.
    pub fn new(running: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        let mut by_tenant: HashMap<&'a str, (u64, u64)> = HashMap::new();
        for (tenant, weight) in running {
            let e = by_tenant.entry(tenant).or_insert((0, 1));
            e.0 += 1;
            e.1 = u64::from(weight.max(1));
        }
        Self { by_tenant }
    }

    /// The tenant that should hand `waiter` (of `weight`) a slot: the one
    /// holding the most per weight, if that is more than the waiter would
    /// hold with one more slot.
    pub fn lender_for(&self, waiter: &str, weight: u32) -> Option<&'a str> {
        let w_weight = u64::from(weight.max(1));
        let w_held = self.by_tenant.get(waiter).map_or(0, |h| h.0);
        // held_v / w_v > (held_w + 1) / w_w, in integers.
        let over = |&(held, w): &(u64, u64)| held * w_weight > (w_held + 1) * w;
        self.by_tenant
            .iter()
            .filter(|(t, h)| **t != waiter && over(h))
            // Most per weight first; the name breaks ties, for repeatability.
            .max_by(|(ta, (ha, wa)), (tb, (hb, wb))| (ha * wb).cmp(&(hb * wa)).then(tb.cmp(ta)))
            .map(|(t, _)| *t)
    }
}

/// What the choice of a lender's sequence looks at.
pub(crate) struct Candidate<'a> {
    pub tenant: &'a str,
    /// Tokens in its cells: what pausing it keeps aside or loses.
    pub computed: usize,
    /// Its request's arrival order.
    pub req: u64,
}

/// Which of `lender`'s sequences pauses: the one with the fewest tokens
/// computed (the least to keep aside or recompute), the latest request
/// among equals, as its client has waited least. An index into `seqs`.
pub(crate) fn pick_paused(seqs: &[Candidate], lender: &str) -> Option<usize> {
    seqs.iter()
        .enumerate()
        .filter(|(_, c)| c.tenant == lender)
        .min_by_key(|(_, c)| (c.computed, std::cmp::Reverse(c.req)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holdings<'a>(running: &[(&'a str, u32)]) -> Holdings<'a> {
        Holdings::new(running.iter().copied())
    }

    #[test]
    fn a_tenant_holding_every_slot_lends_one_to_a_waiting_tenant() {
        let h = holdings(&[("a", 1); 4]);
        assert_eq!(h.lender_for("b", 1), Some("a"));
    }

    #[test]
    fn the_slot_never_goes_back() {
        // After one handover at four slots: 3 against 1.
        let h = holdings(&[("a", 1), ("a", 1), ("a", 1), ("b", 1)]);
        assert_eq!(h.lender_for("a", 1), None, "b holds less than a");
        assert_eq!(h.lender_for("b", 1), Some("a"), "3 against 2 is still more");
        let even = holdings(&[("a", 1), ("a", 1), ("b", 1), ("b", 1)]);
        assert_eq!(even.lender_for("a", 1), None);
        assert_eq!(even.lender_for("b", 1), None);
    }

    #[test]
    fn a_tenant_alone_is_never_preempted_by_its_own_requests() {
        let h = holdings(&[("a", 1); 4]);
        assert_eq!(h.lender_for("a", 1), None);
    }

    #[test]
    fn weights_share_the_slots_too() {
        // a (weight 3) holding 3 of 4 against b's 1 is its share.
        let h = holdings(&[("a", 3), ("a", 3), ("a", 3), ("b", 1)]);
        assert_eq!(h.lender_for("b", 1), None);
        assert_eq!(
            h.lender_for("a", 3),
            None,
            "with a fourth slot a would hold 4/3 per weight to b's 1"
        );
        // A heavier waiter takes from a lighter tenant sooner.
        let h = holdings(&[("a", 1), ("a", 1), ("b", 3)]);
        assert_eq!(h.lender_for("b", 3), Some("a"));
    }

    #[test]
    fn the_tenant_holding_most_per_weight_lends() {
        let h = holdings(&[
            ("a", 1),
            ("a", 1),
            ("a", 1),
            ("b", 1),
            ("b", 1),
            ("c", 2),
            ("c", 2),
        ]);
        assert_eq!(h.lender_for("d", 1), Some("a"));
    }

    #[test]
    fn the_sequence_with_least_computed_pauses_latest_request_first() {
        let seqs = [
            Candidate {
                tenant: "a",
                computed: 900,
                req: 1,
            },
            Candidate {
                tenant: "b",
                computed: 5,
                req: 2,
            },
            Candidate {
                tenant: "a",
                computed: 40,
                req: 3,
            },
            Candidate {
                tenant: "a",
                computed: 40,
                req: 4,
            },
            Candidate {
                tenant: "a",
                computed: 700,
                req: 5,
            },
        ];
        assert_eq!(pick_paused(&seqs, "a"), Some(3));
        assert_eq!(pick_paused(&seqs, "b"), Some(1));
        assert_eq!(pick_paused(&seqs, "c"), None);
    }
}
