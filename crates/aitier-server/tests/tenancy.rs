//! Tenants, keys, limits, budgets and the ledger, through the real binary on
//! the real model, against SQLite and (when the test setup started one)
//! PostgreSQL.
mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Barrier};

use serde_json::{json, Value};

use common::{client, default_model, no_eos, open_stream_as, read_events, Server};

const ADMIN: &str = "admin-token-for-tests-0123456789";
const MODEL: &str = "smollm2-135m-instruct";

fn backends() -> Vec<(&'static str, String)> {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(aitier_tenancy::testing::database_urls())
}

struct Tier {
    server: Server,
    db: String,
    backend: &'static str,
}

impl Tier {
    fn start(backend: &'static str, db: &str, extra: &[&str]) -> Tier {
        let mut args = vec!["--database-url", db, "--admin-token", ADMIN];
        args.extend_from_slice(extra);
        Tier {
            server: Server::start(&args),
            db: db.to_string(),
            backend,
        }
    }

    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let c = client();
        let url = self.server.url(path);
        let req = match method {
            "GET" => c.get(url),
            "PATCH" => c.patch(url),
            _ => c.post(url),
        }
        .bearer_auth(ADMIN);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let r = req.send().expect("admin call");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    fn tenant(&self, body: Value) -> Value {
        let (status, t) = self.admin("POST", "/admin/v1/tenants", Some(body));
        assert_eq!(status, 201, "{}: {t}", self.backend);
        t
    }

    fn key(&self, tenant: &str) -> String {
        let (status, k) = self.admin("POST", &format!("/admin/v1/tenants/{tenant}/keys"), None);
        assert_eq!(status, 201, "{}: {k}", self.backend);
        k["key"].as_str().expect("key text").to_string()
    }

    fn chat(&self, key: Option<&str>, body: Value) -> reqwest::blocking::Response {
        let req = client()
            .post(self.server.url("/v1/chat/completions"))
            .json(&body);
        match key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
        .send()
        .expect("chat")
    }

    /// Waits until the ledger shows `want` requests for the query, then
    /// returns its rows (rows are written in batches, just after responses).
    fn usage_when(&self, query: &str, want: u64) -> Vec<Value> {
        for _ in 0..200 {
            let (status, body) = self.admin("GET", &format!("/admin/v1/usage?{query}"), None);
            assert_eq!(status, 200, "{body}");
            let rows = body["data"].as_array().cloned().unwrap_or_default();
            let n: u64 = rows
                .iter()
                .map(|r| r["requests"].as_u64().unwrap_or(0))
                .sum();
            if n >= want {
                return rows;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "{}: the ledger never reached {want} requests for {query}",
            self.backend
        );
    }

    /// Runs the `aitier` admin command against this tier's database.
    fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aitier"))
            .args(args)
            .args(["--database-url", &self.db])
            .env_remove("AITIER_DATABASE_URL")
            .output()
            .expect("run aitier");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }
}

fn hello(max_tokens: u32) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": max_tokens, "temperature": 0})
}

