/**
 * HTTP authentication: `Auth` (authenticate.ts) is what the server and routes use;
 * the parts are in their own files: password hashes, the hash gate, the credential
 * cache, the lockout and cookie sessions.
 */
export { Auth } from './authenticate';
export type { AuthOptions, Credentials, HandlerName, Session } from './authenticate';
export { hashPassword, verifyPasswordSync } from './password';
export { LOCKED_REASON } from './lockout';
export type { LockoutMode } from './lockout';
export { sessionSecretFromCluster } from './sessions';
