#!/usr/bin/env bash
# Installs the Python binding (bindings/python) that `cargo test
# --workspace` built, target/debug/deps/lib_native.so, into a virtual
# environment: the module beside the package's sources and a .pth file that
# puts them on the environment's path, as `maturin develop` would, without
# building llama.cpp again for the binding's narrower feature set.
# Usage: scripts/install-python-binding.sh [VENV]   (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
so=target/debug/deps/lib_native.so
if [[ ! -f "$so" ]]; then
  echo "$so is missing: run \`cargo test --workspace\` first" >&2
  exit 1
fi
py="$venv/bin/python"
"$py" -m pip uninstall --quiet --yes aitier >/dev/null 2>&1 || true
suffix="$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
cp "$so" "bindings/python/python/aitier/_native$suffix"
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$PWD/bindings/python/python" > "$site/aitier.pth"
"$py" -c 'import aitier; print("aitier binding:", aitier.__file__)'