fn error_code(r: reqwest::blocking::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().expect("error body");
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn key_lifecycle_allow_lists_and_tenant_isolation() {
    let model = default_model();
    let second = format!("other={}", model.display());
    for (backend, db) in backends() {
        let tier = Tier::start(backend, &db, &["--model", &second]);
        // No key exists yet: open on loopback.
        assert_eq!(tier.chat(None, hello(1)).status(), 200, "{backend}");
        // The admin API wants its own token.
        let r = client()
            .get(tier.server.url("/admin/v1/tenants"))
            .send()
            .expect("get");
        assert_eq!(r.status(), 401);

        let acme = tier.tenant(json!({"name": "acme", "models": [MODEL]}));
        let globex = tier.tenant(json!({"name": "globex"}));
        let acme_key = tier.key("acme");
        // Keys made from the command line work at once on the running server.
        let out = tier.cli(&["keys", "create", "globex"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let globex_key = lines[0].to_string();
        assert!(globex_key.starts_with("sk-aitier-"));

        // Keys exist now: no key, or a wrong one, is refused.
        assert_eq!(
            error_code(tier.chat(None, hello(1))),
            (401, "invalid_api_key".into())
        );
        let bogus = format!("{}xx", &acme_key[..acme_key.len() - 2]);
        assert_eq!(
            error_code(tier.chat(Some(&bogus), hello(1))),
            (401, "invalid_api_key".into())
        );
        assert_eq!(
            tier.chat(Some(&acme_key), hello(1)).status(),
            200,
            "{backend}"
        );
        assert_eq!(tier.chat(Some(&globex_key), hello(1)).status(), 200);

        // acme may use one model: the other is refused and not listed.
        let mut other = hello(1);
        other["model"] = json!("other");
        assert_eq!(
            error_code(tier.chat(Some(&acme_key), other.clone())),
            (403, "model_not_allowed".into())
        );
        let models = |key: &str| -> Vec<String> {
            let v: Value = client()
                .get(tier.server.url("/v1/models"))
                .bearer_auth(key)
                .send()
                .expect("models")
                .json()
                .expect("json");
            v["data"]
                .as_array()
                .expect("list")
                .iter()
                .map(|m| m["id"].as_str().unwrap_or("").to_string())
                .collect()
        };
        assert_eq!(models(&acme_key), vec![MODEL.to_string()]);
        assert_eq!(models(&globex_key).len(), 2);

        // A tenant key reads its own usage only, and never the admin API.
        for path in ["/admin/v1/tenants", "/admin/v1/usage?tenant=globex"] {
            let r = client()
                .get(tier.server.url(path))
                .bearer_auth(&acme_key)
                .send()
                .expect("get");
            assert_eq!(r.status(), 401, "{backend} {path}");
        }
        tier.usage_when("group_by=tenant", 3);
        let own: Value = client()
            .get(tier.server.url("/v1/usage?group_by=tenant"))
            .bearer_auth(&acme_key)
            .send()
            .expect("usage")
            .json()
            .expect("json");
        let rows = own["data"].as_array().expect("rows");
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|r| r["tenant_id"] == acme["id"]), "{own}");
        let r = client()
            .get(tier.server.url(&format!(
                "/v1/usage?tenant={}",
                globex["id"].as_str().unwrap_or("")
            )))
            .bearer_auth(&acme_key)
            .send()
            .expect("usage");
        assert_eq!(r.status(), 403);

        // The admin sees every tenant, as JSON and as CSV.
        let rows = tier.usage_when("group_by=tenant", 3);
        let tenants: Vec<&str> = rows
            .iter()
            .filter_map(|r| r["tenant_id"].as_str())
            .collect();
        assert!(
            tenants.contains(&acme["id"].as_str().unwrap_or("?")),
            "{rows:?}"
        );
        assert!(tenants.contains(&globex["id"].as_str().unwrap_or("?")));
        let csv = client()
            .get(
                tier.server
                    .url("/admin/v1/usage?group_by=tenant,model&format=csv"),
            )
            .bearer_auth(ADMIN)
            .send()
            .expect("csv");
        assert!(csv.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/csv"));
        let text = csv.text().expect("text");
        assert!(
            text.starts_with("tenant_id,model,requests,prompt_tokens,"),
            "{text}"
        );
        let cli_csv = tier.cli(&["usage", "--group-by", "tenant", "--format", "csv"]);
        assert!(
            cli_csv.contains(acme["id"].as_str().unwrap_or("?")),
            "{cli_csv}"
        );

        // Revocation, by the admin API and by the command line, takes
        // effect on the next request.
        let acme_key_id = &acme_key["sk-aitier-".len().."sk-aitier-".len() + 12];
        let (status, _) = tier.admin(
            "POST",
            &format!("/admin/v1/keys/{acme_key_id}/revoke"),
            None,
        );
        assert_eq!(status, 200);
        assert_eq!(
            error_code(tier.chat(Some(&acme_key), hello(1))),
            (401, "invalid_api_key".into())
        );
        let globex_key_id = &globex_key["sk-aitier-".len().."sk-aitier-".len() + 12];
        tier.cli(&["keys", "revoke", globex_key_id]);
        assert_eq!(
            error_code(tier.chat(Some(&globex_key), hello(1))),
            (401, "invalid_api_key".into())
        );
    }
}

#[test]
fn rpm_limit_answers_with_openai_headers() {
    for (backend, db) in backends() {
        let tier = Tier::start(backend, &db, &[]);
        tier.tenant(json!({"name": "small", "rpm": 2}));
        let key = tier.key("small");
        let header = |r: &reqwest::blocking::Response, name: &str| -> String {
            r.headers()
                .get(name)
                .unwrap_or_else(|| panic!("{backend}: {name} missing"))
                .to_str()
                .expect("ascii")
                .to_string()
        };
        let first = tier.chat(Some(&key), hello(1));
        assert_eq!(first.status(), 200);
        assert_eq!(header(&first, "x-ratelimit-limit-requests"), "2");
        assert_eq!(header(&first, "x-ratelimit-remaining-requests"), "1");
        // One request of a 2-per-minute bucket refills within 30 s.
        let reset = header(&first, "x-ratelimit-reset-requests");
        let secs: f64 = reset
            .strip_suffix('s')
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{reset} is not like `29.5s`"));
        assert!(secs > 0.0 && secs <= 30.0, "{reset}");
        assert!(first.headers().get("x-ratelimit-limit-tokens").is_none());

        let second = tier.chat(Some(&key), hello(1));
        assert_eq!(second.status(), 200);
        assert_eq!(header(&second, "x-ratelimit-remaining-requests"), "0");

        let third = tier.chat(Some(&key), hello(1));
        assert_eq!(third.status(), 429, "{backend}");
        assert_eq!(header(&third, "x-ratelimit-remaining-requests"), "0");
        let after: u64 = header(&third, "retry-after").parse().expect("seconds");
        let after_ms: u64 = header(&third, "retry-after-ms").parse().expect("ms");
        assert!((1..=30).contains(&after) && after_ms <= 30_000 && after_ms > 0);
        assert!(third.headers().get("x-should-retry").is_none());
        let body: Value = third.json().expect("body");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert_eq!(body["error"]["type"], "rate_limit_error");

        // Tokens per minute: a request reserves its prompt and max_tokens
        // (about 35 here); at 60 a minute the second one does not fit.
        tier.tenant(json!({"name": "wordy", "tpm": 60}));
        let key = tier.key("wordy");
        let first = tier.chat(Some(&key), hello(1));
        assert_eq!(first.status(), 200);
        assert_eq!(header(&first, "x-ratelimit-limit-tokens"), "60");
        let remaining: u64 = header(&first, "x-ratelimit-remaining-tokens")
            .parse()
            .expect("number");
        assert!(
            remaining < 60,
            "{backend}: the request's tokens count: {remaining}"
        );
        assert!(header(&first, "x-ratelimit-reset-tokens").ends_with('s'));
        let second = tier.chat(Some(&key), hello(1));
        assert_eq!(second.status(), 429, "{backend}");
        assert!(
            header(&second, "retry-after-ms")
                .parse::<u64>()
                .expect("ms")
                > 0
        );
        let body: Value = second.json().expect("body");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("tokens per minute"));
    }
}

#[test]
fn a_hundred_concurrent_requests_overspend_a_budget_by_at_most_one_reservation() {
    for (backend, db) in backends() {
        let tier = Tier::start(backend, &db, &[]);
        // Measure one request's prompt so the budget fits about ten.
        tier.tenant(json!({"name": "probe"}));
        let probe_key = tier.key("probe");
        let probe: Value = tier.chat(Some(&probe_key), hello(4)).json().expect("json");
        let prompt = probe["usage"]["prompt_tokens"]
            .as_u64()
            .expect("prompt tokens");
        let reservation = prompt + 4;
        let budget = reservation * 10 + reservation / 2;
        tier.tenant(json!({"name": "tight", "budget_tokens": budget, "budget_period": "day"}));
        let key = Arc::new(tier.key("tight"));
        let url = tier.server.url("/v1/chat/completions");
        let barrier = Arc::new(Barrier::new(100));
        let threads: Vec<_> = (0..100)
            .map(|_| {
                let (key, url, barrier) = (key.clone(), url.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let c = client();
                    barrier.wait();
                    let r = c
                        .post(url)
                        .bearer_auth(key.as_str())
                        .json(&hello(4))
                        .send()
                        .expect("send");
                    let status = r.status().as_u16();
                    let no_retry = r.headers().get("x-should-retry").map(|v| v == "false");
                    let body: Value = r.json().expect("json");
                    (status, no_retry, body)
                })
            })
            .collect();
        let mut ok = 0u64;
        let mut ok_tokens = 0u64;
        for t in threads {
            let (status, no_retry, body) = t.join().expect("thread");
            match status {
                200 => {
                    ok += 1;
                    ok_tokens += body["usage"]["total_tokens"].as_u64().expect("usage");
                }
                429 => {
                    assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
                    assert_eq!(no_retry, Some(true));
                }
                other => panic!("{backend}: status {other}: {body}"),
            }
        }
        assert!(ok >= 1, "{backend}: nothing ran");
        assert!(
            ok_tokens <= budget + reservation,
            "{backend}: {ok} requests used {ok_tokens} tokens of a {budget} budget"
        );
        // The ledger agrees with the responses, refusals included.
        let rows = tier.usage_when("tenant=tight&group_by=status", 100);
        let ok_row = rows.iter().find(|r| r["status"] == "ok").expect("ok row");
        assert_eq!(ok_row["requests"].as_u64(), Some(ok));
        assert_eq!(ok_row["total_tokens"].as_u64(), Some(ok_tokens));
        let refused = rows.iter().find(|r| r["status"] == "quota_exceeded");
        assert_eq!(
            refused.and_then(|r| r["requests"].as_u64()).unwrap_or(0),
            100 - ok
        );
    }
}

