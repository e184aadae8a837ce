#!/usr/bin/env python3
"""Scheduler benchmark: aitier against llama.cpp's llama-server, same model,
same threads, same prompts, temperature 0, measured in one run.

    load.py --target NAME=URL --phase P --json FILE   measure one server
                                    (P: levels, prefix or noisy; merged into FILE)
    load.py --table A.json B.json [--ceiling F] [--rss F] [--out FILE]
                                    the comparison table (with llama-bench's
                                    tg128 rates and the servers' VmRSS)

For each target:
  * aggregate generated tokens/s, TTFT p50/p99 and one stream's decode rate
    after its first token at 1, 2, 4, 8, 16 concurrent streams of 128
    tokens (end-of-text banned so every request generates exactly 128);
  * noisy neighbour: tenant A keeps 16 streams with ~1,500-token prompts busy
    while tenant B sends one short request per second; B's TTFT p50/p99 is
    compared with B alone, and A's streamed tokens/s over a fixed window
    (--a-seconds) shown beside it;
  * prefix cache: TTFT of a request repeating a ~500-token system prompt,
    cold (first time) against warm.
Ratios in the table are first / last. Each levels run is appended to FILE
and the table shows the median of the runs per level.
"""
import argparse
import asyncio
import json
import statistics
import time

import httpx

MODEL = "smollm2-135m-instruct"
TOPICS = ["a lighthouse", "a dragon", "the sea", "a robot", "a garden", "a city at night",
          "a mountain", "a violin", "a train", "a desert", "a library", "a storm",
          "a fox", "a bakery", "a comet", "a river", "a clock", "a ship", "a forest", "a bridge"]
NO_EOS = {"0": -100, "2": -100}
# A new connection per request: peers differ in how long they keep idle ones.
NO_KEEPALIVE = httpx.Limits(max_connections=64, max_keepalive_connections=0)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


async def stream_chat(client, url, messages, max_tokens, user=None, seen=None):
    """Returns (ttft_s, completion_tokens, total_s); counts content chunks in
    seen[0] as they arrive, so a cancelled stream's tokens still count."""
    body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True},
            "logit_bias": NO_EOS, "ignore_eos": True}
    if user:
        body["user"] = user
    t0 = time.perf_counter()
    ttft = None
    tokens = 0
    chunks = 0
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line.strip() == "data: [DONE]":
                continue
            c = json.loads(line[6:])
            if c.get("usage"):
                tokens = c["usage"]["completion_tokens"]
            for ch in c.get("choices") or []:
                if (ch.get("delta") or {}).get("content"):
                    chunks += 1
                    if seen is not None:
                        seen[0] += 1
                    if ttft is None:
                        ttft = time.perf_counter() - t0
    return ttft, tokens or chunks, time.perf_counter() - t0


async def concurrency_level(url, c, per_worker):
    async with httpx.AsyncClient(timeout=600, limits=NO_KEEPALIVE) as client:
        ttfts, rates, total = [], [], 0

        async def worker(w):
            nonlocal total
            for i in range(per_worker):
                topic = TOPICS[(w * per_worker + i) % len(TOPICS)]
                msgs = [{"role": "user", "content": f"Write a long story about {topic}."}]
                ttft, n, took = await stream_chat(client, url, msgs, 128)
                ttfts.append(ttft)
                # What one stream sees once it has started: the tokens after
                # the first over the time after the first.
                rates.append((n - 1) / (took - ttft))
                total += n

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(c)))
        wall = time.perf_counter() - t0
    return total / wall, pct(ttfts, 50), pct(ttfts, 99), statistics.median(rates)


def long_prompt(i, words=400):
    text = " ".join(f"{TOPICS[(i + k) % len(TOPICS)].split()[-1]}{k}" for k in range(words))
    return [{"role": "user", "content": f"Summarise these notes ({i}): {text}"}]


