//! Validated, provider-neutral embedding requests and their results.

#[derive(Debug, Clone, PartialEq)]
pub enum EmbedInput {
    /// Texts, each tokenized by the model with its special tokens.
    Texts(Vec<String>),
    /// The model's own token ids, used as they are.
    Tokens(Vec<Vec<u32>>),
}

impl EmbedInput {
    pub fn count(&self) -> usize {
        match self {
            EmbedInput::Texts(t) => t.len(),
            EmbedInput::Tokens(t) => t.len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbedRequest {
    pub input: EmbedInput,
    /// Fewer dimensions than the model's (Matryoshka truncation).
    pub dimensions: Option<u32>,
    /// Cut longer inputs to this many tokens instead of refusing them;
    /// `Some(None)` means the model's own limit.
    pub truncate: Option<Option<u32>>,
}

impl EmbedRequest {
    pub fn new(input: EmbedInput) -> Self {
        Self {
            input,
            dimensions: None,
            truncate: None,
        }
    }
}

/// One vector per input, in input order, each L2-normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
    /// The count is an estimate (an upstream that reported none).
    pub estimated: bool,
    /// The deployment that answered, when a router chose one.
    pub deployment: Option<String>,
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for x in v {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

/// Matryoshka truncation: the first `dims` values, renormalised.
pub fn shorten(vectors: &mut [Vec<f32>], dims: usize) {
    for v in vectors {
        v.truncate(dims);
        normalize(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_vectors_are_unit_length_prefixes() {
        let mut v = vec![vec![3.0, 4.0, 12.0]];
        shorten(&mut v, 2);
        assert_eq!(v[0], vec![0.6, 0.8]);
        let mut zero = vec![0.0f32; 3];
        normalize(&mut zero);
        assert_eq!(zero, vec![0.0; 3]);
    }
}
