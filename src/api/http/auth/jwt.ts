/**
 * JWT bearer tokens (`Authorization: Bearer <compact JWS>`), as CouchDB's JWT handler reads them.
 *
 * A token is `base64url(header) . base64url(payload) . base64url(signature)`. The header's
 * `alg` picks a family (HS* → `hmac`, RS* → `rsa`, ES* → `ec`) and its `kid` (or `_default`
 * when absent) picks a configured key named `${family}:${kid}`, exactly as `[jwt_keys]`
 * names them. The payload's `sub` becomes the user's name; the roles come from the claim
 * that `rolesClaimName` (a top-level name) or `rolesClaimPath` (a dotted path) points at.
 *
 * Order of checks, each a 401 with a reason naming what failed: size (before any parsing),
 * shape, header, `alg` (never `none`, only the allowed list), key lookup, the key's own type
 * (a secret for HS*, an RSA public key for RS*, an EC public key on the alg's curve for ES*:
 * so a public key can never serve as an HMAC secret), signature, and only then the payload:
 * required claims, `exp`/`nbf`/`iat`, `sub`, roles.
 *
 * Where this differs from CouchDB 3.5, on purpose:
 * - every rejection is 401 `unauthorized` (CouchDB answers 400 for some, e.g. an unknown kid);
 * - `exp`, `nbf` and `iat` are checked whenever present (CouchDB checks them only when listed
 *   in `required_claims`); `exp` is still required only when listed. `nbf` equal to now is
 *   accepted (RFC 7519), and `clockSkewSec` of leeway applies to both;
 * - `sub` must be a non-empty string; a roles claim that is absent, or a path that does not
 *   lead anywhere, gives no roles (CouchDB answers 404 for a missing path);
 * - a `crit` header is refused (we implement no JWS extensions, RFC 7515 §4.1.11).
 * Like CouchDB, a roles claim may be a JSON array of strings or one comma-separated string;
 * anything else is refused.
 *
 * Pure and synchronous (one signature check per call), no I/O; the HTTP layer maps the
 * error's kind to the status. Key material comes from `parseJwtKeys` at start-up.
 */
import {
  KeyObject,
  createHmac,
  createPublicKey,
  createSecretKey,
  timingSafeEqual,
  verify as verifySignature,
} from 'node:crypto';
import { UnauthorizedError } from '../../../errors';

export interface JwtKey {
  kind: 'hmac' | 'rsa' | 'ec';
  kid: string;
  key: import('node:crypto').KeyObject;
}

export interface JwtOptions {
  /** Keys by `${kind}:${kid}`; kid `_default` is used for tokens without a kid. */
  keys: ReadonlyMap<string, JwtKey>;
  /** Claims every token must carry; CouchDB's `required_claims` (names, or [name, value] pairs that must match). */
  requiredClaims: (string | [string, string])[];
  /** Dotted path to the roles list, e.g. `realm_access.roles` (CouchDB `roles_claim_path`, dots escaped as `\.`); default `_couchdb.roles`. */
  rolesClaimPath: string;
  // That default, CouchDB's top-level claim named `_couchdb.roles`, is `DEFAULT_ROLES_CLAIM_PATH`
  // (`_couchdb\.roles`, dot escaped); `rolesClaimFromConfig` builds this field from `[jwt_auth]`.
  /**
   * CouchDB's older `roles_claim_name`: one top-level claim name, read literally (dots are
   * part of the name). When set it takes precedence over `rolesClaimPath`. CouchDB itself
   * ignores `roles_claim_name` once `roles_claim_path` is configured, so build both from
   * config with `rolesClaimFromConfig`, which leaves this unset in that case.
   */
  rolesClaimName?: string;
  /** Allowed algorithms; default HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512. */
  algorithms?: readonly string[];
  /** Leeway on exp/nbf in seconds (default 0). */
  clockSkewSec?: number;
  nowSec?: () => number;
}

export interface JwtUser {
  name: string;
  roles: string[];
  expSec?: number;
}

