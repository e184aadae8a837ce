#!/usr/bin/env python3
"""Embeddings benchmark: aitier against llama.cpp's llama-server
(`--embeddings`) on the same GGUF, same threads, measured in one run.

    embed_load.py --targets NAME=URL... --rounds N --json FILE
                                                     throughput of the servers
    embed_load.py --ttft NAME=URL --json FILE        aitier's chat TTFT, alone
                                                     and beside full embedding load
    embed_load.py --table FILE --rounds N            the markdown table
    embed_load.py --load URL                         embedding load until killed

Throughput: C concurrent clients (1, 4, 16), each sending requests of K
inputs (1, 32) back to back for SECONDS; embeddings/s and input tokens/s
(from `usage`) over the window. Inputs are drawn in turn from the
reference sentences of tests/fixtures/embeddings (3 to 256 tokens). All
servers are up at once and one is loaded at a time: each level measures
every server back to back, the first one rotating every round, so that
this machine's drifting speed reaches each server alike; the table gives
each server's median and, per level, the median of the per-round ratios.
"""
import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

EMBED = "all-minilm-l6-v2"
CHAT = "smollm2-135m-instruct"
FIXTURE = Path(__file__).resolve().parents[1] / "tests/fixtures/embeddings/all-minilm-l6-v2.json"
SENTENCES = [s["text"] for s in json.loads(FIXTURE.read_text())["sentences"]]
LEVELS = [(1, 1), (4, 1), (16, 1), (1, 32), (4, 32), (16, 32)]


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


async def embed_worker(client, url, k, start, stop_at, counts):
    i = start
    while time.perf_counter() < stop_at:
        batch = [SENTENCES[(i + j) % len(SENTENCES)] for j in range(k)]
        i += k
        r = await client.post(f"{url}/v1/embeddings", json={"model": EMBED, "input": batch})
        r.raise_for_status()
        body = r.json()
        assert len(body["data"]) == k
        counts[0] += k
        counts[1] += body["usage"]["prompt_tokens"]


async def throughput(url, clients, k, seconds):
    counts = [0, 0]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        # Warm-up, then the measured window.
        await client.post(f"{url}/v1/embeddings", json={"model": EMBED, "input": SENTENCES})
        t0 = time.perf_counter()
        stop_at = t0 + seconds
        await asyncio.gather(*(embed_worker(client, url, k, w * 7, stop_at, counts) for w in range(clients)))
        elapsed = time.perf_counter() - t0
    return {"embeddings_per_s": counts[0] / elapsed, "tokens_per_s": counts[1] / elapsed}


async def chat_ttft(client, url):
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Name a colour."}],
            "max_tokens": 4, "temperature": 0, "stream": True}
    t0 = time.perf_counter()
    ttft = None
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if ttft is None and line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    ttft = time.perf_counter() - t0
    if ttft is None:
        raise RuntimeError("no content")
    return ttft


async def embed_load(url):
    """16 clients of 32-input embedding requests, until killed."""
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        counts = [0, 0]
        await asyncio.gather(*(embed_worker(client, url, 32, w * 7, float("inf"), counts)
                               for w in range(16)))


async def ttft_phase(url, samples, with_load):
    """Chat TTFT of `samples` requests one after another, with 16 clients
    of 32-input embedding requests running throughout when `with_load`.
    The load comes from another process, so that decoding its answers
    never delays this one's reading of the chat stream."""
    load = None
    if with_load:
        load = await asyncio.create_subprocess_exec(sys.executable, __file__, "--load", url)
        await asyncio.sleep(3)
    try:
        async with httpx.AsyncClient(timeout=600) as client:
            await chat_ttft(client, url)
            ttfts = []
            for _ in range(samples):
                ttfts.append(await chat_ttft(client, url))
                await asyncio.sleep(0.2)
    finally:
        if load is not None:
            load.terminate()
            await load.wait()
    return {"p50_ms": pct(ttfts, 50) * 1000, "p99_ms": pct(ttfts, 99) * 1000}


def merge(path, key, value):
    data = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    data.setdefault(key, []).append(value)
    Path(path).write_text(json.dumps(data, indent=1))


def table(path, rounds):
    """Throughput per level, each server's median over the rounds, every
    other server against the last (the peer) as the median of the rounds'
    ratios; then chat TTFT."""
    data = json.loads(Path(path).read_text())
    med = statistics.median
    names = [n for n in data if not n.startswith("ttft:")]
    peer, ours = names[-1], names[:-1]
    out = ["| clients | inputs/request | " + " | ".join(f"{n} emb/s (tok/s)" for n in names)
           + "".join(f" | {n} / {peer}" for n in ours) + " |",
           "| ---: | ---: |" + " ---: |" * (len(names) + len(ours))]
    for c, k in LEVELS:
        key = f"{c}x{k}"
        rate = lambda n: [r[key]["embeddings_per_s"] for r in data[n]]
        cells = [f"{med(rate(n)):.1f} ({med([r[key]['tokens_per_s'] for r in data[n]]):.0f})"
                 for n in names]
        ratios = [f"{med([a / b for a, b in zip(rate(n), rate(peer))]):.2f}x" for n in ours]
        out.append(f"| {c} | {k} | " + " | ".join(cells + ratios) + " |")
    print("\n".join(out))
    ttft = [n for n in data if n.startswith("ttft:")]
    if ttft:
        print()
        print("| chat TTFT | p50 alone | p50 loaded | ratio | p99 alone | p99 loaded | ratio |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for n in ttft:
            t = data[n][-1]
            cells = []
            for q in ("p50_ms", "p99_ms"):
                a, b = t["alone"][q], t["loaded"][q]
                cells += [f"{a:.0f} ms", f"{b:.0f} ms", f"{b / a:.2f}x"]
            print(f"| {n[5:]} | " + " | ".join(cells) + " |")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", nargs="+")
    ap.add_argument("--ttft")
    ap.add_argument("--json")
    ap.add_argument("--table")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--load")
    ap.add_argument("--samples", type=int, default=100)
    args = ap.parse_args()
    if args.table:
        table(args.table, args.rounds)
        return
    if args.load:
        await embed_load(args.load)
        return
    if args.ttft:
        name, url = args.ttft.rsplit("=", 1)
        alone = await ttft_phase(url, args.samples, False)
        loaded = await ttft_phase(url, args.samples, True)
        merge(args.json, f"ttft:{name}", {"alone": alone, "loaded": loaded})
        print(json.dumps({"alone": alone, "loaded": loaded}))
        return
    targets = [t.rsplit("=", 1) for t in args.targets]
    for r in range(args.rounds):
        results = {name: {} for name, _ in targets}
        for c, k in LEVELS:
            for name, url in targets[r % len(targets):] + targets[:r % len(targets)]:
                results[name][f"{c}x{k}"] = res = await throughput(url, c, k, args.seconds)
                print(r + 1, name, c, k, json.dumps(res), flush=True)
        for name, result in results.items():
            merge(args.json, name, result)

if __name__ == "__main__":
    asyncio.run(main())
