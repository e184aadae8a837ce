#!/usr/bin/env python3
"""Max requests/s of two aitier replicas against one, in front of the static
stub upstream, with a tenant's key and limits checked on every request
(closed loop, oha, non-streamed chat completions). Run by
bench/run-replicas.sh, which starts the stub, the stores and the replicas.

    replicas.py --oha BIN --admin TOKEN --seconds S --case NAME=URL[,URL] ...

Each case's connections are split evenly over its replicas (one oha per
replica, run at the same time), and its req/s are the sum. Cases run in
the order given, twice, alternating.
"""
import argparse
import json
import subprocess
import sys
import time
import urllib.request

BODY = {"model": "stub", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
CONNECTIONS = 64


def call(url, admin, body=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"authorization": f"Bearer {admin}",
                                          "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wait_ready(base, admin, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(m["status"] == "loaded" for m in call(f"{base}/admin/v1/models", admin)["data"]):
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"{base} never became ready")


def key_for(base, admin, tenant):
    """A tenant with limits that do not bind but are all checked, and its key."""
    call(f"{base}/admin/v1/tenants", admin,
         {"name": tenant, "rpm": 10_000_000, "tpm": 1_000_000_000, "max_concurrent": 10_000})
    return call(f"{base}/admin/v1/tenants/{tenant}/keys", admin, {"name": "bench"})["key"]


def oha(bin_, url, key, seconds, conns):
    cmd = [bin_, "-z", f"{seconds}s", "-c", str(conns), "--no-tui", "--output-format", "json",
           "-m", "POST", "-H", "content-type: application/json", "-H", f"authorization: Bearer {key}",
           "-d", json.dumps(BODY), f"{url}/v1/chat/completions"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def measure(bin_, urls, key, seconds):
    procs = [oha(bin_, u, key, seconds, CONNECTIONS // len(urls)) for u in urls]
    ok, other, p50s, p99s = 0, 0, [], []
    for p in procs:
        r = json.loads(p.communicate()[0])
        codes = r.get("statusCodeDistribution", {})
        ok += int(codes.get("200", 0))
        other += sum(int(v) for k, v in codes.items() if k != "200")
        pct = r.get("latencyPercentiles", {})
        p50s.append((pct.get("p50") or 0) * 1000)
        p99s.append((pct.get("p99") or 0) * 1000)
    return {"rps": ok / seconds, "errors": other, "p50": max(p50s), "p99": max(p99s)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--oha", required=True)
    ap.add_argument("--admin", required=True)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--case", action="append", required=True)
    a = ap.parse_args()
    cases = [(c.split("=", 1)[0], c.split("=", 1)[1].split(",")) for c in a.case]
    keys = {}
    for i, (name, urls) in enumerate(cases):
        for u in urls:
            wait_ready(u, a.admin)
        keys[name] = key_for(urls[0], a.admin, f"bench-{i}")
    results = {name: [] for name, _ in cases}
    for rnd in range(2):
        for name, urls in cases:
            measure(a.oha, urls, keys[name], 2)  # warm-up: pools and caches
            r = measure(a.oha, urls, keys[name], a.seconds)
            print(f"round {rnd + 1} {name}: {r}", file=sys.stderr, flush=True)
            results[name].append(r)
    base = results[cases[0][0]]
    print(f"| setup | req/s (2 runs) | p50 / p99 ms | non-200 | req/s against `{cases[0][0]}` |")
    print("| --- | --- | --- | --- | --- |")
    for name, _ in cases:
        rs = results[name]
        ratio = sum(r["rps"] for r in rs) / sum(r["rps"] for r in base)
        rps = ", ".join("%.0f" % r["rps"] for r in rs)
        lat = ", ".join("%.1f / %.1f" % (r["p50"], r["p99"]) for r in rs)
        errors = sum(r["errors"] for r in rs)
        print(f"| {name} | {rps} | {lat} | {errors} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