/** Longest token looked at (characters; a valid token is ASCII). Longer is refused unparsed. */
export const TOKEN_CHARS_MAX = 16 * 1024;

export const DEFAULT_ALGORITHMS: readonly string[] = Object.freeze([
  'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512',
]);

/**
 * CouchDB's default roles claim: the top-level claim named `_couchdb.roles`. As a path its
 * dot is escaped; unescaped, `_couchdb.roles` would mean `{"_couchdb": {"roles": …}}`.
 */
export const DEFAULT_ROLES_CLAIM_PATH = '_couchdb\\.roles';

/** How one alg is checked: key family, digest, and for ES* the curve and signature size. */
interface AlgSpec {
  kind: JwtKey['kind'];
  hash: 'sha256' | 'sha384' | 'sha512';
  /** ES* only: OpenSSL curve name the key must be on. */
  curve?: string;
  /** ES* only: raw r||s length (JOSE), bytes. */
  signatureBytes?: number;
}

const ALGS: ReadonlyMap<string, AlgSpec> = new Map<string, AlgSpec>([
  ['HS256', { kind: 'hmac', hash: 'sha256' }],
  ['HS384', { kind: 'hmac', hash: 'sha384' }],
  ['HS512', { kind: 'hmac', hash: 'sha512' }],
  ['RS256', { kind: 'rsa', hash: 'sha256' }],
  ['RS384', { kind: 'rsa', hash: 'sha384' }],
  ['RS512', { kind: 'rsa', hash: 'sha512' }],
  ['ES256', { kind: 'ec', hash: 'sha256', curve: 'prime256v1', signatureBytes: 64 }],
  ['ES384', { kind: 'ec', hash: 'sha384', curve: 'secp384r1', signatureBytes: 96 }],
  ['ES512', { kind: 'ec', hash: 'sha512', curve: 'secp521r1', signatureBytes: 132 }],
]);

const EC_CURVES = new Set(['prime256v1', 'secp384r1', 'secp521r1']);
const DEFAULT_KID = '_default';
/** Longest kid echoed back in a reason (the kid is the client's text). */
const KID_ECHO_CHARS_MAX = 64;
const COMPACT_JWS = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)$/;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** Verify a compact JWS; returns the user (`sub` is the name) or throws UnauthorizedError (from ../../../errors) with a reason that says what failed (bad signature, unknown kid, expired, missing claim, alg not allowed, malformed). */
export function verifyJwt(token: string, options: JwtOptions): JwtUser {
  if (typeof token !== 'string') throw new UnauthorizedError('malformed token: not a string');
  if (token.length > TOKEN_CHARS_MAX) {
    throw new UnauthorizedError(`token too large (more than ${TOKEN_CHARS_MAX} characters)`);
  }
  const parts = COMPACT_JWS.exec(token);
  if (!parts) throw new UnauthorizedError('malformed token: expected three base64url parts joined by dots');
  const headerB64 = parts[1]!;
  const payloadB64 = parts[2]!;
  const signatureB64 = parts[3]!;

  const header = decodeJsonObject(headerB64, 'header');
  const spec = checkAlg(header, options.algorithms ?? DEFAULT_ALGORITHMS);
  if (own(header, 'crit') !== undefined) throw new UnauthorizedError('token header has crit extensions, none are supported');
  const key = findKey(header, spec, options.keys);
  const signature = decodeBase64Url(signatureB64, 'signature');
  checkSignature(spec, key, Buffer.from(`${headerB64}.${payloadB64}`, 'ascii'), signature);

  const claims = decodeJsonObject(payloadB64, 'payload');
  checkRequiredClaims(header, claims, options.requiredClaims);
  const expSec = checkTimes(claims, options);
  const sub = claims['sub'];
  if (sub === undefined) throw new UnauthorizedError('token has no sub claim');
  if (typeof sub !== 'string' || sub === '') throw new UnauthorizedError('token sub claim must be a non-empty string');
  const roles = readRoles(claims, options);
  return expSec === undefined ? { name: sub, roles } : { name: sub, roles, expSec };
}

