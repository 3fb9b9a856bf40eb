#!/bin/sh
# Install step of every edgeclassifier component that runs Python, embedded by build.py after two lines
# that set $requirements (the pinned requirements.txt in the unpacked artifact) and $venv (the virtualenv
# folder, inside the component's work folder).
# Creates the virtualenv and installs the pins once: the SHA-256 of requirements.txt is written to
# $venv/.requirements.sha256 only after pip succeeded, and a matching marker skips everything, so a
# restart (the nucleus runs Install on every start) or a new version with the same pins never runs pip.
# Runs as the component user; pip needs PyPI (or the proxy Greengrass is configured with) the first time.
set -eu
want=$(sha256sum "$requirements" | cut -d ' ' -f 1)
have=$(cat "$venv/.requirements.sha256" 2>/dev/null || true)
if [ "$have" = "$want" ] && "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    echo "virtualenv $venv is up to date (requirements.txt sha256 $want)"
    exit 0
fi
if ! python3 -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] < (3, 13))'; then
    echo "edgeclassifier needs python3 3.10, 3.11 or 3.12 on the PATH; found: $(python3 -V 2>&1)" >&2
    exit 1
fi
echo "creating virtualenv $venv and installing $requirements"
rm -rf "$venv"
if ! python3 -m venv "$venv"; then
    echo "python3 -m venv failed; on Debian or Ubuntu install the python3-venv package" >&2
    exit 1
fi
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --no-cache-dir \
    --only-binary=:all: --requirement "$requirements"
echo "$want" > "$venv/.requirements.sha256"
echo "virtualenv $venv is ready"
