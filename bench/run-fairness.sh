#!/usr/bin/env bash
# What fairness costs the busy tenant, at the machine's speed and slowed:
# the noisy-neighbour load of bench/load.py (A: 16 streams with
# ~1,500-token prompts, 128 tokens each; B: one short request a second)
# against aitier at each --step-tokens in STEPS and against llama-server, at
# 2 threads and at 1 (the slowed run), ROUNDS alternating rounds, a fresh
# server per measurement. Reports B's TTFT p99 under A against B alone, A's
# streamed tok/s against llama-server's, and aitier's engine tok/s under A's
# load (prompt and generated tokens per second of decoding, from the
# engine's `decode step` trace events). BEFORE=path adds the aitier binary
# at that path as a row (to compare with an earlier build), named
# BEFORE_LABEL. SLOTS and CTX set both servers' slots (20 of 2,048 tokens:
# more than A's streams; SLOTS=4 CTX=4096, aitier's default, is the case
# where A holds every slot). Writes OUT (bench/results/fairness.md).
# Usage: bench/run-fairness.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
SLOTS="${SLOTS:-20}"
CTX="${CTX:-2048}"
STEPS="${STEPS:-16 32 64}"
NN_SECONDS="${NN_SECONDS:-30}"
BEFORE_LABEL="${BEFORE_LABEL:-before (50 ms step target)}"
OUT="${OUT:-bench/results/fairness.md}"
MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"
work="${WORK:-bench/.work/fairness}"
mkdir -p "$work" bench/results

source bench/common.sh
bench_prepare
PEER="$(bench/peer/build-llama-server.sh)"


# name threads log: starts that server configuration on port 18080.
start() {
  local bin=target/release/aitier flags=()
  case "$1" in
    aitier-*)
      if [[ "$1" == aitier-before ]]; then bin="$BEFORE"; else flags=(--step-tokens "${1#aitier-steps-}"); fi
      RUST_LOG=info,aitier_engine=trace "$bin" serve --port 18080 --threads "$2" --slots "$SLOTS" \
        --ctx-size "$CTX" "${flags[@]}" --metrics-addr off --data-dir "$work/data" \
        --model "smollm2-135m-instruct=$MODEL" >"$3" 2>&1 </dev/null &
      pid=$!
      wait_up http://127.0.0.1:18080/ready
      ;;
    llama-server)
      "$PEER" -m "$MODEL" --port 18080 --threads "$2" --threads-batch "$2" -np "$SLOTS" \
        -c $((SLOTS * CTX)) --cont-batching >"$3" 2>&1 </dev/null &
      pid=$!
      wait_up http://127.0.0.1:18080/health
      ;;
  esac
}