/** Strict base64url: no padding, and canonical (re-encodes to the same text), so a token has one spelling. */
function decodeBase64Url(text: string, part: string): Buffer {
  const bytes = Buffer.from(text, 'base64url');
  if (bytes.toString('base64url') !== text) throw new UnauthorizedError(`malformed token: ${part} is not canonical base64url`);
  return bytes;
}

function decodeJsonObject(text: string, part: 'header' | 'payload'): JsonObject {
  const bytes = decodeBase64Url(text, part);
  let value: Json;
  try {
    value = JSON.parse(UTF8.decode(bytes)) as Json;
  } catch {
    throw new UnauthorizedError(`malformed token: ${part} is not UTF-8 JSON`);
  }
  if (!isObject(value)) throw new UnauthorizedError(`malformed token: ${part} is not a JSON object`);
  return value;
}

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Own properties only: a claim named `constructor` or `__proto__` is just a claim. */
function own(object: JsonObject, name: string): Json | undefined {
  return Object.hasOwn(object, name) ? object[name] : undefined;
}

function checkAlg(header: JsonObject, allowed: readonly string[]): AlgSpec {
  const alg = own(header, 'alg');
  if (alg === undefined) throw new UnauthorizedError('malformed token: header has no alg');
  if (typeof alg !== 'string') throw new UnauthorizedError('malformed token: header alg is not a string');
  if (alg.toLowerCase() === 'none') throw new UnauthorizedError('alg none is refused: tokens must be signed');
  if (!allowed.includes(alg)) throw new UnauthorizedError(`alg ${JSON.stringify(alg.slice(0, 16))} is not allowed`);
  const spec = ALGS.get(alg);
  if (!spec) throw new UnauthorizedError(`alg ${JSON.stringify(alg.slice(0, 16))} is not supported`);
  return spec;
}

function findKey(header: JsonObject, spec: AlgSpec, keys: ReadonlyMap<string, JwtKey>): KeyObject {
  const kidValue = own(header, 'kid');
  if (kidValue !== undefined && typeof kidValue !== 'string') {
    throw new UnauthorizedError('malformed token: header kid is not a string');
  }
  const kid = kidValue ?? DEFAULT_KID;
  const entry = keys.get(`${spec.kind}:${kid}`);
  if (!entry) {
    throw new UnauthorizedError(`unknown kid ${JSON.stringify(kid.slice(0, KID_ECHO_CHARS_MAX))} for ${spec.kind} keys`);
  }
  // The table above names the family; this checks the key object itself, so a wrongly built
  // map (a public key filed under hmac:) still cannot verify an HS* token with its bytes.
  if (entry.kind !== spec.kind || !keyFits(entry.key, spec)) {
    throw new UnauthorizedError(`key ${JSON.stringify(`${entry.kind}:${entry.kid}`)} does not fit the token's alg`);
  }
  return entry.key;
}

function keyFits(key: KeyObject, spec: AlgSpec): boolean {
  switch (spec.kind) {
    case 'hmac':
      return key.type === 'secret';
    case 'rsa':
      return key.type === 'public' && key.asymmetricKeyType === 'rsa';
    case 'ec':
      return key.type === 'public' && key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === spec.curve;
  }
}

function checkSignature(spec: AlgSpec, key: KeyObject, signingInput: Buffer, signature: Buffer): void {
  let ok: boolean;
  try {
    if (spec.kind === 'hmac') {
      const expected = createHmac(spec.hash, key).update(signingInput).digest();
      // Lengths are public (fixed per alg); timingSafeEqual needs them equal.
      ok = expected.length === signature.length && timingSafeEqual(expected, signature);
    } else if (spec.kind === 'rsa') {
      ok = verifySignature(spec.hash, signingInput, key, signature);
    } else {
      ok =
        signature.length === spec.signatureBytes &&
        verifySignature(spec.hash, signingInput, { key, dsaEncoding: 'ieee-p1363' }, signature);
    }
  } catch {
    ok = false;
  }
  if (!ok) throw new UnauthorizedError('bad signature');
}

