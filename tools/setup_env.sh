#!/usr/bin/env bash
# Set up the project's Python stack from nothing, idempotently.
#
#   bash tools/setup_env.sh                       # creates/refreshes .venv, installs the project (editable)
#   INX_MMCV_OPS=all bash tools/setup_env.sh      # the same with every compiled mmcv op (a separate stack)
#
# The stack (a virtualenv) lives outside the checkout, under $INX_CACHE (default ~/.cache/inceptionnext), in
# a folder keyed by a hash of requirements/stack.txt, the mmcv op set and its build script (bump STACK_REV in
# requirements/stack.txt when the install steps below change). So a second checkout (CI clones afresh every run)
# reuses it in seconds instead of re-installing 5.5 GB, and a change of the pins builds a new one. Each
# checkout gets its own small .venv on top of it (see the end of this script).
# mmcv 2.1.0 is only an sdist: its CPU ops are compiled here, by default only those the suite's detectors
# and segmentors call (tools/setup/mmcv_ops.txt: nms, roi_align; about 1.5 min on 2 cores instead of 16 for all
# 77 files); any other mmcv op raises an error naming it and INX_MMCV_OPS=all. The wheel is cached under
# $INX_CACHE/wheels/mmcv-2.1.0-cpu-<op set>-<hash>/ and reused by every venv. docs/setup.md has the details.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${INX_CACHE:-$HOME/.cache/inceptionnext}
PY=${PYTHON:-python3}
REQ="$ROOT/requirements/stack.txt"
MMCV_VERSION=2.1.0
t0=$SECONDS

say() { printf '[setup %4ds] %s\n' $((SECONDS - t0)) "$*"; }

OPS_MODE=${INX_MMCV_OPS:-suite}
case "$OPS_MODE" in
    suite) OPS_ARGS=(--ops "$ROOT/tools/setup/mmcv_ops.txt") ;;
    all) OPS_ARGS=(--all) ;;
    *) echo "error: INX_MMCV_OPS=$OPS_MODE: expected 'suite' (the default: the mmcv ops of" \
            "tools/setup/mmcv_ops.txt) or 'all'" >&2
       exit 2 ;;
esac
# The mmcv build: its op set and the script that prepares its sources. It names the cached wheel (so a wheel
# of another op set is never taken for this one) and is part of the stack's key.
ops_key=$( { echo "$OPS_MODE"; cat "$ROOT/tools/setup/mmcv_ops.py"
             [ "$OPS_MODE" = all ] || cat "$ROOT/tools/setup/mmcv_ops.txt"; } | sha256sum | cut -c1-12)
WHEELS="$CACHE/wheels/mmcv-$MMCV_VERSION-cpu-$OPS_MODE-$ops_key"
key=$( { cat "$REQ"; echo "mmcv ops $ops_key"; } | sha256sum | cut -c1-12)
VENV="$CACHE/venvs/$key"
mkdir -p "$CACHE/venvs" "$WHEELS"

if [ -f "$VENV/.complete" ]; then
    say "reusing the stack at $VENV"
