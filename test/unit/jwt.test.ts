/**
 * JWT bearer tokens (src/api/http/auth/jwt.ts): tokens signed here with real keys
 * (generateKeyPairSync), checked against `verifyJwt` the way `[jwt_auth]`/`[jwt_keys]`
 * configure it. Every rejection must be an UnauthorizedError whose reason names the
 * failure; a fast-check property feeds garbage and mutated tokens (seed printed, rerun
 * with JWT_SEED=<seed>).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  KeyObject,
  createHmac,
  createSecretKey,
  generateKeyPairSync,
  randomBytes,
  sign as signData,
} from 'node:crypto';
import fc from 'fast-check';
import { UnauthorizedError } from '../../src/errors';
import {
  DEFAULT_ROLES_CLAIM_PATH,
  JwtKey,
  JwtOptions,
  TOKEN_CHARS_MAX,
  parseJwtKeys,
  parseRequiredClaims,
  rolesClaimFromConfig,
  splitClaimPath,
  verifyJwt,
} from '../../src/api/http/auth/jwt';

const NOW_SEC = 1_800_000_000;

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaOther = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ec256Other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const ec521 = generateKeyPairSync('ec', { namedCurve: 'P-521' });
const secret = randomBytes(32);
const secretB = randomBytes(32);

type Claims = Record<string, unknown>;

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

const HASH: Record<string, string> = { '256': 'sha256', '384': 'sha384', '512': 'sha512' };

/** A compact JWS over `header`.`claims`, signed as `header.alg` says with `key`. */
function sign(header: Claims, claims: Claims, key: Buffer | KeyObject | string): string {
  const input = `${b64url(header)}.${b64url(claims)}`;
  const alg = String(header['alg']);
  const hash = HASH[alg.slice(2)]!;
  let signature: Buffer;
  if (alg.startsWith('HS')) signature = createHmac(hash, key as Buffer).update(input).digest();
  else if (alg.startsWith('RS')) signature = signData(hash, Buffer.from(input), key as KeyObject);
  else signature = signData(hash, Buffer.from(input), { key: key as KeyObject, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

function entry(kind: JwtKey['kind'], kid: string, key: KeyObject): [string, JwtKey] {
  return [`${kind}:${kid}`, { kind, kid, key }];
}

const KEYS = new Map<string, JwtKey>([
  entry('hmac', '_default', createSecretKey(secret)),
  entry('hmac', 'b', createSecretKey(secretB)),
  entry('rsa', '_default', rsa.publicKey),
  entry('rsa', 'r1', rsa.publicKey),
  entry('ec', '_default', ec256.publicKey),
  entry('ec', 'p384', ec384.publicKey),
  entry('ec', 'p521', ec521.publicKey),
  entry('ec', 'wrong-curve', ec384.publicKey),
]);

function options(extra: Partial<JwtOptions> = {}): JwtOptions {
  return {
    keys: KEYS,
    requiredClaims: [],
    rolesClaimPath: DEFAULT_ROLES_CLAIM_PATH,
    nowSec: () => NOW_SEC,
    ...extra,
  };
}

const CLAIMS: Claims = { sub: 'alice', exp: NOW_SEC + 60, '_couchdb.roles': ['reader', 'writer'] };

function rejects(token: string, opts: JwtOptions, reason: RegExp): void {
  assert.throws(
    () => verifyJwt(token, opts),
    (err: unknown) => {
      assert.ok(err instanceof UnauthorizedError, `expected UnauthorizedError, got ${String(err)}`);
      assert.match(err.reason, reason);
      return true;
    },
  );
}

test('good tokens: HS256, RS256, ES256 (and the 384/512 variants) give sub and the _couchdb.roles claim', () => {
  const cases: [string, Claims, Buffer | KeyObject][] = [
    ['HS256', { alg: 'HS256', typ: 'JWT' }, secret],
    ['HS384', { alg: 'HS384' }, secret],
    ['HS512', { alg: 'HS512' }, secret],
    ['RS256', { alg: 'RS256' }, rsa.privateKey],
    ['RS384', { alg: 'RS384', kid: 'r1' }, rsa.privateKey],
    ['RS512', { alg: 'RS512' }, rsa.privateKey],
    ['ES256', { alg: 'ES256' }, ec256.privateKey],
    ['ES384', { alg: 'ES384', kid: 'p384' }, ec384.privateKey],
    ['ES512', { alg: 'ES512', kid: 'p521' }, ec521.privateKey],
  ];
  for (const [alg, header, key] of cases) {
    const user = verifyJwt(sign(header, CLAIMS, key), options());
    assert.deepEqual(user, { name: 'alice', roles: ['reader', 'writer'], expSec: NOW_SEC + 60 }, alg);
  }
  const noExp = verifyJwt(sign({ alg: 'HS256' }, { sub: 'bob' }, secret), options());
  assert.deepEqual(noExp, { name: 'bob', roles: [] });
});

test('wrong key or tampered token: bad signature', () => {
  rejects(sign({ alg: 'HS256' }, CLAIMS, randomBytes(32)), options(), /bad signature/);
  rejects(sign({ alg: 'RS256' }, CLAIMS, rsaOther.privateKey), options(), /bad signature/);
  rejects(sign({ alg: 'ES256' }, CLAIMS, ec256Other.privateKey), options(), /bad signature/);
  // A valid signature over other claims, spliced onto an admin payload.
  const [header, , sig] = sign({ alg: 'HS256' }, CLAIMS, secret).split('.');
  rejects(`${header}.${b64url({ ...CLAIMS, '_couchdb.roles': ['_admin'] })}.${sig}`, options(), /bad signature/);
  // HS256 signature cut short, and a missing signature.
  const short = Buffer.from(sig!, 'base64url').subarray(0, 16).toString('base64url');
  rejects(`${header}.${b64url(CLAIMS)}.${short}`, options(), /bad signature/);
  rejects(`${header}.${b64url(CLAIMS)}.`, options(), /bad signature/);
});

test('ES signatures are JOSE r||s: a DER-encoded signature is refused', () => {
  const input = `${b64url({ alg: 'ES256' })}.${b64url(CLAIMS)}`;
  const der = signData('sha256', Buffer.from(input), ec256.privateKey); // default dsaEncoding: der
  rejects(`${input}.${der.toString('base64url')}`, options(), /bad signature/);
});

test('kid picks the key within the alg family; no kid means _default', () => {
  assert.equal(verifyJwt(sign({ alg: 'HS256', kid: 'b' }, CLAIMS, secretB), options()).name, 'alice');
  rejects(sign({ alg: 'HS256', kid: 'b' }, CLAIMS, secret), options(), /bad signature/);
  rejects(sign({ alg: 'HS256', kid: 'nope' }, CLAIMS, secret), options(), /unknown kid "nope" for hmac/);
  // kid r1 exists for rsa, not for hmac.
  rejects(sign({ alg: 'HS256', kid: 'r1' }, CLAIMS, secret), options(), /unknown kid "r1" for hmac/);
  assert.equal(verifyJwt(sign({ alg: 'RS256', kid: 'r1' }, CLAIMS, rsa.privateKey), options()).name, 'alice');
  // An explicit `_default` kid is the same key as none.
  assert.equal(verifyJwt(sign({ alg: 'HS256', kid: '_default' }, CLAIMS, secret), options()).name, 'alice');
  const onlyB = new Map([entry('hmac', 'b', createSecretKey(secretB))]);
  rejects(sign({ alg: 'HS256' }, CLAIMS, secretB), options({ keys: onlyB }), /unknown kid "_default" for hmac/);
  rejects(sign({ alg: 'HS256', kid: 7 }, CLAIMS, secret), options(), /kid is not a string/);
  // An ES256 token may not use a P-384 key, whatever its kid.
  rejects(sign({ alg: 'ES256', kid: 'wrong-curve' }, CLAIMS, ec384.privateKey), options(), /does not fit/);
});

test('alg none is always refused, even when listed as allowed', () => {
  for (const alg of ['none', 'None', 'NONE']) {
    const token = `${b64url({ alg })}.${b64url(CLAIMS)}.`;
    rejects(token, options(), /alg none is refused/);
    rejects(token, options({ algorithms: ['none', 'None', 'NONE', 'HS256'] }), /alg none is refused/);
  }
});

test('algorithm confusion: the RSA public key can never serve as an HMAC secret', () => {
  const rsaOnly = new Map([entry('rsa', '_default', rsa.publicKey)]);
  const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const der = rsa.publicKey.export({ type: 'spki', format: 'der' });
  for (const forgedSecret of [pem, Buffer.from(pem), der]) {
    const forged = sign({ alg: 'HS256' }, { sub: 'mallory', '_couchdb.roles': ['_admin'] }, forgedSecret as Buffer);
    rejects(forged, options({ keys: rsaOnly }), /unknown kid "_default" for hmac/);
  }
  // Even a wrongly built key map that files the public key under hmac: does not verify.
  const misfiled = new Map<string, JwtKey>([
    ['hmac:_default', { kind: 'hmac', kid: '_default', key: rsa.publicKey }],
    ['rsa:_default', { kind: 'hmac', kid: '_default', key: createSecretKey(Buffer.from(pem)) }],
  ]);
  rejects(sign({ alg: 'HS256' }, CLAIMS, Buffer.from(pem)), options({ keys: misfiled }), /does not fit/);
  rejects(sign({ alg: 'RS256' }, CLAIMS, rsa.privateKey), options({ keys: misfiled }), /does not fit/);
});

test('allowed algorithms: a token outside the list is refused before any key is looked at', () => {
  const opts = options({ algorithms: ['RS256'] });
  rejects(sign({ alg: 'HS256' }, CLAIMS, secret), opts, /alg "HS256" is not allowed/);
  assert.equal(verifyJwt(sign({ alg: 'RS256' }, CLAIMS, rsa.privateKey), opts).name, 'alice');
  rejects(`${b64url({ alg: 'PS256' })}.${b64url(CLAIMS)}.AAAA`, options({ algorithms: ['PS256'] }), /not supported/);
  rejects(`${b64url({ alg: 'PS256' })}.${b64url(CLAIMS)}.AAAA`, options(), /not allowed/);
});

test('exp: expired at exp itself, clock skew is leeway; exp required only when listed', () => {
  rejects(sign({ alg: 'HS256' }, { ...CLAIMS, exp: NOW_SEC - 1 }, secret), options(), /expired/);
  rejects(sign({ alg: 'HS256' }, { ...CLAIMS, exp: NOW_SEC }, secret), options(), /expired/);
  const late = sign({ alg: 'HS256' }, { ...CLAIMS, exp: NOW_SEC - 5 }, secret);
  assert.equal(verifyJwt(late, options({ clockSkewSec: 10 })).expSec, NOW_SEC - 5);
  rejects(late, options({ clockSkewSec: 5 }), /expired/);
  rejects(sign({ alg: 'HS256' }, { ...CLAIMS, exp: '2030-01-01' }, secret), options(), /exp must be a number/);
  const noExp = sign({ alg: 'HS256' }, { sub: 'alice' }, secret);
  assert.equal(verifyJwt(noExp, options()).name, 'alice');
  rejects(noExp, options({ requiredClaims: ['exp'] }), /lacks required claim "exp"/);
  // The real clock is used when nowSec is not given.
  const real = options();
  delete real.nowSec;
  rejects(sign({ alg: 'HS256' }, { sub: 'a', exp: Math.floor(Date.now() / 1000) - 1 }, secret), real, /expired/);
});

test('nbf in the future is refused (within skew it passes); nbf now passes; iat must be a number', () => {
  rejects(sign({ alg: 'HS256' }, { ...CLAIMS, nbf: NOW_SEC + 30 }, secret), options(), /not valid yet/);
  assert.equal(verifyJwt(sign({ alg: 'HS256' }, { ...CLAIMS, nbf: NOW_SEC + 30 }, secret), options({ clockSkewSec: 30 })).name, 'alice');
  assert.equal(verifyJwt(sign({ alg: 'HS256' }, { ...CLAIMS, nbf: NOW_SEC }, secret), options()).name, 'alice');
  rejects(sign({ alg: 'HS256' }, { ...CLAIMS, nbf: null }, secret), options(), /nbf must be a number/);
  assert.equal(verifyJwt(sign({ alg: 'HS256' }, { ...CLAIMS, iat: NOW_SEC - 10 }, secret), options()).name, 'alice');
  rejects(sign({ alg: 'HS256' }, { ...CLAIMS, iat: 'yesterday' }, secret), options(), /iat must be a number/);
});

test('required claims: names must be present, [name, value] pairs must match; kid and typ are header checks', () => {
  const token = sign({ alg: 'HS256' }, { ...CLAIMS, iss: 'https://issuer', iat: NOW_SEC }, secret);
  assert.equal(verifyJwt(token, options({ requiredClaims: ['alg', 'exp', 'iat', 'iss'] })).name, 'alice');
  assert.equal(verifyJwt(token, options({ requiredClaims: [['iss', 'https://issuer']] })).name, 'alice');
  rejects(token, options({ requiredClaims: [['iss', 'https://other']] }), /claim "iss" does not have the required value/);
  rejects(token, options({ requiredClaims: ['exp', 'aud'] }), /lacks required claim "aud"/);
  rejects(sign({ alg: 'HS256' }, { ...CLAIMS, iss: null }, secret), options({ requiredClaims: ['iss'] }), /lacks required claim "iss"/);
  rejects(token, options({ requiredClaims: ['kid'] }), /lacks required header "kid"/);
  assert.equal(verifyJwt(sign({ alg: 'HS256', kid: 'b' }, CLAIMS, secretB), options({ requiredClaims: ['kid'] })).name, 'alice');
  rejects(token, options({ requiredClaims: ['typ'] }), /lacks required header "typ"/);
  rejects(sign({ alg: 'HS256', typ: 'jose' }, CLAIMS, secret), options({ requiredClaims: ['typ'] }), /header "typ" does not have the required value/);
  assert.equal(verifyJwt(sign({ alg: 'HS256', typ: 'JWT' }, CLAIMS, secret), options({ requiredClaims: ['typ'] })).name, 'alice');
});

test('sub is required and must be a non-empty string', () => {
  rejects(sign({ alg: 'HS256' }, { exp: NOW_SEC + 60 }, secret), options(), /no sub claim/);
  rejects(sign({ alg: 'HS256' }, { sub: '' }, secret), options(), /sub claim must be a non-empty string/);
  rejects(sign({ alg: 'HS256' }, { sub: 42 }, secret), options(), /sub claim must be a non-empty string/);
});

test('roles: nested path, escaped dot, roles_claim_name taking precedence, comma string, absent', () => {
  const claims: Claims = {
    sub: 'alice',
    realm_access: { roles: ['realm-a', 'realm-b'] },
    resource_access: { 'security.settings': { account: { roles: ['manage-account'] } } },
    'my-couchdb.roles': ['by-name'],
    '_couchdb.roles': ['default'],
    csv: ' one, two ,,three ',
  };
  const token = sign({ alg: 'RS256' }, claims, rsa.privateKey);
  const roles = (extra: Partial<JwtOptions>): string[] => verifyJwt(token, options(extra)).roles;
  assert.deepEqual(roles({}), ['default']);
  assert.deepEqual(roles({ rolesClaimPath: 'realm_access.roles' }), ['realm-a', 'realm-b']);
  assert.deepEqual(roles({ rolesClaimPath: 'resource_access.security\\.settings.account.roles' }), ['manage-account']);
  assert.deepEqual(roles({ rolesClaimPath: 'realm_access.roles', rolesClaimName: 'my-couchdb.roles' }), ['by-name']);
  assert.deepEqual(roles({ rolesClaimPath: 'csv' }), ['one', 'two', 'three']);
  assert.deepEqual(roles({ rolesClaimPath: 'realm_access.missing' }), []);
  assert.deepEqual(roles({ rolesClaimPath: 'sub.roles' }), []);
  // Unescaped, `_couchdb.roles` is a nested path and finds nothing here.
  assert.deepEqual(roles({ rolesClaimPath: '_couchdb.roles' }), []);
  // Inherited properties are not claims.
  assert.deepEqual(roles({ rolesClaimPath: 'realm_access.constructor' }), []);
  assert.deepEqual(roles({ rolesClaimName: 'toString' }), []);
});

test('roles that are not an array of strings (or a comma string) are refused', () => {
  for (const bad of [42, true, { a: 'b' }, ['ok', 1], [['nested']], [null]]) {
    const token = sign({ alg: 'HS256' }, { sub: 'alice', '_couchdb.roles': bad }, secret);
    rejects(token, options(), /roles claim must be an array of strings/);
  }
});

test('oversized tokens are refused before parsing; malformed tokens say so', () => {
  rejects('a'.repeat(TOKEN_CHARS_MAX + 1), options(), /too large/);
  const big = sign({ alg: 'HS256' }, { ...CLAIMS, pad: 'x'.repeat(TOKEN_CHARS_MAX) }, secret);
  rejects(big, options(), /too large/);
  const good = sign({ alg: 'HS256' }, CLAIMS, secret);
  const [h, p, s] = good.split('.') as [string, string, string];
  const shape = /three base64url parts/;
  for (const token of ['', 'abc', `${h}.${p}`, `${good}.${s}`, `${h}.${p}.${s}=`, `${h}..${s}`, ` ${good}`, `${h}.${p}.${s}\n`, `${h}.${p}.+/==`]) {
    rejects(token, options(), shape);
  }
  rejects(`${Buffer.from('{"alg":').toString('base64url')}.${p}.${s}`, options(), /header is not UTF-8 JSON/);
  rejects(`${Buffer.from([0xff, 0xfe, 0x7b, 0x7d]).toString('base64url')}.${p}.${s}`, options(), /header is not UTF-8 JSON/);
  rejects(`${b64url(['HS256'])}.${p}.${s}`, options(), /header is not a JSON object/);
  rejects(`${b64url(null)}.${p}.${s}`, options(), /header is not a JSON object/);
  rejects(`${b64url({ typ: 'JWT' })}.${p}.${s}`, options(), /header has no alg/);
  rejects(`${b64url({ alg: 256 })}.${p}.${s}`, options(), /alg is not a string/);
  rejects(sign({ alg: 'HS256', crit: ['b64'], b64: false }, CLAIMS, secret), options(), /crit/);
  // A non-canonical base64url spelling (trailing bits set) of the same header.
  const oneChar = b64url({ alg: 'HS256', k: 'a' });
  assert.equal(oneChar.length % 4, 3);
  const last = oneChar.at(-1)!;
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const twin = oneChar.slice(0, -1) + alphabet[alphabet.indexOf(last) + 1];
  assert.deepEqual(Buffer.from(twin, 'base64url'), Buffer.from(oneChar, 'base64url'));
  rejects(`${twin}.${p}.${s}`, options(), /header is not canonical base64url/);
  // Payloads that are signed but not claim objects.
  rejects(sign({ alg: 'HS256' }, ['alice'] as unknown as Claims, secret), options(), /payload is not a JSON object/);
  const input = `${h}.${Buffer.from('not json').toString('base64url')}`;
  rejects(`${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`, options(), /payload is not UTF-8 JSON/);
  rejects(42 as unknown as string, options(), /not a string/);
});

test('property: any input is answered with a user or an UnauthorizedError, nothing else', (t) => {
  const seed = Number(process.env.JWT_SEED ?? Date.now() % 2 ** 31);
  t.diagnostic(`seed ${seed}`);
  const good = sign({ alg: 'ES256' }, CLAIMS, ec256.privateKey);
  const b64chars = fc.constantFrom(...'ABCXYZabcxyz0189-_.='.split(''));
  const mutated = fc
    .tuple(fc.nat(good.length - 1), fc.array(b64chars, { maxLength: 4 }), fc.nat(3))
    .map(([at, insert, drop]) => good.slice(0, at) + insert.join('') + good.slice(at + drop));
  const jsonParts = fc
    .tuple(fc.jsonValue(), fc.jsonValue(), fc.string())
    .map(([header, claims, sig]) => `${b64url(header)}.${b64url(claims)}.${Buffer.from(sig).toString('base64url')}`);
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.fullUnicodeString(), mutated, jsonParts), (token) => {
      try {
        verifyJwt(token, options({ requiredClaims: ['exp', ['iss', 'x']] }));
      } catch (err) {
        if (!(err instanceof UnauthorizedError)) throw err;
      }
    }),
    { seed, numRuns: 1500 },
  );
});

