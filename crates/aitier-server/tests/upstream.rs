//! Upstream models: a second real aitier behind the first passes the shared
//! provider suite; a fault server drives retries, fallbacks, the circuit
//! breaker, mid-stream failures and cancellation.
mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::fault::{Act, FaultServer};
use common::suite::{provider_suite, stream, streamed_text};
use common::{
    client, default_model, metrics_text, open_stream, post, read_events, temp_dir, Server,
};

const LOCAL: &str = "smollm2-135m-instruct";

fn config(text: &str) -> String {
    let path = temp_dir("cfg").join("aitier.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

const ADMIN: &str = "admin-token-0123456789abcdef";

/// A server whose model `m` has the given deployments (TOML tables).
fn tier(routing: &str, deployments: &str, extra_model: &str) -> Server {
    let cfg = config(&format!(
        "[tenancy]\nadmin_token = \"{ADMIN}\"\n\n[routing]\nbackoff_ms = 10\nhealth_interval_secs = 3600\n{routing}\n\n[[models]]\nname = \"m\"\n{deployments}\n{extra_model}"
    ));
    Server::start_raw(&["--config", &cfg])
}

fn admin_get(s: &Server, path: &str) -> Value {
    client()
        .get(s.url(path))
        .bearer_auth(ADMIN)
        .send()
        .expect("admin")
        .json()
        .expect("json")
}

/// Model `m`'s deployments as `/admin/v1/models` shows them.
fn deployments_of_m(s: &Server) -> Value {
    let models = admin_get(s, "/admin/v1/models");
    let m = models["data"]
        .as_array()
        .and_then(|all| all.iter().find(|m| m["id"] == "m"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(m["status"], "loaded", "{models}");
    m["deployments"].clone()
}

fn deployment(name: &str, f: &FaultServer, weight: u32) -> String {
    format!(
        "[[models.deployments]]\nname = \"{name}\"\nbase_url = \"{}\"\nweight = {weight}\n",
        f.base
    )
}

fn hello() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})
}

fn stream_body() -> Value {
    let mut b = hello();
    b["stream"] = json!(true);
    b
}

#[test]
fn an_upstream_aitier_passes_the_provider_suite() {
    let a = Server::start(&[]);
    let spec = format!("smol={}/v1#{LOCAL}", a.base);
    let b = Server::start_raw(&["--upstream", &spec]);
    let direct = provider_suite(&a, LOCAL);
    let relayed = provider_suite(&b, "smol");
    assert_eq!(direct, relayed, "the relay changed the greedy answer");
}

#[test]
fn failures_before_the_first_byte_are_retried_honouring_retry_after() {
    let f = FaultServer::start();
    let s = tier("attempts = 3", &deployment("f1", &f, 1), "");
    f.script.then(Act::Fail(500, None));
    f.script.then(Act::Fail(429, Some(1)));
    f.script.then(Act::Stream(vec!["Hel", "lo"]));
    let started = Instant::now();
    let (status, v) = post(&s, "/v1/chat/completions", &hello());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello");
    assert_eq!(v["model"], "m");
    assert_eq!(f.script.hits(), 3);
    // The 429 asked for a second before the next try.
    assert!(started.elapsed() >= Duration::from_secs(1));

    // A client error is not retried.
    f.script.then(Act::Fail(400, None));
    let (status, v) = post(&s, "/v1/chat/completions", &hello());
    assert_eq!((status, f.script.hits()), (400, 4), "{v}");
}

#[test]
fn a_stalled_deployment_times_out_and_another_answers() {
    let slow = FaultServer::start();
    let good = FaultServer::start();
    slow.script.always(Act::Stall);
    good.script.always(Act::Stream(vec!["fine"]));
    // The stalled one weighs more, so it is tried first.
    let deps = deployment("slow", &slow, 100) + &deployment("good", &good, 1);
    let s = tier("attempts = 2\ntimeout_secs = 1", &deps, "");
    let (status, v) = post(&s, "/v1/chat/completions", &hello());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "fine");
    assert_eq!((slow.script.hits(), good.script.hits()), (1, 1));

    // A deployment that lacks the model (404) is its own fault: the other answers.
    slow.script.always(Act::Fail(404, None));
    let (status, v) = post(&s, "/v1/chat/completions", &hello());
    assert_eq!(status, 200, "{v}");
    assert_eq!((slow.script.hits(), good.script.hits()), (2, 2));
}

