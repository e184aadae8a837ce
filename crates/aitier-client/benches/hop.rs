//! The hop, measured: the same model, configuration and request through
//! three paths in one run, one path at a time —
//!
//! - **in-process**: `Client::in_process`, the tier in this process;
//! - **HTTP**: `Client::http` to an `aitier serve` of the same
//!   configuration on loopback (keep-alive);
//! - **gateway**: `Client::http` to a second `aitier serve` whose model is
//!   an upstream: a third `aitier serve` like the first (two hops). Each
//!   path has an engine of its own that sees the same requests in the same
//!   order.
//!
//! Per path: latency of a non-streamed 1-token chat completion (p50, p99),
//! time to the first streamed token, the gap between streamed tokens, and
//! CPU time per 1-token request (this process plus the servers', from
//! /proc). Run by `bench/run-hop.sh`; prints a Markdown table.
//!
//! Settings come from the environment: `HOP_AITIER` (the binary),
//! `HOP_MODEL` (a GGUF), `HOP_WORK` (a scratch directory), `HOP_ROUNDS`
//! (3), `HOP_REQUESTS` (300 per round and path), `HOP_STREAMS` (40).
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use aitier_client::types::chat::ChatCompletionRequest;
use aitier_client::{Client, HttpOptions, Tier};

const MODEL: &str = "smollm2-135m-instruct";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_num(name: &str, default: usize) -> usize {
    env(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A server process, stopped when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(aitier: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(aitier)
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--metrics-addr",
                "off",
            ])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("aitier listening on ")
            .ok_or_else(|| anyhow::anyhow!("unexpected first line: {line:?}"))?;
        Ok(Self {
            base: url.to_string(),
            child,
        })
    }

    async fn ready(&self) -> anyhow::Result<()> {
        for _ in 0..600 {
            if let Ok(r) = reqwest::get(format!("{}/ready", self.base)).await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("{} not ready after 60 s", self.base)
    }

    fn client(&self) -> anyhow::Result<Client> {
        let options = HttpOptions {
            max_retries: 0,
            ..HttpOptions::default()
        };
        Ok(Client::http_with(
            &format!("{}/v1", self.base),
            None,
            options,
        )?)
    }
}

/// CPU seconds (user + system) a process's threads have used, from
/// /proc: the engine's (llama.cpp's workers inherit the engine thread's
/// name) and all the others' (the client, the server's runtime).
#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    engine: f64,
    other: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            engine: self.engine - o.engine,
            other: self.other - o.other,
        }
    }
}

impl std::ops::Add for Cpu {
    type Output = Cpu;
    fn add(self, o: Cpu) -> Cpu {
        Cpu {
            engine: self.engine + o.engine,
            other: self.other + o.other,
        }
    }
}

fn cpu_of(pid: &str, ticks_per_second: f64) -> Cpu {
    let mut cpu = Cpu::default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return cpu;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // The thread's name is in parentheses and may hold spaces.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime: the 14th and 15th fields, 12th and 13th after the name.
        let secs = (ticks(11) + ticks(12)) / ticks_per_second;
        if name.starts_with("aitier-engine") {
            cpu.engine += secs;
        } else {
            cpu.other += secs;
        }
    }
    cpu
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn request(max_tokens: u32, ban_eos: bool) -> ChatCompletionRequest {
    let mut body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Name one colour of the rainbow."}],
        "temperature": 0,
        "max_tokens": max_tokens,
    });
    if ban_eos {
        // SmolLM2's end-of-text and end-of-turn tokens: run to max_tokens.
        body["logit_bias"] = json!({"0": -100, "2": -100});
    }
    serde_json::from_value(body).expect("a valid request")
}

/// What one path measured, over all rounds.
#[derive(Default, Clone)]
struct Measured {
    one_token: Vec<Duration>,
    ttft: Vec<Duration>,
    gaps: Vec<Duration>,
    /// CPU used over the 1-token requests, and how many there were.
    cpu: Cpu,
    requests: usize,
    /// Each round's 1-token p50.
    round_p50: Vec<f64>,
}

struct Path3 {
    name: &'static str,
    client: Client,
    /// Processes whose CPU counts for this path: this one and its servers.
    pids: Vec<String>,
}

