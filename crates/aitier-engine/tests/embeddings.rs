//! The default embedding model on llama.cpp against reference vectors
//! computed without it (tests/fixtures/embeddings: Hugging Face's tokenizer
//! and a numpy BERT in float64), and batching that changes nothing.
use std::sync::Arc;

use aitier_core::{CoreError, EmbedInput, EmbedRequest, Provider, RequestCtx};
use aitier_engine::EmbeddingModel;

mod common;

struct Reference {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn references() -> Vec<Reference> {
    let path = common::root().join("tests/fixtures/embeddings/all-minilm-l6-v2.json");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    doc["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| Reference {
            text: s["text"].as_str().expect("text").to_string(),
            ids: serde_json::from_value(s["ids"].clone()).expect("ids"),
            embedding: serde_json::from_value(s["embedding"].clone()).expect("embedding"),
        })
        .collect()
}

fn load(matryoshka: bool) -> Arc<EmbeddingModel> {
    EmbeddingModel::load(&common::embedding_model(matryoshka)).expect("loads")
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

async fn embed_as(
    m: &EmbeddingModel,
    req: EmbedRequest,
    tenant: &str,
) -> Result<(Vec<Vec<f32>>, u32), CoreError> {
    let prepared = m.prepare_embed(req).await?;
    let mut ctx = RequestCtx::anonymous("test");
    ctx.tenant = tenant.to_string();
    let out = m.embed(prepared, ctx).await?;
    Ok((out.vectors, out.prompt_tokens))
}

async fn embed(m: &EmbeddingModel, input: EmbedInput) -> Result<(Vec<Vec<f32>>, u32), CoreError> {
    embed_as(m, EmbedRequest::new(input), "t").await
}

fn texts(items: &[&Reference]) -> EmbedInput {
    EmbedInput::Texts(items.iter().map(|r| r.text.clone()).collect())
}

#[tokio::test]
async fn tokens_and_vectors_match_the_reference() {
    let m = load(false);
    assert_eq!(m.dimensions(), 384);
    let refs = references();
    assert_eq!(refs.len(), 30);
    for r in &refs {
        let pieces = m
            .tokenize(r.text.clone(), true, false)
            .await
            .expect("tokenizes");
        let ids: Vec<u32> = pieces.iter().map(|p| p.id).collect();
        assert_eq!(ids, r.ids, "tokens of {:?}", r.text);
        let (v, tokens) = embed(&m, texts(&[r])).await.expect("embeds");
        assert_eq!(tokens as usize, r.ids.len());
        let c = cosine(&v[0], &r.embedding);
        assert!(c >= 0.999, "cosine {c} for {:?}", r.text);
        let norm = cosine(&v[0], &v[0]);
        assert!((norm - 1.0).abs() < 1e-6);
    }
}

#[tokio::test]
async fn batched_results_equal_single_results() {
    let m = load(false);
    let refs = references();
    let all: Vec<&Reference> = refs.iter().collect();
    let (batched, _) = embed(&m, texts(&all)).await.expect("embeds");
    // The same inputs from three tenants at once, packed into shared batches.
    let (a, b, c) = tokio::join!(
        embed_as(&m, EmbedRequest::new(texts(&all[..10])), "a"),
        embed_as(&m, EmbedRequest::new(texts(&all[10..20])), "b"),
        embed_as(&m, EmbedRequest::new(texts(&all[20..])), "c"),
    );
    let concurrent: Vec<Vec<f32>> = [a, b, c]
        .into_iter()
        .flat_map(|r| r.expect("embeds").0)
        .collect();
    for (i, r) in refs.iter().enumerate() {
        let (single, _) = embed(&m, texts(&[r])).await.expect("embeds");
        for (what, v) in [("batched", &batched[i]), ("concurrent", &concurrent[i])] {
            // Equal up to the order of float sums: a batch's matrix
            // products are tiled differently. Attention leaking between
            // the sequences of a batch would move vectors by far more.
            let worst = single[0]
                .iter()
                .zip(v.iter())
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 5e-4, "{what} input {i} differs by {worst}");
            let c = cosine(&single[0], v);
            assert!(
                c >= 0.999_999,
                "{what} input {i}: cosine {c} to its single result"
            );
        }
    }
}