#[test]
fn when_every_deployment_fails_the_fallback_model_answers() {
    let f = FaultServer::start();
    f.script.always(Act::Fail(503, None));
    let local = format!(
        "[[models]]\nname = \"{LOCAL}\"\npath = \"{}\"\n",
        default_model().display()
    );
    let deps = format!("fallbacks = [\"{LOCAL}\"]\n{}", deployment("f1", &f, 1));
    let s = tier("attempts = 2", &deps, &local);
    let (status, v) = post(&s, "/v1/chat/completions", &hello());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "m", "the client-facing name stays");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0);
    assert_eq!(f.script.hits(), 2);
}

#[test]
fn the_breaker_opens_half_opens_and_closes() {
    let f = FaultServer::start();
    f.script.always(Act::Fail(500, None));
    let s = tier(
        "attempts = 1\nbreaker_failures = 2\nbreaker_cooldown_secs = 1",
        &deployment("f1", &f, 1),
        "",
    );
    let call = || post(&s, "/v1/chat/completions", &hello());
    assert_eq!(call().0, 503);
    assert_eq!(call().0, 503);
    assert_eq!(f.script.hits(), 2);
    // Open: refused without calling the upstream.
    let (status, v) = call();
    assert_eq!(status, 503);
    assert_eq!(v["error"]["code"], "upstream_unavailable");
    assert_eq!(f.script.hits(), 2);
    let text = metrics_text(&s);
    assert!(
        text.contains("aitier_deployment_breaker{model=\"m\",deployment=\"f1\"} 2"),
        "{text}"
    );
    let d = deployments_of_m(&s);
    assert_eq!(
        (&d[0]["name"], &d[0]["breaker"], &d[0]["outstanding"]),
        (&json!("f1"), &json!("open"), &json!(0)),
        "{d}"
    );
    // After the cooldown one probe goes; it fails, so the breaker opens again.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(call().0, 503);
    assert_eq!(f.script.hits(), 3);
    assert_eq!(call().0, 503);
    assert_eq!(f.script.hits(), 3);
    // The next probe succeeds and closes it.
    std::thread::sleep(Duration::from_millis(1100));
    f.script.always(Act::Stream(vec!["back"]));
    assert_eq!(call().0, 200);
    assert_eq!(call().0, 200);
    assert_eq!(f.script.hits(), 5);
}

#[test]
fn streams_that_fail_midway_trip_the_breaker() {
    let f = FaultServer::start();
    f.script.always(Act::Reset(vec!["a"]));
    let s = tier(
        "attempts = 1\nbreaker_failures = 2\nbreaker_cooldown_secs = 3600",
        &deployment("f1", &f, 1),
        "",
    );
    for _ in 0..2 {
        let (chunks, done) = stream(&s, "/v1/chat/completions", &stream_body());
        assert!(!done && chunks.last().is_some_and(|c| c["error"].is_object()));
    }
    assert_eq!(f.script.hits(), 2);
    let (status, v) = post(&s, "/v1/chat/completions", &hello());
    assert_eq!(status, 503, "{v}");
    assert_eq!(f.script.hits(), 2, "the open breaker kept the request away");
}

