#!/usr/bin/env python3
"""Prefix-aware routing against least-outstanding routing: one aitier whose
model has two local engine deployments (the same GGUF, an engine each),
8 tenants each with its own ~800-token system prompt, a closed loop of
CONCURRENCY streams sending each tenant's requests in a seeded random order.

    prefix_routing.py --url URL --admin TOKEN --label NAME --json FILE

Per run: the prefix-cache hit ratio (prompt tokens served from the cache
over all prompt tokens, from each response's usage), time to first token
(mean, p50, p90), requests per deployment, wall time. Appended to FILE;
`--table FILE` prints the committed table from all runs in it.
"""
import argparse
import asyncio
import json
import random
import statistics
import time

import httpx

TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka"]
DOMAINS = ["invoices", "shipping", "warranty", "returns", "accounts", "billing", "repairs", "orders"]
QUESTIONS = ["Where is my order?", "How do I return an item?", "Can I change my address?",
             "Why was I charged twice?", "Is this covered by warranty?", "How do I reset my password?"]


def system_prompt(i):
    """A distinct prompt of ~800 tokens: the tenant's own rules."""
    t, d = TENANTS[i], DOMAINS[i]
    rules = [f"Rule {k} for {t}: when a customer asks about {d} item {k * 7 + i}, check the "
             f"{t} {d} record {k}, answer in two sentences, and never promise more than "
             f"{k + 2} days." for k in range(17)]
    return f"You are the {d} assistant of {t.title()} Corporation.\n" + "\n".join(rules)


async def one(client, url, tenant, question):
    body = {"model": "m", "max_tokens": 16, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": system_prompt(tenant)},
                         {"role": "user", "content": question}]}
    t0 = time.perf_counter()
    ttft, usage = None, None
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line.strip() == "data: [DONE]":
                continue
            c = json.loads(line[6:])
            if c.get("usage"):
                usage = c["usage"]
            if ttft is None and any((ch.get("delta") or {}).get("content") for ch in c.get("choices") or []):
                ttft = time.perf_counter() - t0
    cached = ((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return ttft, usage["prompt_tokens"], cached


async def run(url, admin, per_tenant, concurrency, seed):
    rng = random.Random(seed)
    work = [(t, QUESTIONS[k % len(QUESTIONS)]) for t in range(len(TENANTS)) for k in range(per_tenant)]
    rng.shuffle(work)
    queue = asyncio.Queue()
    for w in work:
        queue.put_nowait(w)
    results = []
    async with httpx.AsyncClient(timeout=600) as client:
        async def worker():
            while not queue.empty():
                tenant, q = queue.get_nowait()
                results.append(await one(client, url, tenant, q))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        models = (await client.get(f"{url}/admin/v1/models",
                                   headers={"authorization": f"Bearer {admin}"})).json()
    m = next(x for x in models["data"] if x["id"] == "m")
    split = {d["name"]: d["stats"]["requests_finished"] for d in m["deployments"]}
    ttfts = sorted(r[0] for r in results)
    prompt = sum(r[1] for r in results)
    cached = sum(r[2] for r in results)
    return {
        "requests": len(results),
        "prompt_tokens_mean": prompt / len(results),
        "hit_ratio": cached / prompt,
        "ttft_mean_ms": 1000 * statistics.mean(ttfts),
        "ttft_p50_ms": 1000 * ttfts[len(ttfts) // 2],
        "ttft_p90_ms": 1000 * ttfts[int(len(ttfts) * 0.9)],
        "wall_s": wall,
        "per_deployment": split,
    }


def table(path):
    runs = [json.loads(line) for line in open(path)]
    by = {}
    for r in runs:
        by.setdefault(r["label"], []).append(r)
    print("| routing | runs | cache hit ratio | TTFT mean (ms) | TTFT p50 / p90 (ms) | wall (s) | requests per deployment |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, rs in by.items():
        hit = ", ".join(f"{r['hit_ratio']:.2f}" for r in rs)
        mean = ", ".join(f"{r['ttft_mean_ms']:.0f}" for r in rs)
        pcts = ", ".join(f"{r['ttft_p50_ms']:.0f} / {r['ttft_p90_ms']:.0f}" for r in rs)
        wall = ", ".join(f"{r['wall_s']:.1f}" for r in rs)
        split = ", ".join("/".join(str(v) for v in r["per_deployment"].values()) for r in rs)
        print(f"| {label} | {len(rs)} | {hit} | {mean} | {pcts} | {wall} | {split} |")
    labels = list(by)
    print()
    for prefix, other in zip(labels[0::2], labels[1::2]):
        a, b = (statistics.median(r["ttft_mean_ms"] for r in by[x]) for x in (prefix, other))
        ha, hb = (statistics.median(r["hit_ratio"] for r in by[x]) for x in (prefix, other))
        print(f"- {prefix} against {other}: TTFT mean {a / b:.2f}x (medians of the runs), "
              f"hit ratio {ha:.2f} against {hb:.2f}.")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--admin")
    ap.add_argument("--label")
    ap.add_argument("--json")
    ap.add_argument("--per-tenant", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--table")
    a = ap.parse_args()
    if a.table:
        table(a.table)
        return
    r = asyncio.run(run(a.url, a.admin, a.per_tenant, a.concurrency, a.seed))
    r["label"] = a.label
    print(json.dumps(r))
    with open(a.json, "a") as f:
        f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
