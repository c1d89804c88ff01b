#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv.
# Idempotent and quick when nothing changed: a stamp records the hash of pyproject.toml.
#
# PyTorch: by default this installs torch==2.13.0, the CPU build that these machines hold on local disk.
# Users with a GPU set PLEXUS_TORCH to another requirement (for example PLEXUS_TORCH="torch>=2.4"),
# or PLEXUS_TORCH=skip to keep whatever torch the environment already has; the package accepts any torch >= 2.1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python_bin="${PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3
venv="$root/.venv"
stamp="$venv/.plexus-setup-stamp"
# the C parts (setup.py) are built into src/ by the editable install: a change to them must rebuild
want="$(cat pyproject.toml setup.py scripts/setup.sh $(find src -name '*.c' | sort) | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/plexus" ]; then
  exit 0
fi
echo "plexus: setting up $venv (first run takes about a minute)" >&2
"$python_bin" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"plexus needs Python >= 3.11, found {sys.version.split()[0]}; set PYTHON=/path/to/python3.11")
PY
[ -d "$venv" ] || "$python_bin" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
torch_req="${PLEXUS_TORCH:-torch==2.13.0}"
requirements=(-e ".[dev]")
[ "$torch_req" = "skip" ] || requirements=("$torch_req" "${requirements[@]}")
# one resolver run for torch and everything else; pip's notes about absent local mirrors are noise here
"${pip[@]}" install "${requirements[@]}" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
"$venv/bin/python" -c "import plexus, torch, sklearn" || { echo "plexus: installing the package failed" >&2; exit 1; }
"$venv/bin/python" -c "import plexus.sim._flowtable, plexus.sim._eventqueue, plexus.protocol._mean" 2>/dev/null \
  || echo "plexus: the compiled parts were not built (no C compiler?): simulations give the same results, slower" >&2
echo "$want" > "$stamp"