/**
 * `alg`, `kid` and `typ` are header checks, as in CouchDB: `alg` is always required,
 * `kid` must be present, `typ` must be `JWT`. Every other name is a payload claim that
 * must be present (not null) and, for a pair, equal the given string.
 */
function checkRequiredClaims(header: JsonObject, claims: JsonObject, required: JwtOptions['requiredClaims']): void {
  for (const item of required) {
    const [name, wanted] = typeof item === 'string' ? [item, undefined] : item;
    if (name === 'alg') continue;
    const inHeader = name === 'kid' || name === 'typ';
    const value = own(inHeader ? header : claims, name);
    const where = inHeader ? 'header' : 'claim';
    if (value === undefined || value === null) throw new UnauthorizedError(`token lacks required ${where} ${JSON.stringify(name)}`);
    const expected = wanted ?? (name === 'typ' ? 'JWT' : undefined);
    if (expected !== undefined && value !== expected) {
      throw new UnauthorizedError(`token ${where} ${JSON.stringify(name)} does not have the required value`);
    }
  }
}

/** Checks `exp`, `nbf`, `iat` when present; returns `exp`. */
function checkTimes(claims: JsonObject, options: JwtOptions): number | undefined {
  const nowSec = options.nowSec ? options.nowSec() : Math.floor(Date.now() / 1000);
  const skewSec = options.clockSkewSec ?? 0;
  const exp = numericDate(claims, 'exp');
  const nbf = numericDate(claims, 'nbf');
  numericDate(claims, 'iat');
  if (exp !== undefined && nowSec >= exp + skewSec) throw new UnauthorizedError('token expired (exp is past)');
  if (nbf !== undefined && nowSec + skewSec < nbf) throw new UnauthorizedError('token not valid yet (nbf is in the future)');
  return exp;
}

function numericDate(claims: JsonObject, name: 'exp' | 'nbf' | 'iat'): number | undefined {
  const value = own(claims, name);
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new UnauthorizedError(`token claim ${name} must be a number of seconds`);
  }
  return value;
}

function readRoles(claims: JsonObject, options: JwtOptions): string[] {
  const value =
    options.rolesClaimName !== undefined
      ? own(claims, options.rolesClaimName)
      : walkPath(claims, splitClaimPath(options.rolesClaimPath));
  if (value === undefined || value === null) return [];
  if (typeof value === 'string') {
    return value.split(',').map((role) => role.trim()).filter((role) => role !== '');
  }
  if (!Array.isArray(value)) throw new UnauthorizedError('token roles claim must be an array of strings');
  const roles: string[] = [];
  for (const role of value) {
    if (typeof role !== 'string') throw new UnauthorizedError('token roles claim must be an array of strings');
    roles.push(role);
  }
  return roles;
}

function walkPath(claims: JsonObject, path: readonly string[]): Json | undefined {
  let at: Json | undefined = claims;
  for (const name of path) {
    if (!isObject(at)) return undefined;
    at = own(at, name);
  }
  return at;
}

/** `a.b\.c` → `['a', 'b.c']`: a dot splits, a backslash-dot is a dot inside a name. */
export function splitClaimPath(path: string): string[] {
  const names: string[] = [];
  let name = '';
  for (let i = 0; i < path.length; i++) {
    const c = path[i]!;
    if (c === '\\' && path[i + 1] === '.') {
      name += '.';
      i++;
    } else if (c === '.') {
      names.push(name);
      name = '';
    } else {
      name += c;
    }
  }
  names.push(name);
  return names;
}

/**
 * The roles options from `[jwt_auth]`, with CouchDB's precedence: `roles_claim_path` when set
 * (then `roles_claim_name` is ignored), else `roles_claim_name`, else the `_couchdb.roles` claim.
 */
export function rolesClaimFromConfig(section: {
  roles_claim_path?: string | undefined;
  roles_claim_name?: string | undefined;
}): Pick<JwtOptions, 'rolesClaimPath' | 'rolesClaimName'> {
  const path = section.roles_claim_path?.trim();
  if (path) return { rolesClaimPath: path };
  const name = section.roles_claim_name?.trim();
  if (name) return { rolesClaimPath: DEFAULT_ROLES_CLAIM_PATH, rolesClaimName: name };
  return { rolesClaimPath: DEFAULT_ROLES_CLAIM_PATH };
}