async def noisy_neighbour(url, seconds, with_noise, a_seconds=0):
    async with httpx.AsyncClient(timeout=600, limits=NO_KEEPALIVE) as client:
        stop = asyncio.Event()

        a_tokens = [0]

        async def tenant_a(w):
            i = 0
            while not stop.is_set():
                await stream_chat(client, url, long_prompt(w * 1000 + i), 128, user="tenant-a", seen=a_tokens)
                i += 1

        async def quiet(w):
            try:
                await tenant_a(w)
            except (httpx.HTTPError, asyncio.CancelledError):
                pass

        t_start = time.perf_counter()
        a_tasks = [asyncio.create_task(quiet(w)) for w in range(16)] if with_noise else []
        # A's rate over the same window for every server, however long B's
        # requests take: the 3 s head start plus one second per B request,
        # or a_seconds from A's start if longer (A's first prompts are all
        # prefill: a short window measures little else).
        window = max(3 + seconds, a_seconds)
        a_window = []

        async def snapshot():
            await asyncio.sleep(window)
            a_window.append(a_tokens[0] / window)

        snap = asyncio.create_task(snapshot())
        if with_noise:
            await asyncio.sleep(3)  # let A fill the engine first
        b_ttfts = []
        for k in range(seconds):
            t_next = time.perf_counter() + 1.0
            msgs = [{"role": "user", "content": f"Say hello to visitor {k}."}]
            ttft, _, _ = await stream_chat(client, url, msgs, 8, user="tenant-b")
            b_ttfts.append(ttft)
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
        if with_noise:
            await asyncio.wait([snap])
        stop.set()
        a_rate = a_tokens[0] / (time.perf_counter() - t_start)
        snap.cancel()
        for t in a_tasks:
            t.cancel()
        await asyncio.gather(*a_tasks, return_exceptions=True)
    # A's rate over the whole phase, and over the fixed window; B's TTFTs in
    # order, to see which requests make the tail.
    return pct(b_ttfts, 50), pct(b_ttfts, 99), a_rate, a_window[0] if a_window else a_rate, b_ttfts


async def prefix_cache(url):
    system = "You are the support assistant of a hardware shop. Rules:\n" + "".join(
        f"{i}. Answer politely about product line {i}, its warranty and its spare parts.\n" for i in range(1, 41))
    async with httpx.AsyncClient(timeout=600, limits=NO_KEEPALIVE) as client:
        cold, _, _ = await stream_chat(client, url, [{"role": "system", "content": system},
                                                  {"role": "user", "content": "Do you sell drills?"}], 4)
        warm = []
        for q in ["Where is my order?", "Can I return a saw?", "Do you open on Sunday?"]:
            t, _, _ = await stream_chat(client, url, [{"role": "system", "content": system},
                                                   {"role": "user", "content": q}], 4)
            warm.append(t)
    return cold, statistics.median(warm)


async def run_phase(name, url, phase, levels, per_worker, nn_seconds, a_seconds):
    res = {}
    async with httpx.AsyncClient(timeout=600, limits=NO_KEEPALIVE) as client:  # warm-up
        await stream_chat(client, url, [{"role": "user", "content": "Hi"}], 8)
    if phase == "levels":
        res["levels"] = {}
        for c in levels:
            res["levels"][c] = await concurrency_level(url, c, per_worker)
            print(f"{name} c={c}: {res['levels'][c][0]:.1f} tok/s, TTFT p50 {res['levels'][c][1]*1000:.0f} ms", flush=True)
    elif phase == "prefix":
        res["prefix"] = await prefix_cache(url)
        print(f"{name} prefix cache: cold {res['prefix'][0]*1000:.0f} ms warm {res['prefix'][1]*1000:.0f} ms", flush=True)
    elif phase == "noisy":
        res["b_alone"] = await noisy_neighbour(url, nn_seconds, False)
        res["b_noisy"] = await noisy_neighbour(url, nn_seconds, True, a_seconds)
        print(f"{name} B alone p99 {res['b_alone'][1]*1000:.0f} ms, under A p99 {res['b_noisy'][1]*1000:.0f} ms", flush=True)
        print(f"{name} B under A, each TTFT ms: {[round(t * 1000) for t in res['b_noisy'][4]]}", flush=True)
    return res


def median_of(path):
    """The median of the numbers on the lines of PATH."""
    with open(path) as f:
        return statistics.median(float(x) for x in f.read().split())


def rss_rows(path, names):
    """PATH: lines of server, phase, MiB at start, MiB after. One row per
    server: each phase's start and after (the median where it ran in rounds)."""
    by = {}
    with open(path) as f:
        for line in f:
            n, phase, start, after = line.split()
            by.setdefault((n, phase), []).append((float(start), float(after)))
    phases = list(dict.fromkeys(p for _, p in by))
    out = ["## Resident memory (VmRSS, MiB: when the server answers / after the phase)", "",
           "| server | " + " | ".join(phases) + " |", "|---|" + "---:|" * len(phases)]
    for n in names:
        cells = []
        for p in phases:
            v = by.get((n, p), [])
            cells.append(f"{statistics.median(a for a, _ in v):.0f} / {statistics.median(b for _, b in v):.0f}"
                         if v else "")
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return out