# llama-server's run under A takes ~10 minutes at 2 threads (B waits
# behind whole prompts), so it runs in the first PEER_ROUNDS rounds only,
# at the thread counts in PEER_THREADS. FIRST_ROUND continues a stopped
# run, keeping the rounds measured.
PEER_ROUNDS="${PEER_ROUNDS:-1}"
PEER_THREADS="${PEER_THREADS:-2 1}"
FIRST_ROUND="${FIRST_ROUND:-1}"
THREAD_COUNTS="${THREAD_COUNTS:-2 1}"
[[ "$FIRST_ROUND" == 1 ]] && rm -f "$work"/*.json "$work"/*.log
for round in $(seq "$FIRST_ROUND" "$rounds"); do
  for threads in $THREAD_COUNTS; do
    names=""
    [[ -n "${BEFORE:-}" ]] && names="aitier-before"
    for s in $STEPS; do names="$names aitier-steps-$s"; done
    if [[ "$round" -le "$PEER_ROUNDS" && " $PEER_THREADS " == *" $threads "* ]]; then
      names="$names llama-server"
    fi
    for name in $names; do
      rm -rf "$work/data"
      start "$name" "$threads" "$work/$name-t$threads-r$round.log"
      .venv/bin/python bench/load.py --phase noisy --nn-seconds "$NN_SECONDS" \
        --target "$name=http://127.0.0.1:18080" --json "$work/$name-t$threads-r$round.json"
      stop
    done
  done
done

.venv/bin/python - "$work" "$SLOTS" "$CTX" "$NN_SECONDS" "$THREAD_COUNTS" "$BEFORE_LABEL" >"$OUT" <<'PY'
import glob, json, re, statistics, subprocess, sys
work, slots, ctx, nn, thread_counts, before_label = sys.argv[1:]
cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
date = subprocess.run(["date", "-u", "+%Y-%m-%d"], capture_output=True, text=True).stdout.strip()


def engine_rate(log):
    """Prompt and generated tokens per second of decoding in A's shared
    steps (B's own first-token steps left out)."""
    tokens = ms = 0.0
    for line in open(log, errors="replace"):
        if "decode step" not in line:
            continue
        f = dict(re.findall(r"(\w+)=([\w.]+)", re.sub(r"\x1b\[[0-9;]*m", "", line)))
        if f.get("short_only") == "false":
            tokens += int(f["tokens"])
            ms += float(f["ms"])
    return tokens / (ms / 1000) if ms else None


def label(name):
    if name == "aitier-before":
        return f"aitier, {before_label}"
    if name.startswith("aitier-steps-"):
        return f"aitier, --step-tokens {name.rsplit('-', 1)[1]}"
    return name


scarce = " when A holds every slot" if int(slots) < 16 else ""
print(f"# Fairness under the noisy neighbour{scarce}, at the machine's speed and slowed\n")
print(f"{date}, {cpu}, default model, {slots} slots of {ctx} tokens on both servers, a fresh server per")
print("measurement (`bench/run-fairness.sh`). A: 16 streams with ~1,500-token prompts, 128 tokens each;")
print(f"B: one 8-token request a second, {nn} of them alone, then {nn} under A. Medians over the rounds,")
print("which alternate. A's streamed tok/s: over the first 3 + " + nn + " s (A's 3 s head start, then one second per")
print("B request), however long B's requests take. Engine tok/s: prompt and generated tokens per second of")
print("decoding in A's steps.\n")
ms = lambda s: f"{s * 1000:.0f}"
# A's rate over the fixed window (the head start plus one second per B
# request), where the run recorded it; over B's whole run before that.
a_of = lambda r: r["b_noisy"][3] if len(r["b_noisy"]) > 3 else r["b_noisy"][2]
for threads in thread_counts.split():
    title = "2 threads" if threads == "2" else f"{threads} thread{'s' if threads != '1' else ''} (the slowed run)"
    print(f"## {title}\n")
    print("| server | rounds | B alone TTFT p50 / p99 ms | B under A TTFT p50 / p99 ms | B's p99 ratio | A's streamed tok/s | A × llama-server | engine tok/s |")
    print("|---|---:|---|---|---|---|---|---|")
    files = sorted(glob.glob(f"{work}/*-t{threads}-r*.json"))
    names = sorted({re.sub(rf"-t{threads}-r\d+\.json$", "", p.rsplit("/", 1)[1]) for p in files},
                   key=lambda n: (n == "llama-server", n != "aitier-before", len(n), n))
    rows, per_round = {}, {}
    for n in names:
        runs = [(json.load(open(p)), p[:-5] + ".log") for p in sorted(glob.glob(f"{work}/{n}-t{threads}-r*.json"))]
        med = lambda key, i: statistics.median(r[key][i] for r, _ in runs)
        rates = [x for x in (engine_rate(log) for _, log in runs) if x] if n != "llama-server" else []
        rows[n] = (len(runs), med("b_alone", 0), med("b_alone", 1), med("b_noisy", 0), med("b_noisy", 1),
                   statistics.median(r["b_noisy"][1] / r["b_alone"][1] for r, _ in runs),
                   statistics.median(a_of(r) for r, _ in runs),
                   statistics.median(rates) if rates else None)
        per_round[n] = ", ".join(f"{a_of(r):.1f} ({r['b_noisy'][1] / r['b_alone'][1]:.2f}×)" for r, _ in runs)
    peer = rows.get("llama-server", (None,) * 7)[6]
    for n, (k, a50, a99, b50, b99, ratio, tps, rate) in rows.items():
        vs = f"{tps / peer:.2f}" if peer else "—"
        eng = f"{rate:.0f}" if rate else "—"
        print(f"| {label(n)} | {k} | {ms(a50)} / {ms(a99)} | {ms(b50)} / {ms(b99)} | {ratio:.2f}× | {tps:.1f} | {vs} | {eng} |")
    print("\nEach round's A tok/s (B's p99 ratio):\n")
    for n, line in per_round.items():
        print(f"- {label(n)}: {line}")
    print()
PY
cat "$OUT"
