#!/usr/bin/env bash
# Set up the project's Python stack from nothing, idempotently.
#
#   bash tools/setup_env.sh            # creates/refreshes .venv, installs the project (editable)
#
# The stack (a virtualenv) lives outside the checkout, under $INX_CACHE (default ~/.cache/inceptionnext), in
# a folder keyed by a hash of tools/requirements.txt (bump STACK_REV there when the install steps below
# change). So a second checkout (CI clones afresh every run) reuses it in seconds instead of re-installing
# 5.5 GB, and a change of the pins builds a new one. Each checkout gets its own small .venv on top of it
# (see the end of this script). The mmcv 2.1.0 wheel (compiled CPU ops, ~7 min to build on
# 2 cores) is cached under $INX_CACHE/wheels and reused by every venv.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${INX_CACHE:-$HOME/.cache/inceptionnext}
PY=${PYTHON:-python3}
REQ="$ROOT/tools/requirements.txt"
MMCV_VERSION=2.1.0
t0=$SECONDS

say() { printf '[setup %4ds] %s\n' $((SECONDS - t0)) "$*"; }

key=$(sha256sum "$REQ" | cut -c1-12)
VENV="$CACHE/venvs/$key"
mkdir -p "$CACHE/venvs" "$CACHE/wheels"

if [ -f "$VENV/.complete" ]; then
    say "reusing the stack at $VENV"
else
    say "creating the stack at $VENV (cold: ~10 minutes on 2 cores, most of it the mmcv build)"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
    # pip warns once per package that one of the machine's extra local indexes lacks it: noise.
    export PIP_NO_WARN_SCRIPT_LOCATION=1
    quiet() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
    # Build tools first: mmcv's setup.py needs pkg_resources (setuptools<81) and builds without isolation.
    quiet "${PIP[@]}" -q $(grep -E '^(setuptools|wheel|ninja)\b' "$REQ")
    say "installing torch + torchvision"
    quiet "${PIP[@]}" -q $(grep -E '^(torch|torchvision)==' "$REQ")

    wheel=$(ls "$CACHE"/wheels/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -1 || true)
    if [ -z "$wheel" ]; then
        jobs=${MAX_JOBS:-$(nproc)}
        say "building mmcv $MMCV_VERSION with its compiled ops (cached afterwards; about 7 min on 2 cores, MAX_JOBS=$jobs)"
        build=$(mktemp -d)
        quiet "$VENV/bin/python" -m pip download -q --no-deps --no-build-isolation --no-binary :all: \
            -d "$build" "mmcv==$MMCV_VERSION"
        tar -xzf "$build"/mmcv-$MMCV_VERSION.tar.gz -C "$build"
        # torch >= 2.14 headers need C++20; mmcv 2.1.0 appends -std=c++17 after any CXXFLAGS.
        sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-$MMCV_VERSION/setup.py"
        grep -q 'std=c++20' "$build/mmcv-$MMCV_VERSION/setup.py" || { echo "mmcv setup.py patch failed" >&2; exit 1; }
        # Progress: one line per compiled file (77 CPU op files), streamed from the build log.
        ( cd "$build/mmcv-$MMCV_VERSION" && MAX_JOBS=$jobs MMCV_WITH_OPS=1 FORCE_CUDA=0 \
            "$VENV/bin/python" -m pip wheel -v --no-deps --no-build-isolation -w "$build/dist" . 2>&1 ) \
            | sed -nu -E 's#.*(\[[0-9]+/[0-9]+\]).* -c ([^ ]+/)?([^ /]+\.(cpp|cc)) .*#    \1 \3#p; /[Ee]rror/p' || true
        built=$(ls "$build"/dist/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -1 || true)
        [ -n "$built" ] || { echo "mmcv build failed (see above)" >&2; exit 1; }
        cp "$built" "$CACHE/wheels/"
        wheel="$CACHE/wheels/$(basename "$built")"
        rm -rf "$build"
        say "mmcv wheel cached at $wheel"
    else
        say "using the cached mmcv wheel $wheel"
    fi
    quiet "${PIP[@]}" -q "$wheel"
    say "installing timm, mmengine, mmdet, mmsegmentation and the rest"
    quiet "${PIP[@]}" -q -r "$REQ"
    "$VENV/bin/python" -c "import torch, torchvision, timm, mmcv, mmcv.ops, mmdet, mmseg, mmengine; \
from mmcv.ops import nms, RoIAlign; print('  stack imports: torch', torch.__version__, 'mmcv', mmcv.__version__)"
    touch "$VENV/.complete"
fi

# Per checkout: a small venv of its own in .venv (a few MB, seconds) whose site-packages reaches the shared
# stack through a .pth file, and this checkout's editable install in it. An editable install in the shared
# venv would point every checkout at the one that ran this script last (and break all of them once that
# clone is deleted), so the shared venv holds none.
"$VENV/bin/python" -m pip uninstall -y -q --disable-pip-version-check inceptionnext-dense >/dev/null 2>&1 || true
if [ -L "$ROOT/.venv" ] || [ "$(cat "$ROOT/.venv/.stack" 2>/dev/null)" != "$VENV" ]; then
    rm -rf "$ROOT/.venv"
    "$VENV/bin/python" -m venv --without-pip "$ROOT/.venv"
    purelib() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
    echo "import site; site.addsitedir('$(purelib "$VENV/bin/python")')" \
        > "$(purelib "$ROOT/.venv/bin/python")/_inceptionnext_stack.pth"
    echo "$VENV" > "$ROOT/.venv/.stack"
fi
"$VENV/bin/python" -m pip --python "$ROOT/.venv/bin/python" install -q --disable-pip-version-check --no-deps \
    --no-build-isolation -e "$ROOT"
say "ready: $ROOT/.venv ($("$ROOT/.venv/bin/python" -c 'import torch, timm, mmcv, backbones, os; print(f"torch {torch.__version__}, timm {timm.__version__}, mmcv {mmcv.__version__}, backbones from {os.path.dirname(os.path.dirname(backbones.__file__))}")'))"
