#!/usr/bin/env python3
"""Constrained decoding benchmark: decode tokens/s of JSON-Schema-constrained
requests against the same requests unconstrained, on one aitier server, at 1
and 8 concurrent streams, alternating rounds; and the per-token mask time
from the server's own counters.

    constrained.py --url URL --rounds N --out FILE
"""
import argparse
import asyncio
import statistics
import time

import httpx

MODEL = "smollm2-135m-instruct"
TOKENS = 128
NO_EOS = {"0": -100, "2": -100}
# Long enough that no output ends before TOKENS: every request decodes
# exactly TOKENS tokens in both modes.
SCHEMA = {
    "type": "object",
    "properties": {"notes": {"type": "array", "items": {"type": "string", "maxLength": 60},
                             "minItems": 64, "maxItems": 64}},
    "required": ["notes"],
}
TOPICS = ["a lighthouse", "a dragon", "the sea", "a robot", "a garden", "a city at night", "a mountain", "a violin"]


async def one(client, url, i, constrained):
    body = {"model": MODEL, "max_tokens": TOKENS, "temperature": 0, "logit_bias": NO_EOS,
            "messages": [{"role": "user", "content": f"Write notes about {TOPICS[i % len(TOPICS)]} as JSON."}]}
    if constrained:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "notes", "schema": SCHEMA}}
    r = await client.post(f"{url}/v1/chat/completions", json=body)
    r.raise_for_status()
    return r.json()["usage"]["completion_tokens"]


async def level(url, streams, constrained, per_stream=3):
    async with httpx.AsyncClient(timeout=600) as client:
        async def worker(w):
            return sum([await one(client, url, w * per_stream + k, constrained) for k in range(per_stream)])

        t0 = time.perf_counter()
        tokens = sum(await asyncio.gather(*(worker(w) for w in range(streams))))
        return tokens / (time.perf_counter() - t0)


def masks(url):
    got = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        for name in ("aitier_grammar_masks_total", "aitier_grammar_mask_microseconds_total"):
            if line.startswith(name + "{") and f'model="{MODEL}"' in line:
                got[name] = float(line.rsplit(" ", 1)[1])
    return got.get("aitier_grammar_masks_total", 0), got.get("aitier_grammar_mask_microseconds_total", 0)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:18080")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    await level(a.url, 1, True, 1)  # warm up: grammar caches, prefix cache
    rows = []
    for streams in (1, 8):
        free, held = [], []
        n0, us0 = masks(a.url)
        for _ in range(a.rounds):
            free.append(await level(a.url, streams, False))
            held.append(await level(a.url, streams, True))
        n1, us1 = masks(a.url)
        f, c = statistics.median(free), statistics.median(held)
        per_mask = (us1 - us0) / max(n1 - n0, 1)
        rows.append(f"| {streams} | {f:.1f} | {c:.1f} | {c / f:.2f}x | {per_mask:.0f} |")
        print(rows[-1], flush=True)
    with open(a.out, "w") as out:
        out.write("| streams | unconstrained tok/s | JSON Schema tok/s | ratio | mask µs per token |\n")
        out.write("| --- | --- | --- | --- | --- |\n")
        out.write("\n".join(rows) + "\n")


asyncio.run(main())
