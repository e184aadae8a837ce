"""Gateway overhead against a static stub upstream, measured with oha at
fixed request rates: direct, through aitier, through the LiteLLM proxy.
Prints a markdown table of latency p50/p99 (and what each gateway adds over
direct), errors and achieved rates; run by bench/run-gateway.sh."""

import argparse
import json
import subprocess
import sys
import time
import urllib.request

RATES = [20, 50, 100, 500, 1000, 2000]
BODY = {"model": "stub", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}


KEY = "sk-gateway-bench-master-key-0123456789"


def wait_ready(base: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(f"{base}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"{base} never became ready")


def oha(bin_: str, url: str, body: dict, seconds: int, rate: int | None) -> dict:
    cmd = [bin_, "-z", f"{seconds}s", "--no-tui", "--output-format", "json", "-m", "POST",
           "-H", "content-type: application/json", "-H", "authorization: Bearer sk-gateway-bench-master-key-0123456789",
           "-d", json.dumps(body)]
    if rate is None:
        cmd += ["-c", "32"]
    else:
        # Open loop: requests leave on schedule and latency counts from the
        # scheduled time, so a gateway that falls behind shows it.
        cmd += ["-q", str(rate), "-c", "256", "--latency-correction"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    codes = r.get("statusCodeDistribution", {})
    ok = int(codes.get("200", 0))
    # Requests still in flight when the run's time is up are not failures.
    failed = sum(int(v) for k, v in r.get("errorDistribution", {}).items() if "deadline" not in k)
    total = sum(int(v) for v in codes.values()) + failed
    pct = r.get("latencyPercentiles", {})
    return {
        "ok": ok,
        "errors": total - ok,
        "rps": ok / seconds,
        "p50": (pct.get("p50") or 0) * 1000,
        "p99": (pct.get("p99") or 0) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--oha", required=True)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--direct", required=True)
    ap.add_argument("--aitier", required=True)
    ap.add_argument("--litellm", required=True)
    a = ap.parse_args()
    targets = {"direct": a.direct, "aitier": a.aitier, "LiteLLM": a.litellm}
    for base in targets.values():
        wait_ready(base)
    rows = []
    for stream in (False, True):
        body = dict(BODY, stream=stream)
        for rate in RATES + [None]:
            res = {}
            for name, base in targets.items():
                # A short warm-up so that connection pools and caches are filled.
                oha(a.oha, f"{base}/v1/chat/completions", body, 2, rate or 200)
                res[name] = oha(a.oha, f"{base}/v1/chat/completions", body, a.seconds, rate)
                print(f"stream={stream} rate={rate} {name}: {res[name]}", file=sys.stderr, flush=True)
            rows.append((stream, rate, res))
    d = lambda x: f"{x:.2f}"
    print("| mode | rate (req/s) | direct p50 / p99 ms | aitier added p50 / p99 ms | LiteLLM added p50 / p99 ms | errors direct / aitier / LiteLLM | achieved req/s direct / aitier / LiteLLM |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for stream, rate, r in rows:
        dr, ai, ll = r["direct"], r["aitier"], r["LiteLLM"]
        print(
            f"| {'stream' if stream else 'json'} | {rate or 'max (32 conns)'} "
            f"| {d(dr['p50'])} / {d(dr['p99'])} "
            f"| {d(ai['p50'] - dr['p50'])} / {d(ai['p99'] - dr['p99'])} "
            f"| {d(ll['p50'] - dr['p50'])} / {d(ll['p99'] - dr['p99'])} "
            f"| {dr['errors']} / {ai['errors']} / {ll['errors']} "
            f"| {dr['rps']:.0f} / {ai['rps']:.0f} / {ll['rps']:.0f} |"
        )


if __name__ == "__main__":
    main()
