#!/usr/bin/env python3
"""Single-stream latency through the HTTP API: time to first token and decode
tokens/s of one streamed chat completion at a time, greedy, fixed length.

Usage: single_stream.py BASE_URL [--model M] [--runs N] [--max-tokens N] [--cold]

Without --cold every run repeats one prompt, so servers with a prefix cache
answer from it (warm TTFT); --cold puts a distinct message first each run.

Decode rate = (completion_tokens - 1) / (time of last token - time of first
token); TTFT = time from sending the request to the first content chunk.
"""
import argparse
import json
import statistics
import time

import httpx

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."


def one(client: httpx.Client, base: str, model: str, max_tokens: int, salt: str = ""):
    messages = [{"role": "user", "content": PROMPT}]
    if salt:
        # A distinct first message: nothing of the prompt is in any cache.
        messages.insert(0, {"role": "system", "content": f"Session {salt}. You are a helpful assistant."})
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        # Ban end-of-text so every run decodes exactly max_tokens tokens.
        "logit_bias": {"0": -100, "2": -100},
    }
    t0 = time.perf_counter()
    first = last = None
    usage = None
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk.get("choices", []):
                if c["delta"].get("content"):
                    now = time.perf_counter()
                    first = first or now
                    last = now
    n = usage["completion_tokens"]
    return first - t0, (n - 1) / (last - first), usage["prompt_tokens"], n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--cold", action="store_true", help="a prompt no cache holds, every run")
    a = ap.parse_args()
    # A new connection per request: peers differ in how long they keep idle ones.
    with httpx.Client(timeout=300, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        one(client, a.base, a.model, 8)  # warm-up
        results = [
            one(client, a.base, a.model, a.max_tokens, f"{i}-{time.time_ns()}" if a.cold else "")
            for i in range(a.runs)
        ]
    ttft = [r[0] * 1000 for r in results]
    rate = [r[1] for r in results]
    print(f"prompt tokens {results[0][2]}, completion tokens {results[0][3]}, runs {a.runs}")
    print(f"TTFT ms: median {statistics.median(ttft):.1f}, min {min(ttft):.1f}, max {max(ttft):.1f}")
    print(f"decode tok/s: median {statistics.median(rate):.1f}, min {min(rate):.1f}, max {max(rate):.1f}")


if __name__ == "__main__":
    main()
