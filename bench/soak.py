#!/usr/bin/env python3
"""Soak: mixed load on the default models for a long while, sampling the
server's memory, descriptors and threads, then checking the ledger against
what the clients were told.

    soak.py --bin target/debug/aitier --minutes 30 --out bench/results/soak.md

Load (all at once, on one server with a SQLite ledger):
  * tenant `steady` (no limits): chat, streamed chat, embeddings, structured
    outputs (a JSON schema), streams cancelled after a few chunks, and bad
    requests (malformed JSON, an unknown model, temperature 5);
  * tenant `limited` (30 requests a minute) asked faster than that: 429s;
  * tenant `budgeted` (a small daily token budget): 429 insufficient_quota
    once it is spent.
Every request carries its own `x-request-id`, so each ledger row is matched
to the request that made it. Reported: RSS, open descriptors and threads
every minute; errors by kind, intended or not; ledger rows against requests;
token sums against the usage the clients received.
"""
import argparse
import asyncio
import json
import os
import re
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

MODEL = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
ADMIN = "admin-token-for-the-soak-run"
LISTEN = re.compile(r"^aitier listening on (http://\S+)$")
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}
TOPICS = ["the sea", "a city", "bread", "winter", "a library", "trains", "bees", "a garden"]


class Tally:
    def __init__(self):
        self.sent = []  # (request id, tenant, kind, status, usage or None, received completion tokens)
        self.errors = Counter()  # (kind, status, code)
        self.unexpected = []

    def add(self, rid, tenant, kind, status, usage=None, received=0, code=None, expected=True):
        self.sent.append((rid, tenant, kind, status, usage, received))
        if status != 200:
            self.errors[(kind, status, code)] += 1
            if not expected:
                self.unexpected.append((kind, status, code))


def proc_sample(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    field = lambda name: int(next(line.split()[1] for line in status.splitlines() if line.startswith(name)))
    return {"rss_mib": field("VmRSS:") / 1024, "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": field("Threads:")}


async def call(http, tally, tenant, key, kind, path, body, expected=(200,)):
    rid = f"soak-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {key}", "x-request-id": rid}
    try:
        if isinstance(body, bytes):
            r = await http.post(path, content=body, headers={**headers, "content-type": "application/json"})
        else:
            r = await http.post(path, json=body, headers=headers)
    except httpx.HTTPError as e:
        tally.add(rid, tenant, kind, 0, code=type(e).__name__, expected=False)
        return
    code = None
    usage = None
    if r.status_code == 200:
        usage = r.json().get("usage")
    else:
        try:
            code = r.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "unparsed"
    tally.add(rid, tenant, kind, r.status_code, usage, code=code, expected=r.status_code in expected)


async def stream(http, tally, tenant, key, body, cancel_after=None):
    kind = "cancelled stream" if cancel_after else "stream"
    rid = f"soak-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {key}", "x-request-id": rid}
    body = dict(body, stream=True, stream_options={"include_usage": True})
    received, usage, done, error = 0, None, False, None
    try:
        async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            if r.status_code != 200:
                await r.aread()
                tally.add(rid, tenant, kind, r.status_code, code=r.json()["error"]["code"], expected=r.status_code == 429)
                return
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    error = event["error"].get("code")
                    break
                if event.get("usage"):
                    usage = event["usage"]
                if event.get("choices") and event["choices"][0]["delta"].get("content"):
                    received += 1
                    if cancel_after and received >= cancel_after:
                        break
    except httpx.HTTPError as e:
        tally.add(rid, tenant, kind, 0, code=type(e).__name__, expected=False)
        return
    if cancel_after and not done:
        tally.add(rid, tenant, kind, 200, None, received)
    elif done and usage:
        tally.add(rid, tenant, kind, 200, usage, received)
    else:
        tally.add(rid, tenant, kind, 500, code=error or "no [DONE]", expected=False)


def chat(topic, max_tokens):
    return {"model": MODEL, "messages": [{"role": "user", "content": f"Write two sentences about {topic}."}], "max_tokens": max_tokens}


