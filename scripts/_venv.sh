# Sourced by scripts/up, scripts/test and scripts/bench: make .venv exist and match pyproject.toml.
# The venv is rebuilt in place whenever pyproject.toml (or the asked-for extras) change, so a
# fresh clone and an old checkout end up with the same packages.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${TOCK_EXTRAS:-}"
venv="$root/.venv"
python="${TOCK_PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
stamp="$venv/.tock-installed"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -c1-16)-[$extras]"
if [ ! -f "$stamp" ] || ! grep -qxF -- "$want" "$stamp"; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    spec="$root"
    [ -n "$extras" ] && spec="$root[$extras]"
    "$venv/bin/python" -m pip install --quiet -e "$spec"
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
