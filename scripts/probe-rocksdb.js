// Exit 0 when the installed rocksdb binding can open, write, read and close a
// database on this Node version; a broken binary aborts the process (non-zero exit).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'divan-rocksdb-probe-'));
const done = (code) => {
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(code);
};
const db = require('rocksdb')(dir);
db.open({ createIfMissing: true }, (err) => {
  if (err) return done(1);
  db.put('probe', 'ok', (err) => {
    if (err) return done(1);
    db.get('probe', { asBuffer: false }, (err, value) => {
      db.close(() => done(!err && value === 'ok' ? 0 : 1));
    });
  });
});
