//! Which deployment of a routed model takes a request.
//!
//! - **Prefix affinity** (the default): weighted rendezvous hashing of the
//!   request's affinity key (its prompt's leading bytes, see
//!   `aitier_core::affinity`), bounded by load. Every deployment gets a
//!   score from the key and its name, scaled by its weight; the request goes
//!   to the best-scored deployment whose requests in flight, counting this
//!   one, stay within `load_factor` times its weighted share of all those
//!   in flight (the bound of Mirrokni, Thorup and Zadimoghaddam's
//!   consistent hashing with bounded loads, applied to the rendezvous
//!   order). Requests that share a prefix thus stay on one engine, whose
//!   prompt cache holds it, until that engine has more than its share; the
//!   overflow goes to the key's second choice, always the same one, which
//!   warms to it in turn. Adding or removing a deployment moves only the
//!   keys that rank it first. Requests without a key go by least load.
//! - **Least outstanding requests**: the fewest requests in flight per unit
//!   of weight, ties broken at random. LLM latency is dominated by how many
//!   tokens a request generates, so a latency average (peak EWMA) mostly
//!   measures the last requests' lengths; the count of open requests tracks
//!   real load and reacts at once.
use rand::Rng;
use xxhash_rust::xxh3::Xxh3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Balance {
    Prefix {
        /// How far above its weighted share of the requests in flight a
        /// deployment may go before its keys overflow (at least 1).
        load_factor: f64,
    },
    LeastOutstanding,
}

impl Balance {
    pub const DEFAULT_LOAD_FACTOR: f64 = 1.25;
}

impl Default for Balance {
    fn default() -> Self {
        Balance::Prefix {
            load_factor: Self::DEFAULT_LOAD_FACTOR,
        }
    }
}

/// A deployment a request may go to, as the balancer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Load<'a> {
    pub name: &'a str,
    pub weight: u32,
    pub outstanding: u32,
}

