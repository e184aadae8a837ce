#!/usr/bin/env python3
"""What a KV cache type does, against a running aitier: resident memory,
single-stream decode rate, a long prompt's prefill, and greedy output
(written to a JSON file, to compare types afterwards).

Usage: kv_cache.py BASE_URL PID OUT.json [--model M]
       kv_cache.py --compare A.json B.json [...]
"""
import argparse
import json
import statistics
import sys
import time
import uuid

import httpx

PROMPTS = [
    "Write a haiku about the sea.",
    "Explain what a compiler does in two sentences.",
    "List three uses of copper.",
    "What is the capital of Japan, and what is it known for?",
    "Describe a sunrise to someone who has never seen one.",
    "Give a recipe for a simple tomato soup.",
    "Why is the sky blue?",
    "Write the opening line of a mystery novel.",
    "What are the rules of tic-tac-toe?",
    "Summarise the water cycle.",
    "Name five animals that live in the Arctic.",
    "How do you make a paper aeroplane?",
    "What is photosynthesis?",
    "Tell a short joke about computers.",
    "What should a beginner know about running?",
    "Explain gravity to a child.",
]
LONG = " ".join(f"Item {i}: the quick brown fox jumps over the lazy dog." for i in range(160))


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stream(client, base, model, messages, max_tokens):
    """Streams one greedy completion; returns (ttft s, decode tok/s, text,
    prompt tokens)."""
    body = {
        "model": model,
        "messages": messages,
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    first = last = None
    text, tokens, prompt = [], 0, 0
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
                prompt = chunk["usage"]["prompt_tokens"]
            for c in chunk.get("choices", []):
                piece = c.get("delta", {}).get("content")
                if piece:
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    text.append(piece)
    rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")
    return first - t0, rate, "".join(text), prompt


def measure(args):
    client = httpx.Client(timeout=300)
    base = args.base.rstrip("/")
    out = {"rss_start_mib": rss_mib(args.pid)}
    rates = []
    for _ in range(3):
        _, rate, _, _ = stream(
            client, base, args.model, [{"role": "user", "content": "Write a long story about a lighthouse."}], 128
        )
        rates.append(rate)
    prefill = []
    for _ in range(3):
        salt = uuid.uuid4().hex
        ttft, _, _, prompt = stream(
            client, base, args.model, [{"role": "user", "content": f"{salt} {LONG} How many items?"}], 1
        )
        prefill.append(ttft)
        out["long_prompt_tokens"] = prompt
    texts = [stream(client, base, args.model, [{"role": "user", "content": p}], 64)[2] for p in PROMPTS]
    out.update(
        decode_tok_s=statistics.median(rates),
        long_prompt_ttft_s=statistics.median(prefill),
        rss_after_mib=rss_mib(args.pid),
        texts=texts,
    )
    json.dump(out, open(args.out, "w"), indent=1)


def compare(files):
    runs = {f: json.load(open(f)) for f in files}
    base_name, base = next(iter(runs.items()))
    print(
        "| KV cache | RSS at start MiB | RSS after MiB | decode tok/s | long prompt TTFT s (tokens) "
        "| greedy outputs equal to the first | mean shared prefix, chars |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in runs.items():
        same = sum(a == b for a, b in zip(r["texts"], base["texts"]))
        shared = statistics.mean(
            next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            for a, b in zip(r["texts"], base["texts"])
        )
        label = name.rsplit("/", 1)[-1].removesuffix(".json")
        print(
            f"| {label} | {r['rss_start_mib']:.0f} | {r['rss_after_mib']:.0f} | {r['decode_tok_s']:.1f} | "
            f"{r['long_prompt_ttft_s']:.2f} ({r['long_prompt_tokens']}) | {same}/{len(base['texts'])} | {shared:.0f} |"
        )


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--compare":
        compare(sys.argv[2:])
        return
    p = argparse.ArgumentParser()
    p.add_argument("base")
    p.add_argument("pid", type=int)
    p.add_argument("out")
    p.add_argument("--model", default="smollm2-135m-instruct")
    measure(p.parse_args())


if __name__ == "__main__":
    main()
