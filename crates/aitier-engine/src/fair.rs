//! Weighted fair queuing over tenants: deficit round robin on tokens. Each
//! visit gives a tenant `weight × quantum` tokens of credit; it may take items
//! while its credit covers their cost. A tenant with fifty queued requests
//! therefore cannot push another tenant's single request to the back.
use std::collections::{HashMap, VecDeque};

pub struct FairQueue<T> {
    quantum: u64,
    tenants: HashMap<String, Tenant<T>>,
    /// Tenants with queued items, in visiting order.
    ring: VecDeque<String>,
    /// Whether the tenant at the front got its credit for this turn.
    turn_started: bool,
    len: usize,
}

struct Tenant<T> {
    weight: u64,
    deficit: u64,
    items: VecDeque<(T, u64)>,
}

impl<T> FairQueue<T> {
    /// `quantum` is the credit, in tokens, a weight-1 tenant gets per round.
    pub fn new(quantum: u64) -> Self {
        Self {
            quantum: quantum.max(1),
            tenants: HashMap::new(),
            ring: VecDeque::new(),
            turn_started: false,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, tenant: &str, weight: u32, item: T, cost: u64) {
        self.insert(tenant, weight, item, cost, false);
    }

    /// Queues `item` ahead of the tenant's others: work it had started,
    /// handed back.
    pub fn push_front(&mut self, tenant: &str, weight: u32, item: T, cost: u64) {
        self.insert(tenant, weight, item, cost, true);
    }

    fn insert(&mut self, tenant: &str, weight: u32, item: T, cost: u64, front: bool) {
        let t = self
            .tenants
            .entry(tenant.to_string())
            .or_insert_with(|| Tenant {
                weight: 1,
                deficit: 0,
                items: VecDeque::new(),
            });
        t.weight = u64::from(weight.max(1));
        if t.items.is_empty() {
            self.ring.push_back(tenant.to_string());
        }
        if front {
            t.items.push_front((item, cost));
        } else {
            t.items.push_back((item, cost));
        }
        self.len += 1;
    }

    /// The next item in fair order, if any; `eligible` may refuse an item for
    /// now (it stays queued and its tenant's turn passes).
    pub fn pop_where(&mut self, mut eligible: impl FnMut(&T) -> bool) -> Option<T> {
        // Each visit without a serve adds credit, so within this many visits
        // every eligible head has been served or none is eligible.
        let limit = (self.ring.len() + 1) * (self.max_cost_in_quanta() + 2) * 2;
        let mut skipped = 0;
        for _ in 0..limit {
            let name = self.ring.front()?.clone();
            let quantum = self.quantum;
            let Some(t) = self.tenants.get_mut(&name) else {
                self.ring.pop_front();
                self.turn_started = false;
                continue;
            };
            let Some((head, cost)) = t.items.front() else {
                self.ring.pop_front();
                self.turn_started = false;
                continue;
            };
            let cost = *cost;
            if !eligible(head) {
                skipped += 1;
                if skipped >= self.ring.len() {
                    return None;
                }
                self.next_turn();
                continue;
            }
            if !self.turn_started {
                t.deficit += t.weight * quantum;
                self.turn_started = true;
            }
            if t.deficit >= cost {
                t.deficit -= cost;
                let (item, _) = t.items.pop_front()?;
                self.len -= 1;
                if t.items.is_empty() {
                    // An idle tenant does not bank credit.
                    t.deficit = 0;
                    self.ring.pop_front();
                    self.turn_started = false;
                }
                return Some(item);
            }
            self.next_turn();
        }
        None
    }

    fn next_turn(&mut self) {
        self.ring.rotate_left(1);
        self.turn_started = false;
    }

    #[cfg(test)]
    pub fn pop(&mut self) -> Option<T> {
        self.pop_where(|_| true)
    }

    fn max_cost_in_quanta(&self) -> usize {
        self.tenants
            .values()
            .filter_map(|t| t.items.front().map(|(_, c)| (*c / self.quantum) as usize))
            .max()
            .unwrap_or(0)
    }

    /// Removes every item matching `gone`, returning how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> usize {
        let mut removed = 0;
        for t in self.tenants.values_mut() {
            let before = t.items.len();
            t.items.retain(|(item, _)| keep(item));
            removed += before - t.items.len();
        }
        self.len -= removed;
        let front = self.ring.front().cloned();
        let tenants = &self.tenants;
        self.ring
            .retain(|n| tenants.get(n).is_some_and(|t| !t.items.is_empty()));
        self.tenants.retain(|_, t| !t.items.is_empty());
        if self.ring.front() != front.as_ref() {
            self.turn_started = false;
        }
        removed
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.tenants
            .values()
            .flat_map(|t| t.items.iter().map(|(i, _)| i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_one_and_three_interleave_one_to_three() {
        let mut q = FairQueue::new(100);
        for i in 0..8 {
            q.push("a", 1, format!("a{i}"), 100);
        }
        for i in 0..8 {
            q.push("b", 3, format!("b{i}"), 100);
        }
        let order: Vec<String> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order[..12].join(" "),
            "a0 b0 b1 b2 a1 b3 b4 b5 a2 b6 b7 a3",
            "full order: {order:?}"
        );
        assert_eq!(order.len(), 16);
    }

    #[test]
    fn a_flood_does_not_push_a_single_request_to_the_back() {
        let mut q = FairQueue::new(512);
        for i in 0..50 {
            q.push("noisy", 1, format!("n{i}"), 1000);
        }
        q.push("quiet", 1, "q".to_string(), 20);
        let order: Vec<String> = std::iter::from_fn(|| q.pop()).collect();
        let at = order.iter().position(|x| x == "q").expect("served");
        assert!(at <= 1, "quiet request served at position {at}: {order:?}");
    }

    #[test]
    fn ineligible_items_wait_without_blocking_others() {
        let mut q = FairQueue::new(10);
        q.push("a", 1, 1, 10);
        q.push("b", 1, 2, 10);
        assert_eq!(q.pop_where(|x| *x != 1), Some(2));
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_where(|x| *x != 1), None);
        assert_eq!(q.pop(), Some(1));
        assert!(q.is_empty());
    }

    #[test]
    fn an_item_handed_back_goes_ahead_of_its_tenants_others() {
        let mut q = FairQueue::new(10);
        q.push("a", 1, 1, 1);
        q.push_front("a", 1, 0, 1);
        q.push_front("b", 1, 9, 1);
        let order: Vec<i32> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order
                .iter()
                .filter(|&&x| x != 9)
                .copied()
                .collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(order.len(), 3);
    }

    #[test]
    fn retain_drops_cancelled_items() {
        let mut q = FairQueue::new(10);
        q.push("a", 1, 1, 1);
        q.push("a", 1, 2, 1);
        q.push("b", 1, 3, 1);
        assert_eq!(q.retain(|x| *x != 2), 1);
        let rest: Vec<i32> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(rest.len(), 2);
        assert!(!rest.contains(&2));
    }
}