#[test]
fn a_stream_that_stalls_midway_ends_with_an_error_and_trips_the_breaker() {
    let f = FaultServer::start();
    f.script.always(Act::StallMidway(vec!["Hel", "lo"]));
    let s = tier(
        "attempts = 3\ntimeout_secs = 1\nbreaker_failures = 2\nbreaker_cooldown_secs = 3600",
        &deployment("f1", &f, 1),
        "",
    );
    for _ in 0..2 {
        // What was relayed stays, the idle timeout ends the stream with an
        // error event instead of [DONE], and nothing is retried.
        let (chunks, done) = stream(&s, "/v1/chat/completions", &stream_body());
        assert_eq!(streamed_text(&chunks), "Hello");
        assert!(!done);
        let last = chunks.last().expect("chunks");
        assert_eq!(last["error"]["code"], "upstream_error", "{last}");
        let message = last["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("stalled"), "{last}");
    }
    assert_eq!(f.script.hits(), 2);
    let text = metrics_text(&s);
    assert!(
        text.contains("aitier_deployment_breaker{model=\"m\",deployment=\"f1\"} 2"),
        "{text}"
    );
    let (status, v) = post(&s, "/v1/chat/completions", &hello());
    assert_eq!(status, 503, "{v}");
    assert_eq!(f.script.hits(), 2, "the open breaker kept the request away");
}

#[test]
fn a_stream_broken_midway_is_not_retried_and_repeats_nothing() {
    let f = FaultServer::start();
    let s = tier("attempts = 3", &deployment("f1", &f, 1), "");
    // A retry would get the default answer, "ok", after "Hello".
    f.script.then(Act::Reset(vec!["Hel", "lo"]));
    let (chunks, done) = stream(&s, "/v1/chat/completions", &stream_body());
    assert_eq!(streamed_text(&chunks), "Hello");
    assert!(!done);
    let last = chunks.last().expect("chunks");
    assert_eq!(last["error"]["code"], "upstream_error", "{last}");
    assert_eq!(f.script.hits(), 1);

    f.script.then(Act::Malformed);
    let (chunks, done) = stream(&s, "/v1/chat/completions", &stream_body());
    assert!(!done);
    assert!(chunks.last().is_some_and(|c| c["error"].is_object()));
    assert_eq!(f.script.hits(), 2);
}

#[test]
fn a_client_that_leaves_closes_the_upstream_request() {
    let f = FaultServer::start();
    f.script.always(Act::Endless);
    let s = tier("attempts = 1", &deployment("f1", &f, 1), "");
    let wait_for = |n: u32| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while f.script.hung_up.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "the upstream request was never closed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let (sock, mut reader) = open_stream(&s, "/v1/chat/completions", &stream_body());
    read_events(&mut reader, 3);
    drop(reader);
    drop(sock);
    wait_for(1);
    // Not streamed: the client gives up waiting for the whole body.
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    assert!(impatient
        .post(s.url("/v1/chat/completions"))
        .json(&hello())
        .send()
        .is_err());
    wait_for(2);
}

#[test]
fn upstream_requests_are_metered_like_local_ones() {
    let f = FaultServer::start();
    f.script.always(Act::Stream(vec!["a", "b", "c"]));
    let cfg = config(&format!(
        "[tenancy]\nadmin_token = \"{ADMIN}\"\n\n[[models]]\nname = \"m\"\n{}",
        deployment("f1", &f, 1)
    ));
    let s = Server::start_raw(&["--config", &cfg]);
    let admin = |path: &str| admin_get(&s, path);
    let (status, _) = post(&s, "/v1/chat/completions", &hello());
    assert_eq!(status, 200);
    let d = deployments_of_m(&s);
    assert_eq!(
        (&d[0]["name"], &d[0]["healthy"], &d[0]["breaker"]),
        (&json!("f1"), &json!(true), &json!("closed")),
        "{d}"
    );
    assert_eq!(d[0]["stats"]["generated_tokens"], 3, "{d}");
    let mut rows = Value::Null;
    for _ in 0..100 {
        rows = admin("/admin/v1/usage?group_by=provider,model");
        if rows["data"].as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let row = &rows["data"][0];
    assert_eq!(row["provider"], "f1", "{rows}");
    assert_eq!(row["model"], "m");
    // The upstream's own usage: 7 prompt tokens, 3 completion tokens.
    assert_eq!(
        (
            row["prompt_tokens"].as_u64(),
            row["completion_tokens"].as_u64()
        ),
        (Some(7), Some(3))
    );
}

#[test]
fn an_upstream_that_ignores_stream_is_still_relayed() {
    let f = FaultServer::start();
    f.script.always(Act::Json("whole answer"));
    let s = tier("attempts = 1", &deployment("f1", &f, 1), "");
    let (status, v) = post(&s, "/v1/chat/completions", &hello());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "whole answer");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    let (chunks, done) = stream(&s, "/v1/chat/completions", &stream_body());
    assert!(done);
    assert_eq!(streamed_text(&chunks), "whole answer");
}

#[test]
fn the_upstreams_fingerprint_reaches_the_client() {
    let f = FaultServer::start();
    f.script.then(Act::Stream(vec!["a", "b"]));
    f.script.then(Act::Stream(vec!["a", "b"]));
    f.script.then(Act::Json("whole"));
    let s = tier("attempts = 1", &deployment("f1", &f, 1), "");
    let (status, v) = post(&s, "/v1/chat/completions", &hello());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["system_fingerprint"], common::fault::FINGERPRINT);
    let (chunks, done) = stream(&s, "/v1/chat/completions", &stream_body());
    assert!(done);
    assert!(
        chunks
            .iter()
            .all(|c| c["system_fingerprint"] == common::fault::FINGERPRINT),
        "{chunks:?}"
    );
    let (_, v) = post(&s, "/v1/chat/completions", &hello());
    assert_eq!(v["system_fingerprint"], common::fault::FINGERPRINT);
}

