/**
 * The ways user JavaScript might try to leave the sandbox (issue 9's list), as
 * expressions to run inside a map, filter or validate_doc_update. Each must throw in
 * the guest (the name does not exist there) or, for `import()`, answer a rejected
 * promise: none may reach Node.
 */
export const escapeAttempts: readonly (readonly [name: string, expression: string])[] = [
  ['require fs', `require('fs')`],
  ['process', `process.exit(1)`],
  ['Function constructor', `globalThis.constructor.constructor('return process')().exit(1)`],
  ['dynamic import', `import('fs')`],
  ['setTimeout', `setTimeout(function () {}, 1)`],
  ['fetch', `fetch('http://127.0.0.1:1/')`],
  ['XMLHttpRequest', `new XMLHttpRequest()`],
];
