//! The engine's scheduler through the real binary: batching without
//! cross-talk, cancellation freeing cells, the prefix cache, shared prompts
//! for n > 1, a bounded queue, chunked prefill letting another tenant
//! through, and a tenant holding every slot handing one over.
mod common;

use std::sync::{Mutex, MutexGuard};

use common::{metric, no_eos, open_stream, post, read_events, Server};
use serde_json::{json, Value};

/// Each test's server decodes on two OpenMP threads that spin at a barrier
/// after every operation; two such servers on two cores slowed each other
/// so that this suite took 57 to 98 s side by side against 27 s in turn.
static TURN: Mutex<()> = Mutex::new(());

/// Held for a whole test: the tests take turns on the model.
fn turn() -> MutexGuard<'static, ()> {
    // A test that failed holding it poisons it; the next still runs.
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const MODEL: &str = "smollm2-135m-instruct";

/// Prompts with one confident continuation each.
const PROMPTS: [&str; 8] = [
    "1, 2, 3, 4, 5, 6,",
    "Monday, Tuesday, Wednesday,",
    "January, February, March, April,",
    "The capital of France is",
    "A, B, C, D, E, F,",
    "10, 20, 30, 40,",
    "one, two, three, four,",
    "red, orange, yellow, green,",
];

fn greedy_first_tokens(s: &Server, prompt: &str) -> Vec<String> {
    let (st, b) = post(
        s,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": prompt, "max_tokens": 2, "temperature": 0, "logprobs": 0}),
    );
    assert_eq!(st, 200, "{b}");
    b["choices"][0]["logprobs"]["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t.as_str().expect("str").to_string())
        .collect()
}

#[test]
fn concurrent_sequences_continue_their_own_prompts() {
    let _turn = turn();
    let s = Server::start(&["--slots", "8"]);
    let solo: Vec<Vec<String>> = PROMPTS.iter().map(|p| greedy_first_tokens(&s, p)).collect();
    let together: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = PROMPTS
            .iter()
            .map(|p| {
                let s = &s;
                scope.spawn(move || greedy_first_tokens(s, p))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for (i, (a, b)) in solo.iter().zip(&together).enumerate() {
        // The first greedy token is stable across batch shapes; a sequence
        // reading another's cells would not produce it.
        assert_eq!(
            a[0], b[0],
            "prompt {:?}: solo {a:?} vs batched {b:?}",
            PROMPTS[i]
        );
    }
}

#[test]
fn cancelled_request_frees_its_cells_for_a_full_context_request() {
    let _turn = turn();
    let ctx = 512;
    let s = Server::start(&["--slots", "1", "--ctx-size", &ctx.to_string()]);
    let body = json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 400,
        "logit_bias": no_eos(), "stream": true});
    let (sock, mut reader) = open_stream(&s, "/v1/completions", &body);
    read_events(&mut reader, 3);
    drop(reader);
    drop(sock);

    // A request that needs every cell of the only slot.
    let prompt = "The history of the lighthouse";
    let (_, toks) = post(
        &s,
        "/tokenize",
        &json!({"content": prompt, "add_special": true}),
    );
    let prompt_len = toks["tokens"].as_array().expect("tokens").len();
    let max_tokens = ctx - prompt_len;
    let (st, b) = post(
        &s,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "logit_bias": no_eos(), "temperature": 0}),
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["usage"]["completion_tokens"].as_u64(),
        Some(max_tokens as u64)
    );
    assert_eq!(b["choices"][0]["finish_reason"], "length");
    assert_eq!(metric(&s, "aitier_requests_cancelled_total"), 1);
    let generated = metric(&s, "aitier_generated_tokens_total");
    assert!(
        generated < 400 + max_tokens as u64,
        "the cancelled request ran to its end ({generated} tokens generated)"
    );
}

fn long_system_prompt() -> String {
    let mut s = String::from("You are the support assistant of a hardware shop. Rules:\n");
    for i in 1..=40 {
        s.push_str(&format!(
            "{i}. Answer politely about product line {i}, its warranty and its spare parts.\n"
        ));
    }
    s
}