/**
 * `[jwt_auth] required_claims` text, e.g. `exp, iat, {iss, "https://issuer"}`: names, and
 * `{name, "value"}` pairs whose claim must equal the value. Empty text → none. Throws on
 * anything else (a start-up error).
 */
export function parseRequiredClaims(text: string): (string | [string, string])[] {
  const claims: (string | [string, string])[] = [];
  const item = /\s*(?:\{\s*([^\s{},"]+)\s*,\s*"([^"]*)"\s*\}|([^\s{},"]+))\s*(,|$)/y;
  let at = 0;
  if (text.trim() === '') return claims;
  while (at < text.length) {
    item.lastIndex = at;
    const match = item.exec(text);
    if (!match || match[0] === '') throw new Error(`[jwt_auth] required_claims: cannot read ${JSON.stringify(text.slice(at))}`);
    claims.push(match[3] !== undefined ? match[3] : [match[1]!, match[2]!]);
    at = item.lastIndex;
    if (match[4] === ',' && at === text.length) throw new Error('[jwt_auth] required_claims: trailing comma');
  }
  return claims;
}

/** Parse `[jwt_keys]`-style config: `hmac:kid=<base64 secret>`, `rsa:kid=<PEM>`, `ec:kid=<PEM>` (PEM with literal `\n` allowed as in CouchDB ini). Throws a clear Error on a bad key. */
export function parseJwtKeys(entries: Record<string, string>): Map<string, JwtKey> {
  const keys = new Map<string, JwtKey>();
  for (const [name, value] of Object.entries(entries)) {
    const match = /^(hmac|rsa|ec):(.+)$/.exec(name);
    if (!match) throw new Error(`[jwt_keys] ${name}: the name must be hmac:<kid>, rsa:<kid> or ec:<kid>`);
    const kind = match[1] as JwtKey['kind'];
    const kid = match[2]!;
    const key = kind === 'hmac' ? parseSecret(name, value) : parsePublicKey(name, kind, value);
    keys.set(`${kind}:${kid}`, { kind, kid, key });
  }
  return keys;
}

function parseSecret(name: string, value: string): KeyObject {
  const text = value.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) {
    throw new Error(`[jwt_keys] ${name}: an hmac secret must be base64`);
  }
  const secret = Buffer.from(text, 'base64');
  if (secret.length === 0) throw new Error(`[jwt_keys] ${name}: the hmac secret is empty`);
  return createSecretKey(secret);
}

function parsePublicKey(name: string, kind: 'rsa' | 'ec', value: string): KeyObject {
  // CouchDB's ini holds a PEM on one line, with `\n` written as two characters.
  const pem = value.trim().replace(/\\n/g, '\n');
  const labels = [...pem.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----/g)].map((m) => m[1]!);
  if (labels.length !== 1) throw new Error(`[jwt_keys] ${name}: expected exactly one PEM block, found ${labels.length}`);
  const label = labels[0]!;
  if (label.includes('PRIVATE')) throw new Error(`[jwt_keys] ${name}: this is a private key; configure the public key`);
  if (label !== 'PUBLIC KEY' && !(kind === 'rsa' && label === 'RSA PUBLIC KEY')) {
    throw new Error(`[jwt_keys] ${name}: expected a PEM public key, found "${label}"`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new Error(`[jwt_keys] ${name}: not a readable public key (${(err as Error).message})`);
  }
  if (key.asymmetricKeyType !== kind) {
    throw new Error(`[jwt_keys] ${name}: expected an ${kind.toUpperCase()} public key, found ${key.asymmetricKeyType ?? 'unknown'}`);
  }
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (kind === 'ec' && (curve === undefined || !EC_CURVES.has(curve))) {
    throw new Error(`[jwt_keys] ${name}: EC curve ${curve ?? 'unknown'} is not one of P-256, P-384, P-521`);
  }
  return key;
}
