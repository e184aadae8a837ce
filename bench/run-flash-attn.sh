#!/usr/bin/env bash
# Flash attention on the CPU under the noisy-neighbour load of bench/load.py
# (A: 16 streams with ~1,500-token prompts, 128 tokens each; B: one short
# request per second): aitier with flash attention on and off at 2 threads
# and at 1 (the slowed run), and llama-server with its default (auto: on)
# at 2 threads (PEERS="llama-server-fa-auto llama-server-fa-off" and
# PEER_THREADS="2 1" for more), ROUNDS alternating rounds, a fresh server
# for each measurement. Writes bench/results/flash-attn.md; each row says
# how many rounds it is the median of.
# Usage: bench/run-flash-attn.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"
SLOTS="${SLOTS:-20}"
CTX="${CTX:-2048}"
NN_SECONDS="${NN_SECONDS:-30}"
MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"
work=bench/.work/flash-attn
mkdir -p "$work" bench/results

source bench/common.sh
bench_prepare
PEER="$(bench/peer/build-llama-server.sh)"


# name threads: starts that server configuration on port 18080.
start() {
  case "$1" in
    aitier-fa-*)
      target/release/aitier serve --port 18080 --threads "$2" --slots "$SLOTS" --ctx-size "$CTX" \
        --flash-attn "${1#aitier-fa-}" --metrics-addr off --data-dir "$work/aitier-data" \
        --model "smollm2-135m-instruct=$MODEL" >"$work/$1-$2.log" 2>&1 </dev/null &
      pid=$!
      wait_up http://127.0.0.1:18080/ready
      ;;
    llama-server-fa-*)
      "$PEER" -m "$MODEL" --port 18080 --threads "$2" --threads-batch "$2" -np "$SLOTS" \
        -c $((SLOTS * CTX)) --cont-batching -fa "${1#llama-server-fa-}" >"$work/$1-$2.log" 2>&1 </dev/null &
      pid=$!
      wait_up http://127.0.0.1:18080/health
      ;;
  esac
}

# llama-server's run under A takes ~10 minutes (B waits behind whole
# prompts), so it runs in the first PEER_ROUNDS rounds only. FIRST_ROUND
# continues a run that was stopped, keeping the rounds already measured.
PEERS="${PEERS:-llama-server-fa-auto}"
PEER_THREADS="${PEER_THREADS:-2}"
PEER_ROUNDS="${PEER_ROUNDS:-1}"
FIRST_ROUND="${FIRST_ROUND:-1}"
[[ "$FIRST_ROUND" == 1 ]] && rm -f "$work"/*.json
for round in $(seq "$FIRST_ROUND" "$rounds"); do
  for threads in 2 1; do
    names="aitier-fa-off aitier-fa-on"
    if [[ " $PEER_THREADS " == *" $threads "* && "$round" -le "$PEER_ROUNDS" ]]; then
      names="$names $PEERS"
    fi
    for name in $names; do
      start "$name" "$threads"
      .venv/bin/python bench/load.py --phase noisy --nn-seconds "$NN_SECONDS" \
        --target "$name=http://127.0.0.1:18080" --json "$work/$name-t$threads-r$round.json"
      stop
    done
  done
done

.venv/bin/python - "$work" "$rounds" "$SLOTS" "$CTX" "$NN_SECONDS" >bench/results/flash-attn.md <<'EOF'
import glob, json, statistics, subprocess, sys
work, rounds, slots, ctx, nn = sys.argv[1:]
cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
date = subprocess.run(["date", "-u", "+%Y-%m-%d"], capture_output=True, text=True).stdout.strip()
names = ["aitier-fa-off", "aitier-fa-on", "llama-server-fa-auto", "llama-server-fa-off"]
print("# Flash attention on the CPU, under the noisy neighbour\n")
print(f"{date}, {cpu}, default model, {slots} slots of {ctx} tokens on both servers, a fresh server per")
print(f"measurement (`bench/run-flash-attn.sh`). A: 16 streams with ~1,500-token prompts, 128 tokens")
print(f"each; B: one 8-token request a second, {nn} of them alone, then {nn} under A. Medians over")
print("the rounds, which alternate; llama-server's `auto` turns flash attention on for the CPU, as aitier's does.\n")
ms = lambda s: f"{s * 1000:.0f}"
for threads in ("2", "1"):
    title = "2 threads" if threads == "2" else "1 thread (the slowed run)"
    print(f"## {title}\n")
    print("| server | flash attention | rounds | B alone TTFT p50 / p99 ms | B under A TTFT p50 / p99 ms | B's p99 ratio | A's streamed tok/s | A's tok/s × llama-server (auto) |")
    print("|---|---|---:|---|---|---|---|---|")
    rows, rounds_of = {}, {}
    for n in names:
        runs = [json.load(open(p)) for p in sorted(glob.glob(f"{work}/{n}-t{threads}-r*.json"))]
        if not runs:
            continue
        rounds_of[n] = runs
        med = lambda key, i: statistics.median(r[key][i] for r in runs)
        rows[n] = [len(runs), med("b_alone", 0), med("b_alone", 1), med("b_noisy", 0), med("b_noisy", 1),
                   statistics.median(r["b_noisy"][1] / r["b_alone"][1] for r in runs), med("b_noisy", 2)]
    peer = rows.get("llama-server-fa-auto", [None] * 7)[6]
    for n, (k, a50, a99, b50, b99, ratio, tps) in rows.items():
        server, fa = n.rsplit("-fa-", 1)
        vs = f"{tps / peer:.2f}" if peer else "—"
        print(f"| {server} | {fa} | {k} | {ms(a50)} / {ms(a99)} | {ms(b50)} / {ms(b99)} | {ratio:.2f} | {tps:.1f} | {vs} |")
    print()
    print("Each round's A tok/s and B's p99 ratio:\n")
    for n, runs in rounds_of.items():
        per = ", ".join(f"{r['b_noisy'][2]:.1f} ({r['b_noisy'][1] / r['b_alone'][1]:.2f})" for r in runs)
        print(f"- {n}: {per}")
    print()
EOF
cat bench/results/flash-attn.md