#[test]
fn repeated_prefix_is_served_from_the_cache() {
    let _turn = turn();
    let s = Server::start(&[]);
    let system = long_system_prompt();
    let ask = |q: &str| {
        let (st, b) = post(
            &s,
            "/v1/chat/completions",
            &json!({"model": MODEL, "max_tokens": 4, "temperature": 0, "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": q}]}),
        );
        assert_eq!(st, 200, "{b}");
        b["usage"].clone()
    };
    let cold = ask("Do you sell drills?");
    assert_eq!(cold["prompt_tokens_details"]["cached_tokens"], 0);
    let computed_before = metric(&s, "aitier_prompt_tokens_computed_total");
    let warm = ask("Where is my order?");
    let prompt = warm["prompt_tokens"].as_u64().expect("prompt_tokens");
    let cached = warm["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .expect("cached");
    assert!(
        prompt > 500,
        "system prompt too short for the test: {prompt}"
    );
    // Everything up to the user's question is shared.
    assert!(cached >= prompt - 20, "cached {cached} of {prompt}");
    let computed = metric(&s, "aitier_prompt_tokens_computed_total") - computed_before;
    assert_eq!(computed, prompt - cached);
}

#[test]
fn n_choices_share_one_prefill() {
    let _turn = turn();
    let s = Server::start(&["--slots", "4"]);
    let (st, b) = post(
        &s,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "Write a haiku about the sea:", "n": 4, "max_tokens": 6, "temperature": 1.0, "seed": 5}),
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["choices"].as_array().map(Vec::len), Some(4));
    let prompt = b["usage"]["prompt_tokens"].as_u64().expect("prompt_tokens");
    // The first choice evaluates the prompt; each other one only its last token.
    assert_eq!(
        metric(&s, "aitier_prompt_tokens_computed_total"),
        prompt + 3
    );
}

#[test]
fn shared_prefill_continues_exactly_like_its_own() {
    let _turn = turn();
    let s = Server::start(&["--slots", "4"]);
    let body = |n: u32| {
        json!({"model": MODEL, "prompt": "The three primary colours are", "n": n,
            "max_tokens": 8, "temperature": 0})
    };
    let (_, one) = post(&s, "/v1/completions", &body(1));
    let (st, three) = post(&s, "/v1/completions", &body(3));
    assert_eq!(st, 200, "{three}");
    let want = one["choices"][0]["text"].as_str().expect("text");
    for c in three["choices"].as_array().expect("choices") {
        // Copied cells that were wrong would derail the greedy continuation.
        assert_eq!(c["text"].as_str(), Some(want), "{three}");
    }
}

#[test]
fn full_queue_answers_429_with_retry_after() {
    let _turn = turn();
    let s = Server::start(&["--slots", "1", "--queue-depth", "1"]);
    let body = json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 3000,
        "logit_bias": no_eos(), "stream": true});
    // One running, one queued; both stay until their sockets close.
    let held: Vec<_> = (0..2)
        .map(|_| open_stream(&s, "/v1/completions", &body))
        .collect();
    let r = common::client()
        .post(s.url("/v1/completions"))
        .json(&json!({"model": MODEL, "prompt": "hi", "max_tokens": 1}))
        .send()
        .expect("send");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["retry-after-ms"], "1000");
    let b: Value = r.json().expect("json");
    assert_eq!(b["error"]["code"], "queue_full");
    drop(held);
}

#[test]
fn request_queued_past_its_deadline_gets_a_timeout_error() {
    let _turn = turn();
    let s = Server::start(&["--slots", "1", "--queue-timeout", "1"]);
    let body = json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 3000,
        "logit_bias": no_eos(), "stream": true});
    // Holds the only slot for far longer than the queue timeout.
    let (sock, reader) = open_stream(&s, "/v1/completions", &body);
    let (st, b) = post(
        &s,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "hi", "max_tokens": 1}),
    );
    assert_eq!(st, 503, "{b}");
    assert_eq!(b["error"]["code"], "queue_timeout");
    drop((sock, reader));
}

#[test]
fn short_request_passes_between_the_chunks_of_another_tenants_long_prompt() {
    let _turn = turn();
    let s = Server::start(&["--slots", "2", "--ctx-size", "2048"]);
    let long: String = (0..300).map(|i| format!("note {i}; ")).collect();
    let (_, toks) = post(&s, "/tokenize", &json!({"content": long}));
    let long_len = toks["tokens"].as_array().expect("tokens").len();
    assert!(
        (1500..2040).contains(&long_len),
        "long prompt has {long_len} tokens"
    );
    let body = json!({"model": MODEL, "prompt": long, "max_tokens": 1, "stream": true,
        "user": "tenant-a"});
    let held = open_stream(&s, "/v1/completions", &body);
    while metric(&s, "aitier_sequences_running") == 0 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (st, b) = post(
        &s,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "1, 2, 3,", "max_tokens": 4,
            "logit_bias": no_eos(), "user": "tenant-b"}),
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["usage"]["completion_tokens"], 4);
    // Only the short request's tokens exist yet: it was served between the
    // long prompt's chunks, not after the whole prefill.
    assert_eq!(metric(&s, "aitier_generated_tokens_total"), 4);
    drop(held);
}

