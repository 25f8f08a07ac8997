# Sourced by the scripts: where the virtualenv, LibTorch and the compiler cache live.
PHI_CACHE_DIR=${PHI_CACHE_DIR:-$HOME/.cache/phi-engine}
export PHI_VENV=${PHI_VENV:-$PHI_CACHE_DIR/venv}
export CCACHE_DIR=${CCACHE_DIR:-$PHI_CACHE_DIR/ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
# Paths under the checkout are hashed relative to it, so clones elsewhere (CI) hit the cache.
CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export CCACHE_BASEDIR
PHI_TORCH_CMAKE=$("$PHI_VENV/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
export PHI_TORCH_CMAKE