impl Path3 {
    fn cpu(&self, ticks: f64) -> Cpu {
        self.pids
            .iter()
            .fold(Cpu::default(), |sum, p| sum + cpu_of(p, ticks))
    }
}

/// `n` 1-token requests on one path; their latencies, and the CPU they
/// took.
async fn one_tokens(path: &Path3, n: usize, ticks: f64, m: &mut Measured) -> anyhow::Result<()> {
    let before = path.cpu(ticks);
    for _ in 0..n {
        let t = Instant::now();
        let answer = path.client.chat(request(1, false)).await?;
        m.one_token.push(t.elapsed());
        anyhow::ensure!(answer.usage.map(|u| u.completion_tokens) == Some(1));
    }
    m.cpu = m.cpu + (path.cpu(ticks) - before);
    m.requests += n;
    Ok(())
}

/// One stream of 64 tokens: the time to its first token, and the gaps
/// between the others.
async fn stream(path: &Path3, m: &mut Measured) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut chunks = path.client.chat_stream(request(64, true)).await?;
    let mut last: Option<Instant> = None;
    let mut tokens = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        let has_text = chunk
            .choices
            .iter()
            .any(|ch| ch.delta.content.as_deref().is_some_and(|s| !s.is_empty()));
        if !has_text {
            continue;
        }
        let now = Instant::now();
        match last {
            None => m.ttft.push(now - t),
            Some(prev) => m.gaps.push(now - prev),
        }
        last = Some(now);
        tokens += 1;
    }
    anyhow::ensure!(tokens > 32, "a stream of {tokens} tokens");
    Ok(())
}

/// One round: the paths take turns, a block of requests (or one stream)
/// each, starting with a different path each time, so that the machine's
/// drift (this VM's speed varies by the minute) falls on all of them alike.
async fn round(
    paths: &[Path3],
    measured: &mut [Measured],
    requests: usize,
    streams: usize,
    ticks: f64,
) -> anyhow::Result<()> {
    const BLOCK: usize = 20;
    let starts = measured
        .iter()
        .map(|m| m.one_token.len())
        .collect::<Vec<_>>();
    for (turn, done) in (0..requests).step_by(BLOCK).enumerate() {
        for k in 0..paths.len() {
            let i = (turn + k) % paths.len();
            one_tokens(
                &paths[i],
                BLOCK.min(requests - done),
                ticks,
                &mut measured[i],
            )
            .await?;
        }
    }
    for turn in 0..streams {
        for k in 0..paths.len() {
            let i = (turn + k) % paths.len();
            stream(&paths[i], &mut measured[i]).await?;
        }
    }
    for (m, start) in measured.iter_mut().zip(starts) {
        let p50 = quantile(&m.one_token[start..], 0.5);
        m.round_p50.push(p50);
    }
    Ok(())
}