async def worker(name, stop, http, tally, keys):
    i = 0
    while time.monotonic() < stop:
        i += 1
        topic = TOPICS[i % len(TOPICS)]
        if name == "chat":
            await call(http, tally, "steady", keys["steady"], "chat", "/v1/chat/completions", chat(topic, 16 + i % 48))
        elif name == "stream":
            await stream(http, tally, "steady", keys["steady"], chat(topic, 64 + i % 64))
        elif name == "embed":
            body = {"model": EMBED, "input": [f"{t} {i}" for t in TOPICS[:4]]}
            await call(http, tally, "steady", keys["steady"], "embeddings", "/v1/embeddings", body)
        elif name == "structured":
            body = dict(chat(topic, 64), response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}})
            await call(http, tally, "steady", keys["steady"], "structured", "/v1/chat/completions", body)
        elif name == "cancel-and-bad":
            await stream(http, tally, "steady", keys["steady"], chat(topic, 200), cancel_after=3 + i % 5)
            bad = [
                ("malformed", b'{"model": "x", "messages": [', (400,)),
                ("unknown model", dict(chat(topic, 4), model="no-such-model"), (404,)),
                ("bad temperature", dict(chat(topic, 4), temperature=5), (400,)),
            ][i % 3]
            await call(http, tally, "steady", keys["steady"], bad[0], "/v1/chat/completions", bad[1], expected=bad[2])
        elif name == "limited":
            await call(http, tally, "limited", keys["limited"], "limited chat", "/v1/chat/completions", chat(topic, 4), expected=(200, 429))
            await asyncio.sleep(0.5)
        elif name == "budgeted":
            await call(http, tally, "budgeted", keys["budgeted"], "budgeted chat", "/v1/chat/completions", chat(topic, 32), expected=(200, 429))
            await asyncio.sleep(0.5)


async def sampler(stop, pid, metrics_url, samples, start):
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            s = proc_sample(pid)
            text = (await http.get(metrics_url)).text
            for name in ("aitier_runtime_tasks", "aitier_sequences_running", "aitier_ledger_pending"):
                s[name] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))
            s["minute"] = (time.monotonic() - start) / 60
            samples.append(s)
            if time.monotonic() >= stop:
                return
            await asyncio.sleep(min(60, max(0.1, stop - time.monotonic())))


def start_server(binary, data, log):
    proc = subprocess.Popen(
        [binary, "serve", "--port", "0", "--metrics-addr", "127.0.0.1:0", "--data-dir", str(data), "--admin-token", ADMIN,
         "--read-timeout", "10s", "--write-timeout", "10s"],
        stdout=subprocess.PIPE, stderr=log, text=True, env=dict(os.environ, RUST_LOG="info,llama-cpp-2=warn"))
    url = metrics = None
    while url is None or metrics is None:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("the server stopped while starting; see its log")
        if m := LISTEN.match(line.strip()):
            url = m.group(1)
        elif line.startswith("aitier metrics on "):
            metrics = line.split()[-1]
    for _ in range(600):
        if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
            return proc, url, metrics
        time.sleep(0.2)
    raise SystemExit("the server never became ready")


def ledger_check(db_path, tally):
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT request_id, status, prompt_tokens, completion_tokens FROM usage_records").fetchall()
    by_id = Counter(r[0] for r in rows)
    row = {r[0]: r for r in rows}
    doubled = sum(1 for n in by_id.values() if n > 1)
    sent_ids = {s[0] for s in tally.sent}
    strays = [rid for rid in by_id if rid not in sent_ids]
    need = [s for s in tally.sent if s[3] in (200, 429)]
    missing = [s for s in need if s[0] not in row]
    # Answers received whole: the ledger bills exactly what the client was told.
    whole = [s for s in need if s[3] == 200 and s[4]]
    billed = sum(row[s[0]][2] + row[s[0]][3] for s in whole if s[0] in row)
    told = sum(s[4].get("prompt_tokens", 0) + s[4].get("completion_tokens", 0) for s in whole)
    mismatched = [s[0] for s in whole if s[0] in row and (row[s[0]][2], row[s[0]][3]) != (s[4].get("prompt_tokens", 0), s[4].get("completion_tokens", 0))]
    cancelled = [s for s in need if s[2] == "cancelled stream"]
    under = [s[0] for s in cancelled if s[0] in row and row[s[0]][3] < s[5]]
    statuses = Counter(r[1] for r in rows)
    return {
        "rows": len(rows), "requests needing a row": len(need), "missing": len(missing), "doubled": doubled, "strays": len(strays),
        "tokens billed (whole answers)": billed, "tokens told to clients": told, "rows differing from the client's usage": len(mismatched),
        "cancelled billed under what was received": len(under), "rows by status": dict(statuses),
        "bad requests with a row": sum(1 for s in tally.sent if s[3] in (400, 404) and s[0] in row),
    }


