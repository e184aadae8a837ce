//! What a decode step costs on this machine, learnt from the steps run:
//! milliseconds as a linear function of the tokens in the batch and of the
//! KV cells their attention reads, a decoding stream's and a prompt
//! chunk's apart (a chunk reads its cells once for all of its tokens). The planner needs only a cell's cost in tokens: with it a step
//! bounded in tokens costs the same multiple of a short prompt's own step
//! on a fast machine and a slow one, however deep the running contexts.

/// The work in one decode step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct StepShape {
    pub tokens: usize,
    /// KV cells the decoding streams' tokens attend over.
    pub decode_cells: usize,
    /// KV cells the prompt chunks attend over, each chunk's once: its
    /// sequence's cached cells and its own (llama.cpp's CPU attention reads
    /// them once for all of a chunk's queries).
    pub prompt_cells: usize,
}

impl StepShape {
    /// A decoding stream's next token, after `depth` cached ones.
    pub fn decode(depth: usize) -> Self {
        Self {
            tokens: 1,
            decode_cells: depth,
            prompt_cells: 0,
        }
    }

    /// A chunk of `n` prompt tokens after `depth` cached ones: it reads
    /// its sequence's cells once, so a deep prompt's small chunks cost
    /// nearly as much as large ones.
    pub fn chunk(depth: usize, n: usize) -> Self {
        Self {
            tokens: n,
            decode_cells: 0,
            prompt_cells: depth + n,
        }
    }
}

impl std::ops::AddAssign for StepShape {
    fn add_assign(&mut self, other: Self) {
        self.tokens += other.tokens;
        self.decode_cells += other.decode_cells;
        self.prompt_cells += other.prompt_cells;
    }
}

/// What reading one KV cell costs, in batch tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct CellCost {
    pub decode: f64,
    pub prompt: f64,
}

impl CellCost {
    /// What `shape` costs, in tokens.
    pub fn of(&self, shape: StepShape) -> f64 {
        shape.tokens as f64
            + self.decode * shape.decode_cells as f64
            + self.prompt * shape.prompt_cells as f64
    }
}

/// Recent steps weigh most: each step's weight decays by this per step, so
/// the fit follows a machine whose speed changes (about the last 200 steps
/// count).
const DECAY: f64 = 0.995;
/// Steps seen before the fit is trusted; until then cells cost nothing and
/// steps are bounded in tokens alone.
const MIN_STEPS: u64 = 32;
/// Cells are counted in thousands so the normal equations stay well scaled.
const CELL_UNIT: f64 = 1000.0;
/// A little ridge on the slopes keeps the fit defined while steps do not
/// vary in every direction yet (e.g. no prompt has run beside decoders).
const RIDGE: f64 = 1e-3;

/// Exponentially weighted least squares of step milliseconds on
/// (1, tokens, decode cells, prompt cells).
#[derive(Default)]
pub(crate) struct StepCostModel {
    xx: [[f64; 4]; 4],
    xy: [f64; 4],
    steps: u64,
}

impl StepCostModel {
    pub fn observe(&mut self, shape: StepShape, ms: f64) {
        if shape.tokens == 0 || !ms.is_finite() {
            return;
        }
        let x = [
            1.0,
            shape.tokens as f64,
            shape.decode_cells as f64 / CELL_UNIT,
            shape.prompt_cells as f64 / CELL_UNIT,
        ];
        for i in 0..4 {
            for j in 0..4 {
                self.xx[i][j] = self.xx[i][j] * DECAY + x[i] * x[j];
            }
            self.xy[i] = self.xy[i] * DECAY + x[i] * ms;
        }
        self.steps += 1;
    }

    /// A cell's cost in tokens; zero until enough steps are seen, or where
    /// the fit finds no cost per token to measure it in.
    pub fn cell_cost(&self) -> CellCost {
        if self.steps < MIN_STEPS {
            return CellCost::default();
        }
        let mut a = self.xx;
        for (i, row) in a.iter_mut().enumerate().skip(1) {
            row[i] += RIDGE * (1.0 + self.xx[i][i]);
        }
        let Some([_, per_token, per_kcell_decode, per_kcell_prompt]) = solve(a, self.xy) else {
            return CellCost::default();
        };
        if per_token <= 1e-9 {
            return CellCost::default();
        }
        // A cell never costs more than a token: beyond that the fit is noise.
        let ratio = |per_kcell: f64| (per_kcell.max(0.0) / CELL_UNIT / per_token).min(1.0);
        CellCost {
            decode: ratio(per_kcell_decode),
            prompt: ratio(per_kcell_prompt),
        }
    }
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting; None
/// when `a` is singular.
fn solve(mut a: [[f64; 4]; 4], mut b: [f64; 4]) -> Option<[f64; 4]> {
    for col in 0..4 {
        let pivot = (col..4).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col];
        for row in col + 1..4 {
            let f = a[row][col] / pivot_row[col];
            for (x, p) in a[row][col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; 4];
    for row in (0..4).rev() {
        let rest: f64 = (row + 1..4).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - rest) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3 ms a step, 2 ms a token, a decoder's cell 0.01 ms, a prompt's 0.002.
    fn cost(s: StepShape) -> f64 {
        3.0 + 2.0 * s.tokens as f64 + 0.01 * s.decode_cells as f64 + 0.002 * s.prompt_cells as f64
    }

    fn shapes(n: usize) -> impl Iterator<Item = StepShape> {
        (0..n).map(|i| StepShape {
            tokens: 1 + i % 40,
            decode_cells: (i * 397) % 20_000,
            prompt_cells: (i * 131) % 30_000 * (i % 3),
        })
    }

    #[test]
    fn learns_what_a_cell_costs_in_tokens() {
        let mut m = StepCostModel::default();
        for s in shapes(300) {
            m.observe(s, cost(s));
        }
        let c = m.cell_cost();
        assert!((c.decode - 0.005).abs() < 0.0002, "{c:?}");
        assert!((c.prompt - 0.001).abs() < 0.0001, "{c:?}");
    }

    #[test]
    fn follows_a_machine_that_slows_down() {
        let mut m = StepCostModel::default();
        for s in shapes(300) {
            m.observe(s, cost(s));
        }
        // Everything twice as slow: a cell's cost in tokens is unchanged.
        for s in shapes(2000) {
            m.observe(s, 2.0 * cost(s));
        }
        let c = m.cell_cost();
        assert!((c.decode - 0.005).abs() < 0.0002, "{c:?}");
        // Only attention slows (a longer context than the cache holds):
        // cells now cost more tokens.
        for s in shapes(2000) {
            m.observe(s, cost(s) + 0.02 * s.decode_cells as f64);
        }
        assert!((m.cell_cost().decode - 0.015).abs() < 0.001);
    }

    #[test]
    fn nothing_is_assumed_before_enough_steps() {
        let mut m = StepCostModel::default();
        for s in shapes(MIN_STEPS as usize - 1) {
            m.observe(s, cost(s));
        }
        assert_eq!(m.cell_cost(), CellCost::default());
    }

    #[test]
    fn steps_that_never_vary_give_a_finite_cost() {
        let mut m = StepCostModel::default();
        let s = StepShape {
            tokens: 8,
            decode_cells: 4000,
            prompt_cells: 0,
        };
        for _ in 0..100 {
            m.observe(s, 50.0);
        }
        let c = m.cell_cost();
        assert!(
            c.decode.is_finite() && c.decode >= 0.0 && c.prompt == 0.0,
            "{c:?}"
        );
    }
}