fn quantile(xs: &[Duration], q: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

fn mean(xs: &[Duration]) -> f64 {
    xs.iter().map(|d| d.as_secs_f64() * 1000.0).sum::<f64>() / xs.len().max(1) as f64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` runs in the crate's directory; defaults are the repository's.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let aitier =
        env("HOP_AITIER").map_or_else(|| root.join("target/release/aitier"), PathBuf::from);
    let model = env("HOP_MODEL").map_or_else(
        || root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        PathBuf::from,
    );
    let work = env("HOP_WORK").map_or_else(|| root.join("bench/.work/hop"), PathBuf::from);
    let rounds = env_num("HOP_ROUNDS", 3);
    let requests = env_num("HOP_REQUESTS", 300);
    let streams = env_num("HOP_STREAMS", 40);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let model = std::fs::canonicalize(&model)?;
    // One configuration for the embedded tier and the server alike.
    let config = work.join("aitier.toml");
    std::fs::write(
        &config,
        format!(
            "[tenancy]\ndata_dir = {:?}\n\n[[models]]\nname = {MODEL:?}\npath = {model:?}\n",
            work.join("in-process")
        ),
    )?;
    let tier = Arc::new(Tier::from_config(&config).await?);
    tier.ready(Duration::from_secs(120)).await?;
    let config = config.to_string_lossy().into_owned();
    // The gateway's upstream is a server of its own, so that every path's
    // engine sees the same requests in the same order.
    let serve_model = |name: &str| -> anyhow::Result<Server> {
        let data = work.join(name).to_string_lossy().into_owned();
        Server::start(&aitier, &["--config", &config, "--data-dir", &data])
    };
    let server = serve_model("server")?;
    let behind = serve_model("behind-gateway")?;
    server.ready().await?;
    behind.ready().await?;
    let upstream = format!("{MODEL}={}/v1", behind.base);
    let gateway_data = work.join("gateway").to_string_lossy().into_owned();
    let gateway = Server::start(
        &aitier,
        &["--upstream", &upstream, "--data-dir", &gateway_data],
    )?;
    gateway.ready().await?;

    let me = std::process::id().to_string();
    let paths = [
        Path3 {
            name: "in-process",
            client: Client::in_process(tier.clone(), None),
            pids: vec![me.clone()],
        },
        Path3 {
            name: "HTTP, loopback",
            client: server.client()?,
            pids: vec![me.clone(), server.child.id().to_string()],
        },
        Path3 {
            name: "HTTP via a gateway aitier",
            client: gateway.client()?,
            pids: vec![
                me.clone(),
                behind.child.id().to_string(),
                gateway.child.id().to_string(),
            ],
        },
    ];
    let ticks = clock_ticks_per_second();
    let mut measured = vec![Measured::default(); paths.len()];
    for p in &paths {
        for _ in 0..20 {
            p.client.chat(request(1, false)).await?;
        }
    }
    for r in 0..rounds {
        round(&paths, &mut measured, requests, streams, ticks).await?;
        let p50s: Vec<String> = measured
            .iter()
            .map(|m| format!("{:.3}", m.round_p50[r]))
            .collect();
        eprintln!("round {r}: 1-token p50 ms {}", p50s.join(" / "));
    }
    tier.close().await;
    print_table(&paths, &measured, rounds, requests, streams);
    Ok(())
}

fn print_table(
    paths: &[Path3],
    measured: &[Measured],
    rounds: usize,
    requests: usize,
    streams: usize,
) {
    let base = &measured[0];
    let p = |m: &Measured, q: f64| quantile(&m.one_token, q);
    let per_request = |m: &Measured, cpu: f64| cpu * 1000.0 / m.requests.max(1) as f64;
    println!(
        "| path | 1-token p50 ms | p99 ms | added p50 ms | added p99 ms | TTFT p50 ms | TTFT p99 ms | \
         gap between tokens ms | added per token ms | CPU ms/request outside the engine | engine CPU ms/request |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (path, m) in paths.iter().zip(measured) {
        println!(
            "| {} | {:.3} | {:.3} | {:+.3} | {:+.3} | {:.3} | {:.3} | {:.3} | {:+.3} | {:.3} | {:.3} |",
            path.name,
            p(m, 0.5),
            p(m, 0.99),
            p(m, 0.5) - p(base, 0.5),
            p(m, 0.99) - p(base, 0.99),
            quantile(&m.ttft, 0.5),
            quantile(&m.ttft, 0.99),
            mean(&m.gaps),
            mean(&m.gaps) - mean(&base.gaps),
            per_request(m, m.cpu.other),
            per_request(m, m.cpu.engine),
        );
    }
    println!("\nEach round's 1-token p50, ms (the spread is the machine's, not the paths'):\n");
    println!(
        "| path | {} |",
        (0..rounds)
            .map(|r| format!("round {}", r + 1))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---:|".repeat(rounds));
    for (path, m) in paths.iter().zip(measured) {
        let cells: Vec<String> = m.round_p50.iter().map(|v| format!("{v:.3}")).collect();
        println!("| {} | {} |", path.name, cells.join(" | "));
    }
    println!(
        "\n{rounds} rounds; per round and path: {requests} 1-token requests (in blocks of 20, the paths \
         taking turns) and {streams} streams of 64 tokens (taking turns), after 20 warm-up requests each. \
         Percentiles are over all rounds' samples."
    );
}
