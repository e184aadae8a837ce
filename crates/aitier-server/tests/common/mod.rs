//! Starts the real `aitier` binary on a free port with the real default
//! model, and stops it when dropped.
#![allow(dead_code)]

pub mod fault;
pub mod suite;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub base: String,
    /// The metrics listener's `/metrics` URL.
    pub metrics: String,
}

/// A fresh data directory, so that tests never share a tenancy database.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aitier-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn default_model() -> PathBuf {
    let p = repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "{} missing: run `make model` first",
        p.display()
    );
    p
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let model = format!("smollm2-135m-instruct={}", default_model().display());
        let mut args = vec!["--model", model.as_str()];
        args.extend_from_slice(extra);
        Server::start_raw(&args)
    }

    /// Starts with only these arguments (plus host, port and a fresh data
    /// directory): the models come from them.
    pub fn start_raw(extra: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aitier"));
        cmd.args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("AITIER_DATABASE_URL")
            .env_remove("AITIER_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !extra.contains(&"--database-url") {
            cmd.arg("--data-dir").arg(temp_dir("data"));
        }
        // No load balancer waits on a test server's /ready.
        if !extra.contains(&"--drain-grace") {
            cmd.args(["--drain-grace", "0s"]);
        }
        // Tests run side by side: no fixed port.
        cmd.args(["--metrics-addr", "127.0.0.1:0"]);
        let mut child = cmd.spawn().expect("start aitier");
        let stdout = child.stdout.take().expect("stdout");
        let mut stdout = BufReader::new(stdout);
        let mut address = |prefix: &str| {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read address line");
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected {prefix}..., got {line:?}"))
                .to_string()
        };
        let base = address("aitier listening on ");
        let metrics = address("aitier metrics on ");
        let server = Server {
            child,
            base,
            metrics,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let client = reqwest::blocking::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/ready", self.base)).send() {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "server never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Asks for a graceful stop and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        self.child.wait().expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client")
}

pub fn post(server: &Server, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = client()
        .post(server.url(path))
        .json(body)
        .send()
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().expect("json body"))
}

/// The whole `/metrics` exposition.
pub fn metrics_text(server: &Server) -> String {
    client()
        .get(&server.metrics)
        .send()
        .expect("metrics")
        .text()
        .expect("text")
}

/// One sample of a Prometheus series from `/metrics`.
pub fn metric(server: &Server, name: &str) -> u64 {
    let text = metrics_text(server);
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

/// Token ids of end-of-text and end-of-turn in SmolLM2's vocabulary, banned
/// where a test needs generation to run to its token limit.
pub fn no_eos() -> serde_json::Value {
    serde_json::json!({"0": -100, "2": -100})
}

/// Opens a streaming request on a raw socket, so a test can hold it open or
/// drop it mid-stream, and returns it with a reader past the status line.
pub fn open_stream(
    server: &Server,
    path: &str,
    body: &serde_json::Value,
) -> (std::net::TcpStream, BufReader<std::net::TcpStream>) {
    open_stream_as(server, path, body, None)
}

/// `open_stream` with an API key.
pub fn open_stream_as(
    server: &Server,
    path: &str,
    body: &serde_json::Value,
    key: Option<&str>,
) -> (std::net::TcpStream, BufReader<std::net::TcpStream>) {
    use std::io::Write;
    let auth = key
        .map(|k| format!("authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let addr = server.base.strip_prefix("http://").expect("http base");
    let body = body.to_string();
    let mut sock = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        sock,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write request");
    let mut reader = BufReader::new(sock.try_clone().expect("clone socket"));
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    (sock, reader)
}

/// Reads until `n` SSE data lines have arrived.
pub fn read_events(reader: &mut BufReader<std::net::TcpStream>, n: usize) {
    let mut line = String::new();
    let mut seen = 0;
    while seen < n {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("read") > 0,
            "stream ended early"
        );
        seen += usize::from(line.starts_with("data: "));
    }
}