#[tokio::test]
async fn token_ids_embed_like_their_text() {
    let m = load(false);
    let refs = references();
    let r = &refs[3];
    let (from_text, _) = embed(&m, texts(&[r])).await.expect("text");
    let (from_ids, n) = embed(&m, EmbedInput::Tokens(vec![r.ids.clone()]))
        .await
        .expect("ids");
    assert_eq!(n as usize, r.ids.len());
    assert!(cosine(&from_text[0], &from_ids[0]) > 0.999_999);
    let err = embed(&m, EmbedInput::Tokens(vec![vec![1], vec![40_000]]))
        .await
        .expect_err("outside the vocabulary");
    assert!(
        matches!(&err, CoreError::InvalidRequest { message, .. } if message.contains("input[1]")),
        "{err:?}"
    );
}

#[tokio::test]
async fn long_inputs_are_refused_by_index_or_truncated_when_asked() {
    let m = load(false);
    let refs = references();
    let full = &refs[29];
    assert_eq!(
        full.ids.len(),
        256,
        "the fixture's last sentence fills the window"
    );
    let long = format!("{} and more words past the end", full.text);
    let input = EmbedInput::Texts(vec!["short".into(), long.clone()]);
    let err = embed(&m, input.clone()).await.expect_err("too long");
    assert!(
        matches!(&err, CoreError::ContextLengthExceeded { message } if message.contains("input[1]")),
        "{err:?}"
    );
    // Cut to the window, the text keeps its closing [SEP], as
    // sentence-transformers truncates: the same vector as the text that
    // fills the window exactly.
    let mut req = EmbedRequest::new(EmbedInput::Texts(vec![long.clone()]));
    req.truncate = Some(None);
    let (v, n) = embed_as(&m, req, "t").await.expect("truncated");
    assert_eq!(n, 256);
    assert!(cosine(&v[0], &full.embedding) >= 0.999);
    let mut req = EmbedRequest::new(EmbedInput::Texts(vec![long]));
    req.truncate = Some(Some(10));
    let mut cut = full.ids[..9].to_vec();
    cut.push(*full.ids.last().expect("sep"));
    let (v, n) = embed_as(&m, req, "t").await.expect("truncated");
    let (want, _) = embed(&m, EmbedInput::Tokens(vec![cut])).await.expect("ids");
    assert_eq!(n, 10);
    assert!(cosine(&v[0], &want[0]) > 0.999_999);
}

#[tokio::test]
async fn dimensions_only_for_matryoshka_models() {
    let refs = references();
    let plain = load(false);
    let mut req = EmbedRequest::new(texts(&[&refs[0]]));
    req.dimensions = Some(64);
    let err = embed_as(&plain, req.clone(), "t")
        .await
        .expect_err("not matryoshka");
    assert!(
        matches!(&err, CoreError::InvalidRequest { param: Some(p), .. } if p == "dimensions"),
        "{err:?}"
    );
    let mut same = req.clone();
    same.dimensions = Some(384);
    assert_eq!(
        embed_as(&plain, same, "t").await.expect("own size").0[0].len(),
        384
    );
    let m = load(true);
    let (full, _) = embed(&m, texts(&[&refs[0]])).await.expect("full");
    let (short, _) = embed_as(&m, req, "t").await.expect("shortened");
    assert_eq!(short[0].len(), 64);
    assert!((cosine(&short[0], &short[0]) - 1.0).abs() < 1e-6);
    assert!(cosine(&short[0], &full[0][..64]) > 0.999_999);
}