test('parseJwtKeys: base64 hmac secrets, PEM with literal \\n, PKCS#1 RSA; the keys verify tokens', () => {
  const oneLine = (pem: string): string => pem.trim().split('\n').join('\\n');
  const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const rsaPkcs1 = rsa.publicKey.export({ type: 'pkcs1', format: 'pem' }) as string;
  const ecPem = ec256.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const keys = parseJwtKeys({
    'hmac:_default': secret.toString('base64'),
    'hmac:unpadded': secretB.toString('base64').replace(/=+$/, ''),
    'rsa:_default': oneLine(rsaPem),
    'rsa:pkcs1': oneLine(rsaPkcs1),
    'ec:_default': ` ${oneLine(ecPem)} `,
    'ec:multi': ecPem,
  });
  assert.deepEqual([...keys.keys()].sort(), ['ec:_default', 'ec:multi', 'hmac:_default', 'hmac:unpadded', 'rsa:_default', 'rsa:pkcs1']);
  assert.deepEqual(keys.get('rsa:pkcs1')?.kid, 'pkcs1');
  assert.equal(keys.get('hmac:unpadded')?.key.export().toString('hex'), secretB.toString('hex'));
  const opts = options({ keys });
  assert.equal(verifyJwt(sign({ alg: 'HS256' }, CLAIMS, secret), opts).name, 'alice');
  assert.equal(verifyJwt(sign({ alg: 'HS512', kid: 'unpadded' }, CLAIMS, secretB), opts).name, 'alice');
  assert.equal(verifyJwt(sign({ alg: 'RS256' }, CLAIMS, rsa.privateKey), opts).name, 'alice');
  assert.equal(verifyJwt(sign({ alg: 'RS256', kid: 'pkcs1' }, CLAIMS, rsa.privateKey), opts).name, 'alice');
  assert.equal(verifyJwt(sign({ alg: 'ES256' }, CLAIMS, ec256.privateKey), opts).name, 'alice');
  assert.equal(verifyJwt(sign({ alg: 'ES256', kid: 'multi' }, CLAIMS, ec256.privateKey), opts).name, 'alice');
});