def report(args, samples, tally, ledger, seconds):
    lines = [f"# Soak: {args.minutes} minutes of mixed load", "",
             f"`bench/soak.py --minutes {args.minutes}` on this machine, debug build (dependencies optimised), SQLite ledger, "
             f"{len(tally.sent)} requests in {seconds / 60:.1f} minutes.", "",
             "| minute | RSS MiB | fds | threads | runtime tasks | sequences running | ledger pending |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in samples:
        lines.append(f"| {s['minute']:.1f} | {s['rss_mib']:.1f} | {s['fds']} | {s['threads']} | {s['aitier_runtime_tasks']:.0f} | {s['aitier_sequences_running']:.0f} | {s['aitier_ledger_pending']:.0f} |")
    warm = [s for s in samples if s["minute"] >= min(5, args.minutes / 3)]
    if warm:
        rss = [s["rss_mib"] for s in warm]
        lines += ["", f"After warm-up: RSS {min(rss):.1f}–{max(rss):.1f} MiB (first {warm[0]['rss_mib']:.1f}, last {warm[-1]['rss_mib']:.1f}); "
                  f"fds {min(s['fds'] for s in warm)}–{max(s['fds'] for s in warm)}; threads {min(s['threads'] for s in warm)}–{max(s['threads'] for s in warm)}; "
                  f"runtime tasks {min(s['aitier_runtime_tasks'] for s in warm):.0f}–{max(s['aitier_runtime_tasks'] for s in warm):.0f}."]
    kinds = Counter(s[2] for s in tally.sent)
    lines += ["", "## Requests", "", "| kind | sent |", "| --- | ---: |"] + [f"| {k} | {n} |" for k, n in sorted(kinds.items())]
    lines += ["", "## Answers other than 200", "", "| kind | status | code | count | intended |", "| --- | ---: | --- | ---: | --- |"]
    unexpected = Counter(tally.unexpected)
    for (kind, status, code), n in sorted(tally.errors.items(), key=lambda kv: (kv[0][0], kv[0][1], str(kv[0][2]))):
        lines.append(f"| {kind} | {status} | {code} | {n} | {'no' if unexpected[(kind, status, code)] else 'yes'} |")
    lines += ["", "## Ledger against requests", ""] + [f"- {k}: {v}" for k, v in ledger.items()]
    return "\n".join(lines) + "\n"


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/aitier")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--out", default="bench/results/soak.md")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    log = open(work / "server.log", "w")
    proc, url, metrics = start_server(args.bin, work / "data", log)
    print(f"server at {url}, log {work / 'server.log'}", flush=True)
    tally = Tally()
    try:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        keys = {}
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            for name, limits in [("steady", {}), ("limited", {"rpm": 20}), ("budgeted", {"budget_tokens": 20000, "budget_period": "day"})]:
                assert (await http.post("/admin/v1/tenants", json={"name": name, **limits}, headers=admin)).status_code == 201
                keys[name] = (await http.post(f"/admin/v1/tenants/{name}/keys", headers=admin)).json()["key"]
            start = time.monotonic()
            stop = start + args.minutes * 60
            samples = []
            names = ["chat", "stream", "embed", "structured", "cancel-and-bad", "limited", "budgeted"]
            await asyncio.gather(sampler(stop, proc.pid, metrics, samples, start), *(worker(n, stop, http, tally, keys) for n in names))
            seconds = time.monotonic() - start
            for _ in range(100):
                text = (await http.get(metrics)).text
                if "aitier_ledger_pending 0" in text:
                    break
                await asyncio.sleep(0.1)
            final = (await http.get(metrics)).text
            tasks = next(float(line.split()[-1]) for line in final.splitlines() if line.startswith("aitier_runtime_tasks "))
            samples.append(dict(proc_sample(proc.pid), minute=seconds / 60, aitier_runtime_tasks=tasks, aitier_sequences_running=0, aitier_ledger_pending=0))
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    ledger = ledger_check(work / "data" / "aitier.db", tally)
    out = report(args, samples, tally, ledger, seconds)
    Path(args.out).write_text(out)
    print(out)


if __name__ == "__main__":
    asyncio.run(main())
