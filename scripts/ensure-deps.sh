#!/bin/sh
# Install exactly what package-lock.json pins, but only when it changed since the
# last install: `npm ci` wipes node_modules, too slow to run before every start.
set -e
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
