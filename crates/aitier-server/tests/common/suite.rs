//! The suite every provider passes, local or upstream: the same API calls
//! against a server and the model name it serves them under.
#![allow(dead_code)]

use serde_json::{json, Value};

use super::{client, no_eos, post, Server};

/// Chunks of an SSE response: (the JSON chunks, whether `[DONE]` came).
pub fn stream(server: &Server, path: &str, body: &Value) -> (Vec<Value>, bool) {
    let r = client()
        .post(server.url(path))
        .json(body)
        .send()
        .expect("send");
    assert_eq!(r.status(), 200);
    let text = r.text().expect("body");
    let mut chunks = Vec::new();
    let mut done = false;
    for line in text.lines() {
        if let Some(data) = line.strip_prefix("data: ") {
            if data == "[DONE]" {
                done = true;
            } else {
                chunks.push(serde_json::from_str(data).expect("chunk json"));
            }
        }
    }
    (chunks, done)
}

pub fn streamed_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// Runs the shared provider suite; returns the greedy answer it saw, so
/// that callers can compare providers.
pub fn provider_suite(server: &Server, model: &str) -> String {
    let ask = json!({"model": model, "temperature": 0, "max_tokens": 24,
        "messages": [{"role": "user", "content": "Count from one to five."}]});

    let (status, v) = post(server, "/v1/chat/completions", &ask);
    assert_eq!(status, 200, "{model}: {v}");
    assert_eq!(v["model"], model);
    assert_eq!(v["object"], "chat.completion");
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string();
    assert!(!text.is_empty(), "{model}");
    let usage = &v["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap_or(0) > 0);
    let completion = usage["completion_tokens"].as_u64().unwrap_or(0);
    assert!((1..=24).contains(&completion), "{model}: {usage}");

    // Streamed: the same greedy text, the model's name on every chunk,
    // usage last, then [DONE].
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (chunks, done) = stream(server, "/v1/chat/completions", &streamed);
    assert!(done, "{model}: no [DONE]");
    assert!(chunks.iter().all(|c| c["model"] == model));
    assert_eq!(
        streamed_text(&chunks),
        text,
        "{model}: stream and non-stream differ"
    );
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        last["usage"]["completion_tokens"].as_u64(),
        Some(completion)
    );

    // The length limit, with end-of-text banned.
    let mut short = ask.clone();
    short["max_tokens"] = json!(3);
    short["logit_bias"] = no_eos();
    let (status, v) = post(server, "/v1/chat/completions", &short);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    // n choices.
    let mut two = ask.clone();
    two["n"] = json!(2);
    let (_, v) = post(server, "/v1/chat/completions", &two);
    let idx: Vec<u64> = v["choices"]
        .as_array()
        .expect("choices")
        .iter()
        .filter_map(|c| c["index"].as_u64())
        .collect();
    assert_eq!(idx, vec![0, 1], "{model}: {v}");

    // A stop string cuts the text where it first appears.
    if let Some(word) = text.split_whitespace().nth(2) {
        let mut stopped = ask.clone();
        stopped["stop"] = json!([word]);
        let (_, v) = post(server, "/v1/chat/completions", &stopped);
        let cut = text.find(word).map(|i| &text[..i]).unwrap_or(&text);
        assert_eq!(
            v["choices"][0]["message"]["content"], cut,
            "{model}: stop {word:?}"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    // Legacy completions.
    let (status, v) = post(
        server,
        "/v1/completions",
        &json!({"model": model, "prompt": "The capital of France is", "max_tokens": 5, "temperature": 0}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], model);
    assert!(!v["choices"][0]["text"].as_str().unwrap_or("").is_empty());

    // A request the model cannot take is the client's error, with a body.
    let mut huge = ask.clone();
    huge["max_tokens"] = json!(1_000_000);
    let (status, v) = post(server, "/v1/chat/completions", &huge);
    assert_eq!(status, 400, "{model}: {v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    text
}