impl Balance {
    /// The index in `loads` of the deployment to take the request.
    pub fn choose(
        &self,
        loads: &[Load<'_>],
        affinity: Option<&str>,
        rng: &mut impl Rng,
    ) -> Option<usize> {
        match (self, affinity) {
            (Balance::Prefix { load_factor }, Some(key)) => {
                bounded(loads, key, *load_factor).or_else(|| least_outstanding(loads, rng))
            }
            _ => least_outstanding(loads, rng),
        }
    }
}

fn least_outstanding(loads: &[Load<'_>], rng: &mut impl Rng) -> Option<usize> {
    let load = |l: &Load<'_>| f64::from(l.outstanding + 1) / f64::from(l.weight.max(1));
    let best = loads.iter().map(load).fold(f64::INFINITY, f64::min);
    let ties: Vec<usize> = (0..loads.len())
        .filter(|&i| load(&loads[i]) <= best)
        .collect();
    if ties.is_empty() {
        return None;
    }
    Some(ties[rng.random_range(0..ties.len())])
}

/// The deployments in the order `key` prefers them.
pub fn rank(loads: &[Load<'_>], key: &str) -> Vec<usize> {
    let scores: Vec<f64> = loads.iter().map(|l| score(key, l)).collect();
    let mut order: Vec<usize> = (0..loads.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// Weighted rendezvous score: `-weight / ln(u)` for a hash `u` in (0, 1),
/// so that a deployment of twice the weight is first for twice the keys.
fn score(key: &str, l: &Load<'_>) -> f64 {
    let mut h = Xxh3::new();
    h.update(key.as_bytes());
    h.update(b"\0");
    h.update(l.name.as_bytes());
    let u = ((h.digest() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(l.weight.max(1)) / u.ln()
}

/// The first deployment in `key`'s order with room under the load bound.
/// With `load_factor` ≥ 1 one always has room: the bounds add up to more
/// than the requests in flight.
fn bounded(loads: &[Load<'_>], key: &str, load_factor: f64) -> Option<usize> {
    let total: u64 = loads.iter().map(|l| u64::from(l.outstanding)).sum();
    let weights: u64 = loads.iter().map(|l| u64::from(l.weight.max(1))).sum();
    let room = |l: &Load<'_>| {
        let share = (total + 1) as f64 * f64::from(l.weight.max(1)) / weights as f64;
        f64::from(l.outstanding + 1) <= (load_factor.max(1.0) * share).ceil()
    };
    rank(loads, key).into_iter().find(|&i| room(&loads[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: Balance = Balance::Prefix { load_factor: 1.25 };

    fn loads<'a>(names: &'a [&'a str], weights: &[u32], outstanding: &[u32]) -> Vec<Load<'a>> {
        names
            .iter()
            .zip(weights)
            .zip(outstanding)
            .map(|((name, &weight), &outstanding)| Load {
                name,
                weight,
                outstanding,
            })
            .collect()
    }

    fn pick(b: Balance, l: &[Load<'_>], key: &str) -> usize {
        b.choose(l, Some(key), &mut rand::rng()).expect("a choice")
    }

    #[test]
    fn one_key_goes_to_one_deployment_and_keys_spread_by_weight() {
        let names = ["a", "b", "c"];
        let idle = loads(&names, &[1, 1, 2], &[0, 0, 0]);
        let mut counts = [0u32; 3];
        for k in 0..12_000 {
            let key = format!("{k:016x}");
            let first = pick(PREFIX, &idle, &key);
            for _ in 0..3 {
                assert_eq!(pick(PREFIX, &idle, &key), first);
            }
            counts[first] += 1;
        }
        // Weights 1:1:2 → 3,000 / 3,000 / 6,000 expected.
        assert!((2_700..3_300).contains(&counts[0]), "{counts:?}");
        assert!((2_700..3_300).contains(&counts[1]), "{counts:?}");
        assert!((5_600..6_400).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn removing_a_deployment_moves_only_its_keys() {
        let all = loads(&["a", "b", "c"], &[1, 1, 1], &[0, 0, 0]);
        let without_c = loads(&["a", "b"], &[1, 1], &[0, 0]);
        let mut moved = 0;
        for k in 0..3_000 {
            let key = format!("conversation-{k}");
            let before = pick(PREFIX, &all, &key);
            let after = pick(PREFIX, &without_c, &key);
            if before == 2 {
                moved += 1;
            } else {
                assert_eq!(before, after, "{key}");
            }
        }
        assert!((800..1_200).contains(&moved), "{moved}");
    }

    #[test]
    fn a_busy_first_choice_overflows_to_the_keys_second_choice() {
        let names = ["a", "b", "c", "d"];
        let key = "system-prompt-of-tenant-7";
        let order = rank(&loads(&names, &[1; 4], &[0; 4]), key);
        let mut outstanding = [1u32; 4];
        // Its first choice at 5 of 8 in flight: above 1.25 × (8 + 1) / 4 = 2.8.
        outstanding[order[0]] = 5;
        let busy = loads(&names, &[1; 4], &outstanding);
        for _ in 0..20 {
            assert_eq!(pick(PREFIX, &busy, key), order[1]);
        }
        // Within its bound (2 with this one: ⌈1.25 × (4 + 1) / 4⌉) it keeps the key.
        outstanding[order[0]] = 1;
        let fine = loads(&names, &[1; 4], &outstanding);
        assert_eq!(pick(PREFIX, &fine, key), order[0]);
    }

    #[test]
    fn the_bound_always_leaves_a_deployment_with_room() {
        let names = ["a", "b", "c"];
        let mut rng = rand::rng();
        for k in 0..2_000 {
            let outstanding: Vec<u32> = (0..3).map(|_| rng.random_range(0..50)).collect();
            let weights: Vec<u32> = (0..3).map(|_| rng.random_range(1..4)).collect();
            let l = loads(&names, &weights, &outstanding);
            assert!(bounded(&l, &format!("{k}"), 1.0).is_some(), "{l:?}");
        }
    }

    #[test]
    fn under_a_stream_of_one_key_no_deployment_exceeds_its_bound() {
        let names = ["a", "b"];
        let mut outstanding = [0u32; 2];
        for _ in 0..40 {
            let l = loads(&names, &[1, 1], &outstanding);
            let i = pick(PREFIX, &l, "one-hot-prefix");
            outstanding[i] += 1;
            let total: u32 = outstanding.iter().sum();
            let bound = (1.25 * f64::from(total) / 2.0).ceil() as u32;
            assert!(outstanding[i] <= bound.max(1), "{outstanding:?}");
        }
        assert!(outstanding.iter().all(|&o| o >= 15), "{outstanding:?}");
    }

    #[test]
    fn least_outstanding_takes_the_least_loaded_per_weight() {
        let b = Balance::LeastOutstanding;
        let l = loads(&["a", "b", "c"], &[1, 2, 1], &[3, 4, 2]);
        // Loads with this request: 4/1, 5/2, 3/1.
        assert_eq!(pick(b, &l, "any"), 1);
        let no_key = PREFIX.choose(&l, None, &mut rand::rng());
        assert_eq!(no_key, Some(1));
        assert_eq!(b.choose(&[], Some("k"), &mut rand::rng()), None);
    }
}
