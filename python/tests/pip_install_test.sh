#!/usr/bin/env bash
# `pip install --no-build-isolation .` into a fresh venv that sees the system's torch (issue 25,
# item 5), then the module's pytest suite against the installed package:
#   pip_install_test.sh <brain's source tree> <scratch directory> <python3 that imports torch>
# The source is copied first: pip builds in the tree it is given (build/, *.egg-info), and the
# checkout stays clean.
set -euo pipefail
src=$1 root=$2 python=$3
rm -rf "$root"
mkdir -p "$root/src"
cp -r "$src/include" "$src/python" "$src/setup.py" "$src/pyproject.toml" "$src/README.md" "$root/src/"
"$python" -m venv --system-site-packages "$root/venv"
venv=$root/venv/bin
# --no-index: nothing is downloaded (torch, setuptools and wheel come from the system). Compiled
# without optimisation or debug information (CFLAGS comes after Python's own -g -O2): the test is
# of the packaging, and the module's code is tested optimised in the CMake build.
CFLAGS="-O0 -g0" "$venv/pip" install --quiet --no-build-isolation --no-index "$root/src"

cd "$root"  # away from the source tree: `import brain` must find the installed package
"$venv/python" - <<'PY'
import importlib.metadata as metadata
import pathlib
import torch
import brain
where = pathlib.Path(brain.__file__).resolve()
assert "site-packages" in where.parts, f"imported brain from {where}, not from the venv"
requires = metadata.requires("brain")  # ["torch (==1.13.0a0)"] or ["torch==1.13.0a0"], by setuptools' age
assert len(requires) == 1 and requires[0].translate(str.maketrans("", "", " ()")) == f"torch=={torch.__version__}", \
    f"wheel metadata requires {requires}, not this torch {torch.__version__}"
print(f"installed brain {metadata.version('brain')} at {where.parent}, requires {requires[0]}")
PY
# Under another torch the import stops with a message that says what to do.
if "$venv/python" -c "import torch; torch.__version__ = '0.0.1'; import brain" 2> "$root/other-torch.err"; then
  echo "FAIL: brain imported under another torch"; exit 1
fi
grep -q "brain was built against torch .* but torch 0.0.1 is imported" "$root/other-torch.err" ||
  { cat "$root/other-torch.err"; echo "FAIL: no clear message under another torch"; exit 1; }
echo "ok: under another torch: $(tail -n 1 "$root/other-torch.err")"
"$venv/python" -m pytest -q -p no:cacheprovider "$src/python/tests"
