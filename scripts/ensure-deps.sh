#!/bin/sh
# Install exactly what package-lock.json pins, but only when it changed since the
# last install: `npm ci` wipes node_modules, too slow to run before every start.
set -e
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
  rm -f node_modules/.divan-native-ok
fi
# The rocksdb package's prebuilt binary aborts with std::bad_alloc as soon as it is
# loaded on Node 22 and later (Level/rocksdb#228, nodejs/node#52436). Check once per
# Node version that it opens a database; if not, build it from source (needs g++,
# make and python3; takes 15-20 minutes on 2 cores, once).
marker=node_modules/.divan-native-ok
if [ "$(cat "$marker" 2>/dev/null)" != "$(node --version)" ]; then
  if ! node scripts/probe-rocksdb.js >/dev/null 2>&1; then
    echo "rocksdb's prebuilt binary does not run on Node $(node --version): building it from source, once (15-20 minutes)..." >&2
    npm rebuild rocksdb --build-from-source --loglevel=error
    node scripts/probe-rocksdb.js
  fi
  node --version > "$marker"
fi