test('parseJwtKeys: bad entries throw an Error that names the entry and the problem', () => {
  const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const ecPem = ec256.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const rsaPrivate = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const k256 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const cases: [Record<string, string>, RegExp][] = [
    [{ 'foo:bar': 'aGVsbG8=' }, /foo:bar: the name must be hmac:<kid>/],
    [{ 'hmac:': 'aGVsbG8=' }, /the name must be/],
    [{ hmac: 'aGVsbG8=' }, /the name must be/],
    [{ 'hmac:x': 'not base64!' }, /hmac:x: an hmac secret must be base64/],
    [{ 'hmac:x': 'aGVsbG8=x' }, /must be base64/],
    [{ 'hmac:x': '' }, /hmac:x: the hmac secret is empty/],
    [{ 'rsa:x': rsaPrivate }, /rsa:x: this is a private key/],
    [{ 'rsa:x': ecPem }, /rsa:x: expected an RSA public key, found ec/],
    [{ 'ec:x': rsaPem }, /ec:x: expected an EC public key, found rsa/],
    [{ 'ec:x': k256 }, /ec:x: EC curve secp256k1 is not one of/],
    [{ 'rsa:x': 'MIIBIjANBgkq' }, /rsa:x: expected exactly one PEM block, found 0/],
    [{ 'rsa:x': rsaPem + rsaPem }, /found 2/],
    [{ 'rsa:x': '-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----' }, /rsa:x: not a readable public key/],
    [{ 'rsa:x': '-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----' }, /expected a PEM public key, found "CERTIFICATE"/],
  ];
  for (const [entries, message] of cases) assert.throws(() => parseJwtKeys(entries), message);
});