else
    say "creating the stack at $VENV (mmcv ops: $OPS_MODE; cold: a few minutes on 2 cores)"
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

    wheel=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -1 || true)
    if [ -z "$wheel" ]; then
        jobs=${MAX_JOBS:-$(nproc)}
        say "building mmcv $MMCV_VERSION with its compiled CPU ops ($OPS_MODE, MAX_JOBS=$jobs; cached afterwards)"
        build=$(mktemp -d)
        quiet "$VENV/bin/python" -m pip download -q --no-deps --no-build-isolation --no-binary :all: \
            -d "$build" "mmcv==$MMCV_VERSION"
        tar -xzf "$build"/mmcv-$MMCV_VERSION.tar.gz -C "$build"
        # C++20 for torch >= 2.14's headers, no debug info, and (suite) only the listed ops' sources and
        # bindings, with mmcv's loader raising a clear error for the others: tools/setup/mmcv_ops.py.
        "$VENV/bin/python" "$ROOT/tools/setup/mmcv_ops.py" "$build/mmcv-$MMCV_VERSION" "${OPS_ARGS[@]}"
        # Progress: one line per compiled file, and any error, streamed from the build log.
        ( cd "$build/mmcv-$MMCV_VERSION" && MAX_JOBS=$jobs MMCV_WITH_OPS=1 FORCE_CUDA=0 \
            "$VENV/bin/python" -m pip wheel -v --no-deps --no-build-isolation -w "$build/dist" . 2>&1 ) \
            | sed -nu -E 's#.*(\[[0-9]+/[0-9]+\]).* -c ([^ ]+/)?([^ /]+\.(cpp|cc)) .*#    \1 \3#p
                          /error:|Error:|ERROR|FAILED:/p' || true
        built=$(ls "$build"/dist/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -1 || true)
        [ -n "$built" ] || { echo "mmcv build failed (see above)" >&2; exit 1; }
        cp "$built" "$WHEELS/.tmp-$(basename "$built")"
        mv "$WHEELS/.tmp-$(basename "$built")" "$WHEELS/$(basename "$built")"
        wheel="$WHEELS/$(basename "$built")"
        rm -rf "$build"
        say "mmcv wheel cached at $wheel"
    else
        say "using the cached mmcv wheel $wheel"
    fi
    quiet "${PIP[@]}" -q "$wheel"
    say "installing timm, mmengine, mmdet, mmsegmentation and the rest"
    quiet "${PIP[@]}" -q -r "$REQ"
    # The stack imports, and its compiled nms and RoIAlign run.
    "$VENV/bin/python" -c "import torch, torchvision, timm, mmcv, mmcv.ops, mmdet, mmseg, mmengine
from mmcv.ops import nms, roi_align; from mmcv.utils import ext_loader as e
b = torch.tensor([[0., 0, 9, 9], [1, 1, 9, 9]])
assert nms(b, torch.tensor([.9, .8]), .5)[1].tolist() == [0]
assert roi_align(torch.ones(1, 1, 4, 4), torch.tensor([[0., 0, 0, 3, 3]]), 1).item() == 1
ops = [s for s in e.BUILT_SOURCES if s not in ('info', 'pybind')]
print('  stack imports: torch', torch.__version__, 'mmcv', mmcv.__version__, 'with the compiled ops',
      ', '.join(ops) if e.LEFT_OUT_FUNCTIONS else f'(all {len(ops)})')"
    touch "$VENV/.complete"
fi

# Per checkout: a small venv of its own in .venv (a few MB, seconds) whose site-packages reaches the shared
# stack through a .pth file, and this checkout's editable install in it. An editable install in the shared
# venv would point every checkout at the one that ran this script last (and break all of them once that
# clone is deleted), so the shared venv holds none.
"$VENV/bin/python" -m pip uninstall -y -q --disable-pip-version-check inceptionnext-dense >/dev/null 2>&1 || true
purelib() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
if [ -L "$ROOT/.venv" ] || [ "$(cat "$ROOT/.venv/.stack" 2>/dev/null)" != "$VENV" ]; then
    rm -rf "$ROOT/.venv"
    "$VENV/bin/python" -m venv --without-pip "$ROOT/.venv"
    echo "import site; site.addsitedir('$(purelib "$VENV/bin/python")')" \
        > "$(purelib "$ROOT/.venv/bin/python")/_inceptionnext_stack.pth"
    echo "$VENV" > "$ROOT/.venv/.stack"
fi
"$VENV/bin/python" -m pip --python "$ROOT/.venv/bin/python" install -q --disable-pip-version-check --no-deps \
    --no-build-isolation -e "$ROOT"
# mim (`mim search / train / test inceptionnext-dense`) looks for the package's .mim folder at
# <site-packages>/inceptionnext-dense before <site-packages>/backbones; an editable install has neither, so this
# link names the checkout's backbones/ there (the hyphen keeps it from ever being imported as a module).
ln -sfn "$ROOT/backbones" "$(purelib "$ROOT/.venv/bin/python")/inceptionnext-dense"
say "ready: $ROOT/.venv ($("$ROOT/.venv/bin/python" -c 'import torch, timm, mmcv, backbones, os; print(f"torch {torch.__version__}, timm {timm.__version__}, mmcv {mmcv.__version__}, backbones from {os.path.dirname(os.path.dirname(backbones.__file__))}")'))"