#[test]
fn an_abandoned_stream_is_billed_for_the_tokens_generated() {
    for (backend, db) in backends() {
        let tier = Tier::start(backend, &db, &[]);
        tier.tenant(json!({"name": "leaver"}));
        let key = tier.key("leaver");
        let body = json!({
            "model": MODEL, "stream": true, "max_tokens": 2000, "logit_bias": no_eos(),
            "messages": [{"role": "user", "content": "Tell me a very long story."}],
        });
        let (sock, mut reader) =
            open_stream_as(&tier.server, "/v1/chat/completions", &body, Some(&key));
        // The role chunk, then five content chunks.
        read_events(&mut reader, 6);
        drop(reader);
        drop(sock);
        let rows = tier.usage_when("tenant=leaver&group_by=status", 1);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["status"], "cancelled", "{backend}");
        let completion = rows[0]["completion_tokens"].as_u64().unwrap_or(0);
        assert!(
            (5..2000).contains(&completion),
            "{backend}: billed {completion} completion tokens"
        );
        assert!(rows[0]["prompt_tokens"].as_u64().unwrap_or(0) > 0);
    }
}

#[test]
fn the_ledger_survives_sigterm_during_load() {
    for (backend, db) in backends() {
        let mut tier = Tier::start(backend, &db, &[]);
        tier.tenant(json!({"name": "busy"}));
        let key = Arc::new(tier.key("busy"));
        let url = tier.server.url("/v1/chat/completions");
        let done = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (key, url, done, stop) = (key.clone(), url.clone(), done.clone(), stop.clone());
                std::thread::spawn(move || {
                    // A fresh connection per request: a refused connection
                    // then means the request never reached the server.
                    let c = reqwest::blocking::Client::builder()
                        .pool_max_idle_per_host(0)
                        .build()
                        .expect("client");
                    while !stop.load(Ordering::Relaxed) {
                        match c
                            .post(&url)
                            .bearer_auth(key.as_str())
                            .json(&hello(8))
                            .send()
                        {
                            Ok(r) => {
                                // An answered request is answered in full, even while draining.
                                assert_eq!(r.status(), 200, "during drain");
                                r.json::<Value>().expect("a whole body");
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        while done.load(Ordering::Relaxed) < 12 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let status = tier.server.terminate();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().expect("worker");
        }
        assert!(status.success(), "{backend}: exit {status:?}");
        let ok = u64::from(done.load(Ordering::Relaxed));
        // Read back with the command line, after the server has exited.
        let out = tier.cli(&[
            "usage",
            "--tenant",
            "busy",
            "--group-by",
            "tenant",
            "--format",
            "json",
        ]);
        let rows: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(rows[0]["requests"].as_u64(), Some(ok), "{backend}: {out}");
    }
}