test('parseRequiredClaims reads [jwt_auth] required_claims; rolesClaimFromConfig keeps CouchDB precedence', () => {
  assert.deepEqual(parseRequiredClaims(''), []);
  assert.deepEqual(parseRequiredClaims('  '), []);
  assert.deepEqual(parseRequiredClaims('exp'), ['exp']);
  assert.deepEqual(parseRequiredClaims('exp, iat ,{iss, "https://issuer/realms/a"}, {aud,"divan"}'), [
    'exp',
    'iat',
    ['iss', 'https://issuer/realms/a'],
    ['aud', 'divan'],
  ]);
  for (const bad of ['exp,', ',exp', 'exp iat', '{iss}', '{iss, issuer}', '{iss, "a"']) {
    assert.throws(() => parseRequiredClaims(bad), /required_claims/, bad);
  }
  assert.deepEqual(rolesClaimFromConfig({}), { rolesClaimPath: DEFAULT_ROLES_CLAIM_PATH });
  assert.deepEqual(rolesClaimFromConfig({ roles_claim_name: 'my.roles' }), {
    rolesClaimPath: DEFAULT_ROLES_CLAIM_PATH,
    rolesClaimName: 'my.roles',
  });
  assert.deepEqual(rolesClaimFromConfig({ roles_claim_name: 'my.roles', roles_claim_path: 'realm_access.roles' }), {
    rolesClaimPath: 'realm_access.roles',
  });
  assert.deepEqual(splitClaimPath('a.b\\.c.d'), ['a', 'b.c', 'd']);
  assert.deepEqual(splitClaimPath(DEFAULT_ROLES_CLAIM_PATH), ['_couchdb.roles']);
  assert.deepEqual(splitClaimPath('a\\b'), ['a\\b']);
});