def table(results, levels, ceiling=None, rss=None):
    names = list(results)
    first, last = names[0], names[-1]
    ms = lambda s: f"{s * 1000:.0f}"
    out = []
    if ceiling is not None:
        # The engine with no server around it, on the same model and threads.
        out += ["## One stream against the engine's ceiling", "",
                "| | decode tok/s | × llama-bench tg128 |", "|---|---:|---:|",
                f"| llama-bench tg128 (median of rounds) | {ceiling:.1f} | 1.00 |"]
        for n in names:
            rate = results[n]["levels"][1][3]
            out.append(f"| {n}, one stream, after its first token | {rate:.1f} | {rate / ceiling:.2f} |")
        out.append("")
    head = " | ".join(f"{n} tok/s | {n} TTFT p50 / p99 ms | {n} per-stream tok/s" for n in names)
    out += ["## Aggregate throughput (max_tokens 128, temperature 0)", "",
            f"| streams | {head} | {first}/{last} tok/s | {first}/{last} TTFT p99 |",
            "|---|" + "---|" * (3 * len(names)) + "---|---|"]
    for c in levels:
        row = [str(c)]
        for n in names:
            v = results[n]["levels"][c]
            row += [f"{v[0]:.1f}", f"{ms(v[1])} / {ms(v[2])}", f"{v[3]:.1f}"]
        f, l = results[first]["levels"][c], results[last]["levels"][c]
        row += [f"{f[0] / l[0]:.2f}", f"{f[2] / l[2]:.2f}"]
        out.append("| " + " | ".join(row) + " |")
    out += ["", "## Noisy neighbour (A: 16 streams, ~1,500-token prompts; B: one short request per second)", "",
            "| server | B alone TTFT p50 / p99 ms | B under A TTFT p50 / p99 ms | p99 ratio | A's streamed tok/s |",
            "|---|---|---|---|---|"]
    for n in names:
        a, b = results[n]["b_alone"], results[n]["b_noisy"]
        out.append(f"| {n} | {ms(a[0])} / {ms(a[1])} | {ms(b[0])} / {ms(b[1])} | {b[1] / a[1]:.2f} | {b[3]:.1f} |")
    out += ["", "## Prefix cache (~800-token system prompt repeated)", "",
            "| server | cold TTFT ms | warm TTFT ms (median of 3) | warm/cold |", "|---|---|---|---|"]
    for n in names:
        cold, warm = results[n]["prefix"]
        out.append(f"| {n} | {ms(cold)} | {ms(warm)} | {warm / cold:.2f} |")
    if rss is not None:
        out += [""] + rss_rows(rss, names)
    return "\n".join(out) + "\n"


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", help="NAME=URL")
    ap.add_argument("--json", help="where --target's results go")
    ap.add_argument("--phase", choices=["levels", "prefix", "noisy"])
    ap.add_argument("--table", nargs="+", help="result files to compare, ours first")
    ap.add_argument("--levels", default="1,2,4,8,16")
    ap.add_argument("--per-worker", type=int, default=2, help="requests per concurrent stream")
    ap.add_argument("--nn-seconds", type=int, default=20)
    ap.add_argument("--a-seconds", type=int, default=0,
                    help="A's rate over this many seconds from its start, if longer than B's run")
    ap.add_argument("--ceiling", help="llama-bench tg128 tok/s, one per line (with --table)")
    ap.add_argument("--rss", help="server, phase, MiB at start, MiB after, one per line (with --table)")
    ap.add_argument("--out")
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    if a.target:
        name, url = a.target.split("=", 1)
        res = await run_phase(name, url, a.phase, levels, a.per_worker, a.nn_seconds, a.a_seconds)
        try:
            with open(a.json) as f:
                old = json.load(f)
        except FileNotFoundError:
            old = {"name": name}
        if "levels" in res:
            # Rounds alternate between the servers; each level reports the
            # median round, so one slow moment of the machine skews neither.
            run = {str(c): v for c, v in res.pop("levels").items()}
            runs = old.get("level_runs", []) + [run]
            old["level_runs"] = runs
            old["levels"] = {c: [statistics.median(r[str(c)][i] for r in runs) for i in range(len(run[str(c)]))]
                             for c in levels}
        old.update(res)
        with open(a.json, "w") as f:
            json.dump(old, f)
        return
    results = {}
    for path in a.table:
        with open(path) as f:
            r = json.load(f)
        r["levels"] = {int(k): v for k, v in r["levels"].items()}
        results[r.pop("name")] = r
    ceiling = median_of(a.ceiling) if a.ceiling else None
    md = table(results, sorted(results[next(iter(results))]["levels"]), ceiling, a.rss)
    print(md)
    if a.out:
        with open(a.out, "w") as f:
            f.write(md)


if __name__ == "__main__":
    asyncio.run(main())
