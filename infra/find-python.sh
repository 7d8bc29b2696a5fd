#!/bin/sh
# Print the command to build .venv with: Python 3.12 where it runs, else python3 (>= 3.11).
# A pyenv shim named python3.12 exists on some machines but fails unless that version is selected,
# so every candidate is tried, not just looked up.
if python3.12 --version >/dev/null 2>&1; then echo python3.12; exit 0; fi
if command -v pyenv >/dev/null 2>&1; then
  v=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.[0-9]+)?$' | tail -n 1)
  if [ -n "$v" ] && PYENV_VERSION="$v" python3.12 --version >/dev/null 2>&1; then
    echo "env PYENV_VERSION=$v python3.12"; exit 0
  fi
fi
if python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then echo python3; exit 0; fi
echo "find-python: need Python 3.11 or newer (python3.12 or python3 on PATH)" >&2
exit 1
