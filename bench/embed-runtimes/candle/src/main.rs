//! all-MiniLM-L6-v2 on candle (pure Rust), read from the wheel's
//! safetensors: the same reference sentences and cases as the engine's
//! `embed_throughput` example, one JSON line per case. Checks its vectors
//! against the fixture first (mean pooling over the attention mask, L2
//! normalisation: what sentence-transformers does).
//!
//! `embed-candle MODEL_DIR FIXTURE.json [ROUNDS]`
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use tokenizers::{PaddingParams, Tokenizer};

fn embed(model: &BertModel, tok: &Tokenizer, texts: &[String]) -> (Vec<Vec<f32>>, usize) {
    let enc = tok.encode_batch(texts.to_vec(), true).expect("tokenizes");
    let ids: Vec<Tensor> = enc
        .iter()
        .map(|e| Tensor::new(e.get_ids(), &Device::Cpu).expect("ids"))
        .collect();
    let mask: Vec<Tensor> = enc
        .iter()
        .map(|e| Tensor::new(e.get_attention_mask(), &Device::Cpu).expect("mask"))
        .collect();
    let tokens: usize = enc
        .iter()
        .map(|e| e.get_attention_mask().iter().filter(|m| **m == 1).count())
        .sum();
    let ids = Tensor::stack(&ids, 0).expect("stack");
    let mask = Tensor::stack(&mask, 0).expect("stack");
    let types = ids.zeros_like().expect("types");
    let out = model.forward(&ids, &types, Some(&mask)).expect("forward");
    let m = mask.to_dtype(DTYPE).expect("mask").unsqueeze(2).expect("unsqueeze");
    let sum = out.broadcast_mul(&m).expect("mul").sum(1).expect("sum");
    let n = m.sum(1).expect("count");
    let mean = sum.broadcast_div(&n).expect("div");
    let norm = mean.sqr().expect("sqr").sum_keepdim(1).expect("sum").sqrt().expect("sqrt");
    let unit = mean.broadcast_div(&norm).expect("normalise");
    (unit.to_vec2::<f32>().expect("vectors"), tokens)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("MODEL_DIR"));
    let fixture = args.next().expect("FIXTURE.json");
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let config: Config =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("config")).expect("config");
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)
            .expect("weights")
    };
    let model = BertModel::load(vb, &config).expect("model");
    let mut tok = Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
    tok.with_padding(Some(PaddingParams::default()));
    tok.with_truncation(None).expect("no truncation");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture).expect("fixture")).expect("json");
    let sentences = doc["sentences"].as_array().expect("sentences");
    let texts: Vec<String> = sentences
        .iter()
        .map(|s| s["text"].as_str().expect("text").to_string())
        .collect();
    let (vectors, _) = embed(&model, &tok, &texts);
    let worst = sentences
        .iter()
        .zip(&vectors)
        .map(|(s, v)| {
            let want: Vec<f32> = serde_json::from_value(s["embedding"].clone()).expect("embedding");
            want.iter().zip(v).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>()
        })
        .fold(1.0f64, f64::min);
    for case in ["single", "batch"] {
        let start = Instant::now();
        let mut tokens = 0usize;
        for _ in 0..rounds {
            if case == "single" {
                for t in &texts {
                    tokens += embed(&model, &tok, std::slice::from_ref(t)).1;
                }
            } else {
                tokens += embed(&model, &tok, &texts).1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({
                "runtime": "candle",
                "case": case,
                "embeddings_per_s": (rounds * texts.len()) as f64 / secs,
                "tokens_per_s": tokens as f64 / secs,
                "worst_cosine": worst,
            })
        );
    }
}