#[test]
fn metric_label_values_are_escaped() {
    let f = FaultServer::start();
    // The deployment's name is `f"1\`, written as a TOML string.
    let s = tier("", &deployment(r#"f\"1\\"#, &f, 1), "");
    let text = metrics_text(&s);
    assert!(
        text.contains(r#"aitier_deployment_healthy{model="m",deployment="f\"1\\"} 1"#),
        "{text}"
    );
}

fn with_system(system: &str, question: &str) -> Value {
    json!({"model": "m", "max_tokens": 8, "messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": question},
    ]})
}

/// The deployment (of `a`, `b`) that took the last request, and the key it was sent.
fn served_by(a: &FaultServer, b: &FaultServer, hits_before: (u32, u32)) -> (&'static str, String) {
    let (name, f) = if a.script.hits() > hits_before.0 {
        ("a", a)
    } else {
        assert!(
            b.script.hits() > hits_before.1,
            "neither deployment was called"
        );
        ("b", b)
    };
    (
        name,
        f.script.affinity().last().cloned().unwrap_or_default(),
    )
}

fn affinity_of(r: &reqwest::blocking::Response) -> String {
    r.headers()
        .get("x-aitier-affinity")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn requests_that_share_a_prefix_go_to_one_deployment_under_their_key() {
    let (a, b) = (FaultServer::start(), FaultServer::start());
    let s = tier("", &(deployment("a", &a, 1) + &deployment("b", &b, 1)), "");
    let mut chosen = Vec::new();
    for tenant in 0..8 {
        let system = format!("You are the support assistant of tenant {tenant}. ").repeat(30);
        let mut first: Option<(&str, String)> = None;
        for turn in 0..3 {
            let mut body = with_system(&system, &format!("Question number {turn}?"));
            body["stream"] = json!(turn == 2);
            let before = (a.script.hits(), b.script.hits());
            let r = client()
                .post(s.url("/v1/chat/completions"))
                .json(&body)
                .send()
                .expect("send");
            assert_eq!(r.status(), 200);
            let key = affinity_of(&r);
            assert!(
                key.len() == 16 && key.bytes().all(|c| c.is_ascii_hexdigit()),
                "{key:?}"
            );
            let _ = r.text();
            let (went, relayed) = served_by(&a, &b, before);
            assert_eq!(relayed, key, "the upstream is sent the same key");
            match &first {
                None => first = Some((went, key)),
                Some(f) => assert_eq!(f, &(went, key), "tenant {tenant}, turn {turn}"),
            }
        }
        chosen.extend(first);
    }
    let keys: std::collections::HashSet<&String> = chosen.iter().map(|(_, k)| k).collect();
    assert_eq!(keys.len(), 8);
    let on_a = chosen.iter().filter(|(d, _)| *d == "a").count();
    assert!((1..8).contains(&on_a), "8 prefixes, {on_a} on `a`");
}

#[test]
fn a_clients_key_or_prompt_cache_key_routes_and_a_bad_key_is_refused() {
    let (a, b) = (FaultServer::start(), FaultServer::start());
    let s = tier("", &(deployment("a", &a, 1) + &deployment("b", &b, 1)), "");
    let send = |body: &Value, key: Option<&str>| {
        let mut r = client().post(s.url("/v1/chat/completions")).json(body);
        if let Some(k) = key {
            r = r.header("x-aitier-affinity", k);
        }
        r.send().expect("send")
    };

    // The header's key is used as is: different prompts, one deployment.
    let mut went = Vec::new();
    for q in ["first prompt", "a wholly different second prompt"] {
        let before = (a.script.hits(), b.script.hits());
        let r = send(&with_system("s", q), Some("conversation-42"));
        assert_eq!(r.status(), 200);
        assert_eq!(affinity_of(&r), "conversation-42");
        let (d, relayed) = served_by(&a, &b, before);
        assert_eq!(relayed, "conversation-42");
        went.push(d);
    }
    assert_eq!(went[0], went[1]);

    // `prompt_cache_key` likewise, hashed; the header wins over it.
    let mut keys = Vec::new();
    for q in ["one", "two"] {
        let mut body = with_system("s", q);
        body["prompt_cache_key"] = json!("user-7");
        let r = send(&body, None);
        assert_eq!(r.status(), 200);
        keys.push(affinity_of(&r));
        let r = send(&body, Some("pinned"));
        assert_eq!(affinity_of(&r), "pinned");
    }
    assert_eq!(keys[0], keys[1]);
    assert_ne!(keys[0], "user-7");
    let r = send(&with_system("s", "one"), None);
    assert_ne!(affinity_of(&r), keys[0], "the prompt's own key differs");

    // A malformed key is the client's error, before any upstream is called.
    let hits = a.script.hits() + b.script.hits();
    let r = send(&with_system("s", "x"), Some("has spaces"));
    assert_eq!(r.status(), 400);
    let v: Value = r.json().expect("json");
    assert_eq!(v["error"]["param"], "x-aitier-affinity", "{v}");
    let r = client()
        .post(s.url("/v1/messages"))
        .header("x-aitier-affinity", "é")
        .json(
            &json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .expect("send");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().expect("json");
    assert_eq!(v["type"], "error", "Anthropic's shape: {v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(a.script.hits() + b.script.hits(), hits);
}

/// Opens four endless streams of one prompt, one after the other, on model
/// `m` over deployments `a` and `b` balanced by `routing`; returns how many
/// each took and the affinity keys they were sent.
fn four_streams_of_one_prompt(routing: &str) -> ([u32; 2], Vec<String>) {
    let (a, b) = (FaultServer::start(), FaultServer::start());
    a.script.always(Act::Endless);
    b.script.always(Act::Endless);
    let s = tier(
        routing,
        &(deployment("a", &a, 1) + &deployment("b", &b, 1)),
        "",
    );
    let mut body = with_system(&"One shared system prompt. ".repeat(60), "go");
    body["stream"] = json!(true);
    let mut open = Vec::new();
    for _ in 0..4 {
        let (sock, mut reader) = open_stream(&s, "/v1/chat/completions", &body);
        read_events(&mut reader, 1);
        open.push((sock, reader));
    }
    let keys = a
        .script
        .affinity()
        .into_iter()
        .chain(b.script.affinity())
        .collect();
    ([a.script.hits(), b.script.hits()], keys)
}

#[test]
fn a_busy_deployment_overflows_its_keys_to_their_second_choice() {
    // With n in flight, a deployment takes the next one while it stays
    // within ⌈1.25 × (n + 1) / 2⌉: the key's first choice takes the 1st,
    // 2nd and 4th stream, its second choice the 3rd.
    let (mut hits, keys) = four_streams_of_one_prompt("");
    hits.sort_unstable();
    assert_eq!(hits, [1, 3]);
    let keys: std::collections::HashSet<String> = keys.into_iter().collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
}

#[test]
fn least_outstanding_balancing_ignores_the_prefix() {
    let (hits, _) = four_streams_of_one_prompt("balance = \"least-outstanding\"");
    assert_eq!(hits, [2, 2]);
}

#[test]
fn two_local_engines_serve_a_shared_prefix_from_one_cache() {
    let model = default_model();
    let local = |name: &str| {
        format!(
            "[[models.deployments]]\nname = \"{name}\"\npath = \"{}\"\n",
            model.display()
        )
    };
    let s = tier("", &(local("engine-a") + &local("engine-b")), "");
    // Two system prompts, each asked four different questions: every
    // question after a prompt's first finds that prompt cached, because it
    // goes to the engine that computed it.
    for tenant in ["billing", "shipping"] {
        let system = format!("You answer questions about {tenant} for a shop. ").repeat(24);
        for (k, q) in ["Where is it?", "What does it cost?", "When?", "Why not?"]
            .iter()
            .enumerate()
        {
            let (status, v) = post(&s, "/v1/chat/completions", &with_system(&system, q));
            assert_eq!(status, 200, "{v}");
            let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
            let cached = v["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0);
            if k == 0 {
                assert_eq!(cached, 0, "{v}");
            } else {
                assert!(prompt > 200 && cached + 20 >= prompt, "{tenant} {k}: {v}");
            }
        }
    }
}