#[test]
fn a_stream_waiting_in_the_queue_sends_keep_alive_comments() {
    use std::io::BufRead;
    let _turn = turn();
    let s = Server::start(&["--slots", "1", "--keep-alive-secs", "1"]);
    let blocker = json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 3000,
        "logit_bias": no_eos(), "stream": true});
    // Holds the only slot until its socket closes.
    let held = open_stream(&s, "/v1/completions", &blocker);
    let waiting = json!({"model": MODEL, "stream": true, "max_tokens": 2,
        "messages": [{"role": "user", "content": "Hi"}]});
    let (sock, mut reader) = open_stream(&s, "/v1/chat/completions", &waiting);
    sock.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("timeout");
    // The role chunk comes at once; then, while queued, comments only.
    let mut line = String::new();
    let mut data = Vec::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "stream ended"
        );
        if line.starts_with(':') {
            break;
        }
        if let Some(d) = line.strip_prefix("data: ") {
            data.push(d.trim().to_string());
        }
    }
    assert_eq!(data.len(), 1, "{data:?}");
    assert!(data[0].contains(r#""role":"assistant""#), "{data:?}");
    drop((sock, reader, held));
}

/// The text of a completions stream's events: the first `n`, or (None) all
/// of them to `[DONE]`.
fn stream_text(reader: &mut impl std::io::BufRead, n: Option<usize>) -> String {
    let mut text = String::new();
    let mut seen = 0;
    let mut line = String::new();
    while n.is_none_or(|n| seen < n) {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "stream ended early"
        );
        let Some(data) = line.trim_end().strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let event: Value = serde_json::from_str(data).expect("event");
        text.push_str(event["choices"][0]["text"].as_str().unwrap_or(""));
        seen += 1;
    }
    text
}

/// Tenant A holds both slots with two long greedy streams; tenant B's short
/// request is answered without waiting for them, as one of A's streams
/// hands it its slot; that stream then resumes exactly where it was, so
/// both answer as they do alone.
fn a_stream_paused_for_another_tenant_resumes_exactly(flags: &[&str]) {
    let mut args = vec!["--slots", "2"];
    args.extend_from_slice(flags);
    let s = Server::start(&args);
    let prompts = ["1, 2, 3, 4, 5, 6,", "A, B, C, D, E, F,"];
    let max_tokens = 120;
    let body = |prompt: &str, stream: bool| {
        json!({"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "logit_bias": no_eos(), "user": "tenant-a", "stream": stream})
    };
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| {
            let (st, b) = post(&s, "/v1/completions", &body(p, false));
            assert_eq!(st, 200, "{b}");
            b["choices"][0]["text"].as_str().expect("text").to_string()
        })
        .collect();
    let generated_before = metric(&s, "aitier_generated_tokens_total");
    let mut streams: Vec<_> = prompts
        .iter()
        .map(|p| {
            let r = common::client()
                .post(s.url("/v1/completions"))
                .json(&body(p, true))
                .send()
                .expect("send");
            assert_eq!(r.status(), 200);
            std::io::BufReader::new(r)
        })
        .collect();
    // Both of A's streams are decoding before B asks.
    let mut texts: Vec<String> = streams
        .iter_mut()
        .map(|r| stream_text(r, Some(3)))
        .collect();
    let (st, b) = post(
        &s,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "The capital of France is", "max_tokens": 4,
            "logit_bias": no_eos(), "user": "tenant-b"}),
    );
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["usage"]["completion_tokens"], 4);
    let meanwhile = metric(&s, "aitier_generated_tokens_total") - generated_before;
    assert!(
        meanwhile < 2 * max_tokens,
        "B waited for A's streams to end ({meanwhile} tokens generated meanwhile)"
    );
    assert_eq!(metric(&s, "aitier_sequences_preempted_total"), 1);
    for ((r, text), want) in streams.iter_mut().zip(&mut texts).zip(&alone) {
        text.push_str(&stream_text(r, None));
        assert_eq!(text, want, "A's stream after its pause");
    }
}

#[test]
fn a_paused_stream_resumes_from_its_cells_kept_aside() {
    let _turn = turn();
    a_stream_paused_for_another_tenant_resumes_exactly(&[]);
}

#[test]
fn a_paused_stream_resumes_by_recomputing_its_cells() {
    let _turn = turn();
    a_stream_paused_for_another_tenant_resumes_exactly(&["--swap-cells", "0"]);
}
