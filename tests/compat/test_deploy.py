"""The container image and the Kubernetes manifests, checked offline (no
container runtime or cluster here): hadolint on the Dockerfile,
kubernetes-validate (strict) on the manifests, and the binary itself for
what they name: flags, environment variables, ports, probe paths, the
ConfigMap's TOML, the shutdown budget and the memory request."""

import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

from conftest import MODEL, REPO, spawn_server

BIN = Path(sys.executable).parent
K8S = REPO / "deploy/k8s"
AITIER = Path(os.environ.get("AITIER_BIN", REPO / "target" / "debug" / "aitier"))
# serve.rs: how long cut connections may take to close, and the ledger to flush.
CUT_WAIT_S = 5
LEDGER_FLUSH_S = 30


def dockerfile() -> list[tuple[str, str]]:
    """The final stage's instructions as (INSTRUCTION, arguments), lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    stages = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    return [tuple(ln.split(None, 1)) for ln in lines[stages[-1] :]]


def manifests() -> dict:
    docs = {}
    for f in sorted(K8S.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            docs[d["kind"]] = d
    return docs


def serve_help() -> str:
    return subprocess.run([str(AITIER), "serve", "--help"], check=True, capture_output=True, text=True).stdout


def reads_env(help_text: str, name: str) -> bool:
    """`--help` names each variable (secret ones without their value)."""
    return re.search(rf"\[env: {name}[=\]]", help_text) is not None


def test_hadolint_passes():
    r = subprocess.run([str(BIN / "hadolint"), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_manifests_validate_strictly():
    files = [str(f) for f in sorted(K8S.glob("*.yaml"))]
    assert len(files) >= 6
    r = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    kinds = set(manifests())
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    } <= kinds


def test_image_matches_the_binary(base_url):
    steps = dockerfile()
    env = {}
    for op, args in steps:
        if op.upper() == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    help_text = serve_help()
    for name in env:
        assert reads_env(help_text, name), f"the image sets {name}, which `aitier serve` does not read"
    exposed = {int(p) for op, args in steps if op.upper() == "EXPOSE" for p in args.split()}
    assert exposed == {int(env["AITIER_PORT"]), int(env["AITIER_METRICS_ADDR"].rsplit(":", 1)[1])}
    entry = [json.loads(args) for op, args in steps if op.upper() == "ENTRYPOINT"][0]
    cmd = [json.loads(args) for op, args in steps if op.upper() == "CMD"][0]
    assert entry == ["aitier"] and cmd == ["serve"]
    health = [args for op, args in steps if op.upper() == "HEALTHCHECK"][0]
    probe = json.loads(health.split("CMD", 1)[1].strip())
    assert probe[:2] == ["aitier", "probe"]
    path = probe[probe.index("--path") + 1]
    # The probe command against a live server answers as the image's would.
    port = base_url.rsplit(":", 1)[1]
    r = subprocess.run([str(AITIER), *probe[1:], "--port", port], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert httpx.get(f"{base_url}{path}", timeout=10).status_code == 200
    r = subprocess.run([str(AITIER), "probe", "--path", "/no-such-path", "--port", port], capture_output=True, text=True)
    assert r.returncode != 0


def test_deployment_matches_the_binary_and_its_drain(base_url, tmp_path):
    docs = manifests()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"][0] == "serve"
    help_text = serve_help()
    for flag in [a for a in c["args"] if a.startswith("--")]:
        assert re.search(rf"\s{re.escape(flag)}\b", help_text), f"{flag} is not a flag of `aitier serve`"
    for e in c["env"]:
        assert reads_env(help_text, e["name"]), f"{e['name']} is not read by `aitier serve`"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    config = tomllib.loads(docs["ConfigMap"]["data"]["aitier.toml"])
    assert ports["http"] == config["server"]["port"]
    assert ports["metrics"] == int(config["server"]["metrics_addr"].rsplit(":", 1)[1])
    service = {p["name"]: p["targetPort"] for p in docs["Service"]["spec"]["ports"]}
    assert set(service.values()) <= set(ports)
    # Probes: liveness on /health, readiness (and start-up) on /ready; both answer on a live server.
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = c[probe]["httpGet"]
        assert get["port"] == "http"
        assert httpx.get(f"{base_url}{get['path']}", timeout=10).status_code == 200
    # The kill deadline leaves room for the whole drain.
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain_timeout = int(re.fullmatch(r"(\d+)s", config["server"]["drain_timeout"]).group(1))
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain_timeout + CUT_WAIT_S + LEDGER_FLUSH_S
    # The ConfigMap's TOML is one the server accepts (flags move it to loopback and free ports).
    path = tmp_path / "aitier.toml"
    path.write_text(docs["ConfigMap"]["data"]["aitier.toml"])
    proc, url = spawn_server(tmp_path / "server.log", ["--config", str(path), "--data-dir", str(tmp_path / "data")])
    try:
        assert httpx.get(f"{url}/ready", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def _mib(quantity: str) -> float:
    n, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(n) * (1024 if unit == "Gi" else 1)


def test_memory_request_covers_measured_rss(tmp_path):
    """Both default models loaded and four streams decoding, as the
    deployment's comment says; the peak must fit the request."""
    (c,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    request = _mib(c["resources"]["requests"]["memory"])
    limit = _mib(c["resources"]["limits"]["memory"])
    proc, url = spawn_server(tmp_path / "server.log", ["--data-dir", str(tmp_path / "data"), "--drain-grace", "0s"])
    try:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Write a long story."}],
            "max_tokens": 200,
            "logit_bias": {"0": -100, "2": -100},
        }
        with ThreadPoolExecutor(4) as pool:
            chats = [pool.submit(httpx.post, f"{url}/v1/chat/completions", json=body, timeout=300) for _ in range(4)]
            r = httpx.post(f"{url}/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": ["a", "b"]}, timeout=60)
            assert r.status_code == 200
            assert [c.result().status_code for c in chats] == [200] * 4
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peak_mib = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    print(f"peak RSS {peak_mib:.0f} MiB; request {request:.0f} MiB, limit {limit:.0f} MiB")
    assert peak_mib < request <= limit
