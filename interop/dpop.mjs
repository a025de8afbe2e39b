// DPoP proofs (RFC 9449 §4) made by a JOSE implementation tokenguard did not
// write: panva's `jose` (pinned in package.json), for the interop tests
// (tests/it/interop/dpop.rs). The same proofs go to the real authorization
// server (interop/server.mjs, its token endpoint) and to tokenguard.
//
//   node dpop.mjs
//
// A long-running child process: reads one JSON request per line on stdin,
// writes one JSON line per request on stdout, in order, and exits when stdin
// closes. Never touches the network. A request:
//
//   { "key": "name",        the key pair, generated at its first use (for the
//                           `alg` of that request) and kept under that name,
//                           so that the token request and the resource
//                           requests can be signed by one key
//     "alg": "ES256",       ES256 (default) | ES384 | ES512 | EdDSA | Ed25519
//                           | RS256 | PS256 | RS384 | PS384 | …: jose signs.
//                           Also, crafted by hand here because jose would not
//                           make them: "none" (an unsecured JWS, empty
//                           signature unless "signature" is given), and
//                           HS256/HS384/HS512 (jose signs with a secret: the
//                           RFC 7638 canonical JSON of the key's public JWK,
//                           a key-confusion attempt; `jwk` is the public key)
//     "htm": "GET", "htu": "https://…",
//     "ath": "…",           optional: base64url(SHA-256(access token))
//     "accessToken": "…",   optional, instead of "ath": the access token,
//                           whose hash (node:crypto) becomes the `ath`
//     "nonce": "…",         optional: the server's DPoP-Nonce
//     "iat": 1700000000,    optional: default now
//     "jti": "…",           optional: default a random UUID
//     "typ": "dpop+jwt",    optional: default dpop+jwt
//     "headerOverrides": {…},  merged into the protected header; a null value
//                           removes the member; `"jwk": "$private"` puts the
//                           PRIVATE JWK (jose's exportJWK of the private key)
//                           in the header
//     "claimOverrides": {…},   merged into the claims (any JSON value)
//     "omit": ["jti", …],   claims removed (after the overrides)
//     "signature": "…" }    "none" only: the third part of the JWS
//
// The answer: { "proof": "<compact JWS>",
//               "jkt": "<RFC 7638 SHA-256 thumbprint of the public key, by
//                       jose's calculateJwkThumbprint>",
//               "jwk": {public JWK} }
// or { "error": "…" } (the process keeps running).

import * as crypto from 'node:crypto';
import * as readline from 'node:readline';

import {
  CompactSign,
  SignJWT,
  base64url,
  calculateJwkThumbprint,
  exportJWK,
} from 'jose';

/** name → { alg, privateKey, publicJwk, privateJwk, jkt } */
const keys = new Map();

/** node:crypto key-pair arguments for the key an algorithm needs. */
function keyType(alg) {
  if (/^(RS|PS)\d+$/.test(alg)) return ['rsa', { modulusLength: 2048 }];
  switch (alg) {
    case 'ES256':
      return ['ec', { namedCurve: 'P-256' }];
    case 'ES384':
      return ['ec', { namedCurve: 'P-384' }];
    case 'ES512':
      return ['ec', { namedCurve: 'P-521' }];
    case 'EdDSA':
    case 'Ed25519':
      return ['ed25519', undefined];
    default:
      // HMAC and `none` proofs still carry an asymmetric public key.
      return ['ec', { namedCurve: 'P-256' }];
  }
}

async function keyFor(name, alg) {
  if (typeof name !== 'string' || !name) throw new Error('a request needs a key name');
  let key = keys.get(name);
  if (!key) {
    const [type, options] = keyType(alg);
    const { privateKey, publicKey } = crypto.generateKeyPairSync(type, options);
    const publicJwk = await exportJWK(publicKey);
    key = {
      alg,
      privateKey,
      publicJwk,
      privateJwk: await exportJWK(privateKey),
      jkt: await calculateJwkThumbprint(publicJwk, 'sha256'),
    };
    keys.set(name, key);
  }
  return key;
}

/** RFC 7638 §3.2: the required members, sorted, compact. */
function canonical(jwk) {
  const members = { RSA: ['e', 'kty', 'n'], EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'] };
  const out = {};
  for (const m of members[jwk.kty]) out[m] = jwk[m];
  return JSON.stringify(out);
}

function encodePart(value) {
  return base64url.encode(new TextEncoder().encode(JSON.stringify(value)));
}

async function proof(req) {
  const alg = req.alg ?? 'ES256';
  const key = await keyFor(req.key, alg);

  const header = { typ: req.typ ?? 'dpop+jwt', alg, jwk: key.publicJwk };
  for (const [name, value] of Object.entries(req.headerOverrides ?? {})) {
    if (value === null) delete header[name];
    else if (name === 'jwk' && value === '$private') header.jwk = key.privateJwk;
    else header[name] = value;
  }

  const claims = {
    jti: req.jti ?? crypto.randomUUID(),
    htm: req.htm,
    htu: req.htu,
    iat: req.iat ?? Math.floor(Date.now() / 1000),
  };
  if (req.accessToken !== undefined) {
    claims.ath = crypto.createHash('sha256').update(req.accessToken).digest('base64url');
  }
  if (req.ath !== undefined) claims.ath = req.ath;
  if (req.nonce !== undefined) claims.nonce = req.nonce;
  Object.assign(claims, req.claimOverrides ?? {});
  for (const name of req.omit ?? []) delete claims[name];

  let jws;
  if (header.alg === 'none') {
    // jose makes unsecured JWTs only with a bare `{"alg":"none"}` header.
    jws = `${encodePart(header)}.${encodePart(claims)}.${req.signature ?? ''}`;
  } else if (/^HS\d+$/.test(header.alg)) {
    const secret = new TextEncoder().encode(canonical(key.publicJwk));
    jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
      .setProtectedHeader(header)
      .sign(secret);
  } else {
    jws = await new SignJWT(claims).setProtectedHeader(header).sign(key.privateKey);
  }
  return { proof: jws, jkt: key.jkt, jwk: key.publicJwk };
}

// One answer per line, in the order of the requests.
let queue = Promise.resolve();
const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    let answer;
    try {
      answer = await proof(JSON.parse(line));
    } catch (err) {
      answer = { error: String(err?.stack ?? err) };
    }
    process.stdout.write(`${JSON.stringify(answer)}\n`);
  });
});
lines.on('close', () => {
  queue.then(() => process.exit(0));
});
