// Hostile tokens for tokenguard, made by a second JOSE implementation.
//
// tests/it/attacks.rs runs `node craft.mjs` and reads ONE JSON document from
// stdout:
//
//   { "issuer", "audience", "required_scope", "jwks": {public JWK set},
//     "valid": [{ "name", "token" }],          genuinely valid tokens (200)
//     "cases": [{ "name",
//                 "token": "…"                  sent as `Authorization: Bearer …`
//                 | "authorization": [v, …]      raw header values, each a string
//                                                or { "base64": "…" } for raw bytes
//                 "path"?, "headers"?: [[name, value]],
//                 "guard"?: "roomy"              a guard with a 256 KiB token limit
//                 "http_rejects"?: true          the http crate must refuse the header
//                 "expect_status": 401 | 400 | 403,
//                 "expect_error": "invalid_token" | "invalid_request"
//                                 | "insufficient_scope" | null,
//                 "expect_description": "…" }] }
//
// Keys are generated afresh on every run with `jose` (pinned in
// package.json); tokens are signed with jose's JWS API, or, where jose
// rightly refuses to produce the attack (duplicate header members, `crit`
// nonsense, non-canonical encodings), by signing hand-made bytes with
// WebCrypto. Nothing here talks to the network.

import { createPublicKey, randomUUID, webcrypto } from "node:crypto";
import { deflateRawSync } from "node:zlib";
import * as jose from "jose";

const { subtle } = webcrypto;
const enc = new TextEncoder();

const ISSUER = "https://issuer.attacks.tokenguard.test";
const AUDIENCE = "https://api.attacks.tokenguard.test";
const SCOPE = "read:invoices";
const now = Math.floor(Date.now() / 1000);

// The fixed RFC 6750 error descriptions of tokenguard (src/error.rs).
const D = {
  malformed: "The access token is malformed",
  tooLarge: "The access token is too large",
  alg: "The access token algorithm is not accepted",
  typ: "The token is not an access token",
  crit: "The access token has an unsupported critical header",
  unknownKey: "The access token signing key is unknown",
  badSig: "The access token signature is invalid",
  missing: "The access token lacks a required claim",
  invalidClaim: "The access token has an invalid claim",
  issuer: "The access token issuer is not trusted",
  audience: "The access token is not meant for this resource",
  expired: "The access token expired",
  notYet: "The access token is not valid yet",
  future: "The access token was issued in the future",
  lifetime: "The access token lifetime is too long",
  scope: "The access token does not grant the required scope",
  severalHeaders: "More than one Authorization header",
  badCredentials: "Malformed credentials",
};

// ---------------------------------------------------------------- encoding

const b64u = (x) => jose.base64url.encode(x);
const unb64u = (s) => jose.base64url.decode(s);
const b64 = (bytes) => Buffer.from(bytes).toString("base64");
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const toBytes = (x) => (typeof x === "string" ? enc.encode(x) : x);
const bigToBytes = (n, len) => {
  const out = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
};
const bytesToBig = (bytes) => bytes.reduce((n, b) => (n << 8n) | BigInt(b), 0n);

// The standard base64 alphabet instead of base64url.
const toStdAlphabet = (s) => s.replaceAll("-", "+").replaceAll("_", "/");

// Sets a padding bit in the last character of an unpadded base64url string
// whose length is 2 or 3 mod 4 (so the last character carries unused bits).
function withTrailingBit(s) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  if (s.length % 4 < 2) throw new Error("no trailing bits to set");
  const v = alphabet.indexOf(s.at(-1));
  return s.slice(0, -1) + alphabet[v | 1];
}

// ---------------------------------------------------------------- keys

const gen = (alg) => jose.generateKeyPair(alg, { extractable: true });
const issuerKeys = {
  RS256: { kid: "rsa-1", ...(await gen("RS256")) },
  PS256: { kid: "rsa-ps", ...(await gen("PS256")) },
  ES256: { kid: "ec-1", ...(await gen("ES256")) },
  EdDSA: { kid: "ed-1", ...(await gen("EdDSA")) },
};
// jose refuses to sign with RSA keys under 2048 bits, so this one is WebCrypto's.
const weak = await subtle.generateKey(
  {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: 1024,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: "SHA-256",
  },
  true,
  ["sign", "verify"],
);
const attacker = {
  RS256: await gen("RS256"),
  ES256: await gen("ES256"),
  EdDSA: await gen("EdDSA"),
};

const publicJwk = async (key, kid, alg) => ({
  ...(await jose.exportJWK(key)),
  kid,
  alg,
  use: "sig",
});
const jwks = {
  keys: [
    ...(await Promise.all(
      Object.entries(issuerKeys).map(([alg, k]) => publicJwk(k.publicKey, k.kid, alg)),
    )),
    // Below 2048 bits: tokenguard must skip it (src/keys/mod.rs, MIN_RSA_BITS).
    await publicJwk(weak.publicKey, "rsa-1024", "RS256"),
  ],
};

const SUBTLE = {
  RS256: { name: "RSASSA-PKCS1-v1_5" },
  PS256: { name: "RSA-PSS", saltLength: 32 },
  ES256: { name: "ECDSA", hash: "SHA-256" },
  EdDSA: { name: "Ed25519" },
};
const P256_ORDER = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const ED25519_L = 2n ** 252n + 27742317777372353535851937790883648493n;

// ---------------------------------------------------------------- signing

function claims(over = {}) {
  const c = {
    iss: ISSUER,
    sub: "user-42",
    aud: AUDIENCE,
    client_id: "client-7",
    scope: `openid ${SCOPE}`,
    iat: now,
    exp: now + 300,
    jti: randomUUID(),
    ...over,
  };
  for (const [k, v] of Object.entries(c)) if (v === undefined) delete c[k];
  return c;
}

// The claims as JSON text with raw members appended (for JSON that
// JSON.stringify cannot produce: duplicates, NaN, huge literals, …).
const claimsWithRaw = (raw, over = {}) => JSON.stringify(claims(over)).slice(0, -1) + "," + raw + "}";

const header = (alg, over = {}) => ({ alg, typ: "at+jwt", kid: issuerKeys[alg]?.kid, ...over });

// jose's JWS API over arbitrary payload bytes.
async function jws(payload, { alg = "RS256", head = {}, key, crit } = {}) {
  const p = typeof payload === "string" || payload instanceof Uint8Array ? payload : JSON.stringify(payload);
  return new jose.CompactSign(toBytes(p))
    .setProtectedHeader(header(alg, head))
    .sign(key ?? issuerKeys[alg].privateKey, crit ? { crit } : undefined);
}

// WebCrypto over exact encoded segments, for what jose will not produce.
async function rawSign(alg, privateKey, input) {
  return new Uint8Array(await subtle.sign(SUBTLE[alg], privateKey, toBytes(input)));
}
async function signSegments(h, p, { alg = "RS256", key } = {}) {
  const sig = await rawSign(alg, key ?? issuerKeys[alg].privateKey, `${h}.${p}`);
  return `${h}.${p}.${b64u(sig)}`;
}
const signTexts = (headerText, payload, opts) => signSegments(b64u(headerText), b64u(payload), opts);

const split = (t) => t.split(".");
const withSig = (t, sig) => {
  const [h, p] = split(t);
  return `${h}.${p}.${typeof sig === "string" ? sig : b64u(sig)}`;
};
const sigBytes = (t) => unb64u(split(t)[2]);

// ---------------------------------------------------------------- cases

const cases = [];
const names = new Set();
function add(c) {
  if (names.has(c.name)) throw new Error(`duplicate case name: ${c.name}`);
  names.add(c.name);
  cases.push(c);
}
const invalid = (name, token, description, extra = {}) =>
  add({
    name,
    token,
    ...extra,
    expect_status: 401,
    expect_error: "invalid_token",
    expect_description: description,
  });
const badRequest = (name, fields, description = D.badCredentials) =>
  add({
    name,
    ...fields,
    expect_status: 400,
    expect_error: "invalid_request",
    expect_description: description,
  });
const noCredential = (name, fields) =>
  add({ name, ...fields, expect_status: 401, expect_error: null });
const insufficient = (name, token) =>
  add({
    name,
    token,
    expect_status: 403,
    expect_error: "insufficient_scope",
    expect_description: D.scope,
  });
const httpRejects = (name, authorization) => add({ name, authorization, http_rejects: true });
const raw = (s) => ({ base64: b64(typeof s === "string" ? Buffer.from(s, "latin1") : s) });

// Genuinely valid tokens, one per algorithm, through jose's JWT API.
const valid = [];
for (const [alg, k] of Object.entries(issuerKeys)) {
  const token = await new jose.SignJWT({ scope: `openid ${SCOPE}`, client_id: "client-7" })
    .setProtectedHeader({ alg, typ: "at+jwt", kid: k.kid })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject("user-42")
    .setJti(randomUUID())
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(k.privateKey);
  valid.push({ name: `valid ${alg} token from jose SignJWT`, token });
}
const good = Object.fromEntries(valid.map((v, i) => [Object.keys(issuerKeys)[i], v.token]));
const expired = await jws(claims({ iat: now - 3600, exp: now - 1800 }));

// --- alg: none ------------------------------------------------------------
{
  const [, payload, sig] = split(good.RS256);
  for (const none of ["none", "None", "NONE", "nOnE"]) {
    const h = b64u(JSON.stringify({ alg: none, typ: "at+jwt" }));
    invalid(`alg "${none}", empty signature`, `${h}.${payload}.`, D.badSig);
    const hk = b64u(JSON.stringify({ alg: none, typ: "at+jwt", kid: "rsa-1" }));
    invalid(`alg "${none}" with the RSA kid, the RS256 signature kept`, `${hk}.${payload}.${sig}`, D.alg);
  }
  invalid("alg none from jose UnsecuredJWT", new jose.UnsecuredJWT(claims()).encode(), D.badSig);
  const h = b64u(JSON.stringify({ alg: "none", typ: "at+jwt" }));
  invalid("alg none without the final dot (two parts)", `${h}.${payload}`, D.malformed);
  invalid('alg "" (empty)', await signTexts(JSON.stringify(header("RS256", { alg: "" })), JSON.stringify(claims())), D.alg);
  invalid("alg missing", await signTexts(JSON.stringify(header("RS256", { alg: undefined })), JSON.stringify(claims())), D.malformed);
  invalid("alg null", await signTexts(JSON.stringify(header("RS256", { alg: null })), JSON.stringify(claims())), D.malformed);
  invalid('alg ["RS256"] (array)', await signTexts(JSON.stringify(header("RS256", { alg: ["RS256"] })), JSON.stringify(claims())), D.malformed);
  invalid('alg "rs256" (lowercase)', await signTexts(JSON.stringify(header("RS256", { alg: "rs256" })), JSON.stringify(claims())), D.alg);
  invalid('alg of 1 KB', await signTexts(JSON.stringify(header("RS256", { alg: "RS256".repeat(205) })), JSON.stringify(claims())), D.alg);
  invalid('alg "RS256 " (trailing space)', await signTexts(JSON.stringify(header("RS256", { alg: "RS256 " })), JSON.stringify(claims())), D.alg);
}

// --- HMAC keyed with the issuer's public key ---------------------------------
{
  const rsaPem = await jose.exportSPKI(issuerKeys.RS256.publicKey);
  const rsaPkcs1 = createPublicKey(rsaPem).export({ type: "pkcs1", format: "pem" });
  const rsaJwk = jwks.keys.find((k) => k.kid === "rsa-1");
  const secrets = {
    "SPKI PEM": rsaPem,
    "SPKI PEM without the final newline": rsaPem.trimEnd(),
    "PKCS#1 PEM": rsaPkcs1,
    "JWK JSON": JSON.stringify(rsaJwk),
    "raw modulus": unb64u(rsaJwk.n),
  };
  for (const alg of ["HS256", "HS384", "HS512"]) {
    for (const [form, secret] of Object.entries(secrets)) {
      const token = await jws(claims(), { alg, head: { kid: "rsa-1" }, key: toBytes(secret) });
      invalid(`${alg} keyed with the RSA public key (${form}), RSA kid`, token, D.alg);
    }
  }
  invalid(
    "HS256 keyed with the RSA public key (SPKI PEM), no kid",
    await jws(claims(), { alg: "HS256", head: { kid: undefined }, key: toBytes(rsaPem) }),
    D.alg,
  );
  const ecPem = await jose.exportSPKI(issuerKeys.ES256.publicKey);
  invalid(
    "HS256 keyed with the EC public key (SPKI PEM), EC kid",
    await jws(claims(), { alg: "HS256", head: { kid: "ec-1" }, key: toBytes(ecPem) }),
    D.alg,
  );
  const edJwk = jwks.keys.find((k) => k.kid === "ed-1");
  invalid(
    "HS256 keyed with the Ed25519 public key (raw x), Ed25519 kid",
    await jws(claims(), { alg: "HS256", head: { kid: "ed-1" }, key: unb64u(edJwk.x) }),
    D.alg,
  );
}

// --- keys offered by the token -----------------------------------------------
{
  const evilEcJwk = await publicJwk(attacker.ES256.publicKey, "attacker-ec", "ES256");
  const evilRsaJwk = await publicJwk(attacker.RS256.publicKey, "attacker-rsa", "RS256");
  const evilSpki = createPublicKey(await jose.exportSPKI(attacker.ES256.publicKey)).export({ type: "spki", format: "der" });
  const offers = {
    jwk: evilEcJwk,
    jku: "https://attacker.example/jwks.json",
    x5u: "https://attacker.example/cert.pem",
    x5c: [b64(evilSpki)],
    "x5t#S256": b64u(new Uint8Array(await subtle.digest("SHA-256", evilSpki))),
  };
  for (const [param, value] of Object.entries(offers)) {
    for (const [label, kid, description] of [
      ["the issuer's EC kid", "ec-1", D.badSig],
      ["no kid", undefined, D.badSig],
      ["the attacker's kid", "attacker-ec", D.unknownKey],
    ]) {
      const token = await jws(claims(), {
        alg: "ES256",
        head: { kid, [param]: value },
        key: attacker.ES256.privateKey,
      });
      invalid(`${param} header offers the attacker's EC key, signed by it, ${label}`, token, description);
    }
  }
  invalid(
    "jwk header offers the attacker's RSA key, signed by it, the issuer's RSA kid",
    await jws(claims(), { alg: "RS256", head: { jwk: evilRsaJwk }, key: attacker.RS256.privateKey }),
    D.badSig,
  );
  const secret = enc.encode("attacker-chosen secret of 32 bytes!");
  invalid(
    "jwk header offers an oct key, HS256 keyed with it",
    await jws(claims(), { alg: "HS256", head: { kid: undefined, jwk: { kty: "oct", k: b64u(secret) } }, key: secret }),
    D.alg,
  );
  invalid(
    "attacker's own EdDSA key, the issuer's Ed25519 kid",
    await jws(claims(), { alg: "EdDSA", key: attacker.EdDSA.privateKey }),
    D.badSig,
  );
}

// --- kid tricks (signed by the issuer's real RSA key) ----------------------
{
  const kids = {
    "../../etc/passwd": "../../etc/passwd",
    "/dev/null": "/dev/null",
    "a path that resolves to the real kid": "x/../rsa-1",
    "the real kid with a NUL suffix": "rsa-1\u0000",
    "a NUL followed by a path": "\u0000../../etc/passwd",
    "quotes": 'rsa-1", "kid": "x',
    "CR-LF and a header line": "rsa-1\r\nX-Injected: 1",
    "an SQL injection": "' OR '1'='1",
    "a shell substitution": "$(id)",
    "the real kid in upper case": "RSA-1",
    "the real kid with a leading space": " rsa-1",
    "an empty string": "",
    "1 KB": "k".repeat(1024),
  };
  for (const [label, kid] of Object.entries(kids)) {
    invalid(`kid: ${label}`, await jws(claims(), { head: { kid } }), D.unknownKey);
  }
  // 2 KB: the decoded header exceeds tokenguard's 2048-byte header limit.
  invalid("kid: 2.5 KB (header over the 2 KiB limit)", await jws(claims(), { head: { kid: "k".repeat(2500) } }), D.malformed);
  // 10 KB: the whole token exceeds the default 8 KiB limit.
  invalid("kid: 10 KB (token over the 8 KiB limit)", await jws(claims(), { head: { kid: "k".repeat(10 * 1024) } }), D.tooLarge);
  invalid("kid: a number", await jws(claims(), { head: { kid: 1 } }), D.malformed);
  // RFC 7515 §4.1.4: a string. null is no string, and not an absent kid.
  invalid("kid: null", await jws(claims(), { head: { kid: null } }), D.malformed);
  invalid("kid: an array holding the real kid", await jws(claims(), { head: { kid: ["rsa-1"] } }), D.malformed);
  invalid("kid: an object", await jws(claims(), { head: { kid: { $ne: "" } } }), D.malformed);
  // Key/algorithm confusion through the kid: the named key is pinned to another alg.
  invalid("RS256 signature naming the EC key's kid", await jws(claims(), { head: { kid: "ec-1" } }), D.alg);
  invalid("RS256 signature naming the Ed25519 key's kid", await jws(claims(), { head: { kid: "ed-1" } }), D.alg);
  invalid("RS256 signature naming the PS256-pinned key's kid", await jws(claims(), { head: { kid: "rsa-ps" } }), D.alg);
  const rsaAsPss = await jose.importPKCS8(await jose.exportPKCS8(issuerKeys.RS256.privateKey), "PS256");
  invalid(
    "PS256 signature by the RS256-pinned key, its kid",
    await jws(claims(), { alg: "PS256", head: { kid: "rsa-1" }, key: rsaAsPss }),
    D.alg,
  );
  invalid(
    "EdDSA signature naming the EC key's kid",
    await jws(claims(), { alg: "EdDSA", head: { kid: "ec-1" } }),
    D.alg,
  );
}

// --- RSA keys under 2048 bits; RSA signature values ------------------------
{
  const weakToken = async (kid) =>
    signTexts(JSON.stringify({ alg: "RS256", typ: "at+jwt", kid }), JSON.stringify(claims()), {
      alg: "RS256",
      key: weak.privateKey,
    });
  invalid("1024-bit RSA key from the key set, its kid", await weakToken("rsa-1024"), D.unknownKey);
  invalid("1024-bit RSA key from the key set, no kid", await weakToken(undefined), D.badSig);
  invalid("1024-bit RSA key from the key set, the 2048-bit key's kid", await weakToken("rsa-1"), D.badSig);

  const n = bytesToBig(unb64u(jwks.keys.find((k) => k.kid === "rsa-1").n));
  const t = good.RS256;
  for (const [label, value] of [
    ["0", 0n],
    ["1", 1n],
    ["n - 1", n - 1n],
    ["n (the modulus)", n],
    ["2^2048 - 1", 2n ** 2048n - 1n],
  ]) {
    invalid(`RS256 signature value s = ${label}`, withSig(t, bigToBytes(value, 256)), D.badSig);
  }
  invalid("RS256 signature with a leading zero byte (257 bytes)", withSig(t, concat([0], sigBytes(t))), D.badSig);
  invalid("RS256 signature of one zero byte", withSig(t, new Uint8Array(1)), D.badSig);
}

// --- RSASSA-PSS salt lengths (RFC 7518 §3.5: the salt is as long as the hash) ---
{
  const h = b64u(JSON.stringify(header("PS256")));
  const p = b64u(JSON.stringify(claims()));
  for (const saltLength of [0, 20, 64]) {
    const sig = await subtle.sign({ name: "RSA-PSS", saltLength }, issuerKeys.PS256.privateKey, enc.encode(`${h}.${p}`));
    invalid(`PS256 signature with a ${saltLength}-byte salt`, `${h}.${p}.${b64u(new Uint8Array(sig))}`, D.badSig);
  }
}

// --- ECDSA and EdDSA signature forms ----------------------------------------
{
  const t = good.ES256;
  const sig = sigBytes(t);
  const r = sig.slice(0, 32);
  const s = sig.slice(32);
  invalid("ES256 psychic signature r = s = 0 (64 zero bytes)", withSig(t, new Uint8Array(64)), D.badSig);
  invalid("ES256 signature r = s = n (the group order)", withSig(t, concat(bigToBytes(P256_ORDER, 32), bigToBytes(P256_ORDER, 32))), D.badSig);
  invalid("ES256 signature r = 0, s kept", withSig(t, concat(new Uint8Array(32), s)), D.badSig);
  invalid("ES256 signature r kept, s = 0", withSig(t, concat(r, new Uint8Array(32))), D.badSig);
  invalid("ES256 signature of 63 bytes (last byte dropped)", withSig(t, sig.slice(0, 63)), D.badSig);
  invalid("ES256 signature of 65 bytes (zero byte appended)", withSig(t, concat(sig, [0])), D.badSig);
  invalid("ES256 signature of 96 bytes (zero-padded to ES384 size)", withSig(t, concat(new Uint8Array(16), r, new Uint8Array(16), s)), D.badSig);
  const derInt = (bytes) => {
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0) i++;
    let v = bytes.slice(i);
    if (v[0] & 0x80) v = concat([0], v);
    return concat([0x02, v.length], v);
  };
  const body = concat(derInt(r), derInt(s));
  invalid("ES256 signature DER-encoded (ASN.1 SEQUENCE of r, s)", withSig(t, concat([0x30, body.length], body)), D.badSig);
  invalid(
    "ES256 signature claiming ES384 on the P-256 key",
    await signTexts(JSON.stringify(header("ES256", { alg: "ES384" })), JSON.stringify(claims()), { alg: "ES256" }),
    D.alg,
  );

  const e = good.EdDSA;
  const esig = sigBytes(e);
  invalid("EdDSA signature of 64 zero bytes", withSig(e, new Uint8Array(64)), D.badSig);
  const sLe = esig.slice(32);
  const sVal = bytesToBig(sLe.slice().reverse()) + ED25519_L;
  const sPlusL = bigToBytes(sVal, 32).reverse();
  invalid("EdDSA signature with non-canonical S + L", withSig(e, concat(esig.slice(0, 32), sPlusL)), D.badSig);
  invalid("EdDSA signature of 63 bytes", withSig(e, esig.slice(0, 63)), D.badSig);
}

// --- stripped, truncated and altered signatures -------------------------------
for (const alg of Object.keys(issuerKeys)) {
  const t = good[alg];
  const [h, p, s] = split(t);
  const bytes = unb64u(s);
  invalid(`${alg}: signature stripped (trailing dot kept)`, `${h}.${p}.`, D.badSig);
  invalid(`${alg}: signature and its dot stripped (two parts)`, `${h}.${p}`, D.malformed);
  // 256 and 64 bytes encode to 342 and 86 characters: one fewer is no base64url length.
  invalid(`${alg}: signature truncated by one character`, `${h}.${p}.${s.slice(0, -1)}`, D.malformed);
  invalid(`${alg}: signature truncated by one byte`, withSig(t, bytes.slice(0, -1)), D.badSig);
  invalid(`${alg}: signature truncated to half`, withSig(t, bytes.slice(0, bytes.length / 2)), D.badSig);
  const flipped = bytes.slice();
  flipped[bytes.length >> 1] ^= 0x01;
  invalid(`${alg}: one bit of the signature flipped`, withSig(t, flipped), D.badSig);
  const payload = unb64u(p);
  payload[payload.length >> 1] ^= 0x01;
  invalid(`${alg}: one bit of the payload flipped`, `${h}.${b64u(payload)}.${s}`, D.badSig);
  invalid(`${alg}: signature padded with "="`, `${h}.${p}.${s}${"=".repeat((4 - (s.length % 4)) % 4)}`, D.malformed);
  invalid(`${alg}: signature with a non-zero trailing bit`, `${h}.${p}.${withTrailingBit(s)}`, D.malformed);
  // A header that differs by one bit ("x":"a" → "x":"c").
  const marked = await jws(claims(), { alg, head: { x: "a" } });
  const [mh, mp, ms] = split(marked);
  const altered = new TextDecoder().decode(unb64u(mh)).replace('"x":"a"', '"x":"c"');
  invalid(`${alg}: one bit of the header flipped`, `${b64u(altered)}.${mp}.${ms}`, D.badSig);
}
{
  // Standard base64 alphabet in the signature: regenerate until it holds '-' or '_'.
  let t;
  do t = await jws(claims());
  while (!/[-_]/.test(split(t)[2]));
  const [h, p, s] = split(t);
  invalid('RS256: signature in the standard alphabet ("+", "/")', `${h}.${p}.${toStdAlphabet(s)}`, D.malformed);
  invalid("RS256: an ES256 token's signature on an RS256 token", withSig(t, sigBytes(good.ES256)), D.badSig);
}

// --- swapped payloads ------------------------------------------------------
{
  const alice = await jws(claims({ sub: "alice", scope: "openid" }));
  const admin = await jws(claims({ sub: "admin", scope: `openid ${SCOPE} admin` }));
  const [ah, , as] = split(alice);
  const [, mp] = split(admin);
  invalid("swapped payload: header and signature of one RS256 token, payload of another", `${ah}.${mp}.${as}`, D.badSig);
  const [eh, , es] = split(good.ES256);
  invalid("swapped payload: ES256 header and signature, RS256 token's payload", `${eh}.${mp}.${es}`, D.badSig);
  const [, ep, es2] = split(good.ES256);
  invalid("swapped header: RS256 header, ES256 token's payload and signature", `${ah}.${ep}.${es2}`, D.badSig);
  const other = await jws(claims({ aud: "https://other.attacks.tokenguard.test" }), { alg: "ES256" });
  const [oh, op] = split(other);
  invalid("swapped signature: payload for another audience, signature of a valid token", `${oh}.${op}.${es}`, D.badSig);
}

// --- crit ----------------------------------------------------------------------
{
  const payload = JSON.stringify(claims());
  invalid('crit ["exp"] with a header exp (signed by jose)', await jws(claims(), { head: { crit: ["exp"], exp: now + 300 }, crit: { exp: true } }), D.crit);
  invalid(
    'crit ["https://attacks.example/ext"] with that header (signed by jose)',
    await jws(claims(), { head: { crit: ["https://attacks.example/ext"], "https://attacks.example/ext": 1 }, crit: { "https://attacks.example/ext": true } }),
    D.crit,
  );
  invalid("crit [] (empty)", await signTexts(JSON.stringify(header("RS256", { crit: [] })), payload), D.crit);
  invalid('crit "b64" (a string)', await signTexts(JSON.stringify(header("RS256", { crit: "b64" })), payload), D.crit);
  invalid("crit {} (an object)", await signTexts(JSON.stringify(header("RS256", { crit: {} })), payload), D.crit);
  invalid('crit ["alg"] (a registered name)', await signTexts(JSON.stringify(header("RS256", { crit: ["alg"] })), payload), D.crit);
  invalid("crit null", await signTexts(JSON.stringify(header("RS256", { crit: null })), payload), D.crit);
  // b64:false (RFC 7797) over a payload that is itself base64url text: the
  // signing input is byte for byte that of an ordinary JWS, so only `crit`
  // tells the two readings apart.
  const ascii = b64u(payload);
  const unencoded = await new jose.FlattenedSign(enc.encode(ascii))
    .setProtectedHeader(header("RS256", { b64: false, crit: ["b64"] }))
    .sign(issuerKeys.RS256.privateKey);
  invalid('crit ["b64"] with b64:false, payload that reads as base64url (signed by jose)', `${unencoded.protected}.${ascii}.${unencoded.signature}`, D.crit);
  invalid('crit ["b64"] with b64:false, detached payload (empty middle part)', `${unencoded.protected}..${unencoded.signature}`, D.malformed);
  const jsonUnencoded = await new jose.FlattenedSign(enc.encode(payload))
    .setProtectedHeader(header("RS256", { b64: false, crit: ["b64"] }))
    .sign(issuerKeys.RS256.privateKey);
  badRequest('crit ["b64"] with b64:false, raw JSON payload in the compact form', {
    token: `${jsonUnencoded.protected}.${payload}.${jsonUnencoded.signature}`,
  });
  // Valid JSON however deep: the header names `crit`, which is refused.
  invalid(
    "crit nested 900 arrays deep",
    await signTexts(`{"alg":"RS256","typ":"at+jwt","kid":"rsa-1","crit":${"[".repeat(900)}${"]".repeat(900)}}`, payload),
    D.crit,
  );
}

// --- typ confusion -----------------------------------------------------------
{
  for (const [label, typ] of [
    ['"JWT" (ID-token-like)', "JWT"],
    ['"jwt"', "jwt"],
    ['"dpop+jwt"', "dpop+jwt"],
    ['"application/jwt"', "application/jwt"],
    ["missing", undefined],
    ['"" (empty)', ""],
    ['"id_token+jwt"', "id_token+jwt"],
    ['"logout+jwt"', "logout+jwt"],
    ['"secevent+jwt"', "secevent+jwt"],
    ['"at+jwt " (trailing space)', "at+jwt "],
    ['"at+jwt" with a NUL suffix', "at+jwt\u0000"],
    ['"application/at+jwt; charset=utf-8"', "application/at+jwt; charset=utf-8"],
    ['"аt+jwt" (Cyrillic а)', "\u0430t+jwt"],
    ['"xat+jwt"', "xat+jwt"],
  ]) {
    invalid(`typ ${label}`, await jws(claims(), { head: { typ } }), D.typ);
  }
  invalid("typ 1 (a number)", await jws(claims(), { head: { typ: 1 } }), D.malformed);
  // RFC 7515 §4.1.9: a media type name, so a string. null is no string, and not an absent typ.
  invalid("typ null", await jws(claims(), { head: { typ: null } }), D.malformed);
  invalid('typ ["at+jwt"] (an array)', await jws(claims(), { head: { typ: ["at+jwt"] } }), D.malformed);
  invalid(
    "an OpenID Connect ID token (typ JWT, aud = client, nonce)",
    await jws(claims({ aud: "client-7", nonce: "n-0S6_WzA2Mj", auth_time: now - 5, scope: undefined }), { head: { typ: "JWT" } }),
    D.typ,
  );
  invalid(
    "a DPoP proof (typ dpop+jwt, jwk header) signed by the attacker",
    await jws({ htm: "GET", htu: AUDIENCE, iat: now, jti: randomUUID() }, {
      alg: "ES256",
      head: { typ: "dpop+jwt", kid: undefined, jwk: await publicJwk(attacker.ES256.publicKey, undefined, "ES256") },
      key: attacker.ES256.privateKey,
    }),
    D.typ,
  );
  invalid("nested JWT (cty JWT, payload is a valid token)", await jws(good.ES256, { head: { cty: "JWT" } }), D.invalidClaim);
}

// --- time claims ----------------------------------------------------------------
{
  invalid("expired half an hour ago", expired, D.expired);
  invalid("expired 60 s ago (past the 30 s leeway)", await jws(claims({ iat: now - 600, exp: now - 60 })), D.expired);
  invalid("nbf an hour ahead", await jws(claims({ nbf: now + 3600 })), D.notYet);
  invalid("iat an hour ahead", await jws(claims({ iat: now + 3600, exp: now + 3900 })), D.future);
  invalid("iat at year 9999", await jws(claims({ iat: 253402300799, exp: now + 300 })), D.future);
  invalid("exp missing", await jws(claims({ exp: undefined })), D.missing);
  for (const [label, value] of [
    ['a string "now + 300"', JSON.stringify(String(now + 300))],
    ["negative (-1)", "-1"],
    ["1e20", "1e20"],
    ["year 10000 (253402300800)", "253402300800"],
    ["2^63 - 1", "9223372036854775807"],
    ["2^64", "18446744073709551616"],
    ["NaN (bare literal)", "NaN"],
    ["Infinity (bare literal)", "Infinity"],
    ["1e400 (out of f64 range)", "1e400"],
    ["null", "null"],
    ["true", "true"],
    ["an array [now + 300]", `[${now + 300}]`],
    ["an object", `{"$date":${now + 300}}`],
    ["hexadecimal 0x…", `0x${(now + 300).toString(16)}`],
    ["with a leading zero", `0${now + 300}`],
    ["with a leading +", `+${now + 300}`],
  ]) {
    invalid(`exp ${label}`, await jws(claimsWithRaw(`"exp":${value}`, { exp: undefined })), D.invalidClaim);
  }
  invalid("exp -0 (the epoch)", await jws(claimsWithRaw('"exp":-0', { exp: undefined })), D.expired);
  invalid("nbf a string", await jws(claims({ nbf: String(now) })), D.invalidClaim);
  invalid("nbf 1e20", await jws(claimsWithRaw('"nbf":1e20')), D.invalidClaim);
  invalid("iat a string", await jws(claims({ iat: String(now) })), D.invalidClaim);
  invalid("iat negative", await jws(claims({ iat: -1 })), D.invalidClaim);
  invalid("auth_time a string", await jws(claims({ auth_time: "yesterday" })), D.invalidClaim);
  // Over-long lifetimes (default maximum 24 h).
  invalid("lifetime 25 h (iat now, exp now + 25 h)", await jws(claims({ exp: now + 25 * 3600 })), D.lifetime);
  invalid("lifetime 25 h (issued 25 h ago, exp in 5 min)", await jws(claims({ iat: now - 25 * 3600 })), D.lifetime);
  invalid("lifetime from iat 0", await jws(claims({ iat: 0 })), D.lifetime);
  invalid("no iat, no nbf, exp in 48 h", await jws(claims({ iat: undefined, exp: now + 48 * 3600 })), D.lifetime);
  invalid("no iat, nbf now, exp in 25 h", await jws(claims({ iat: undefined, nbf: now, exp: now + 25 * 3600 })), D.lifetime);
  invalid("exp at year 9999", await jws(claims({ exp: 253402300799 })), D.lifetime);
}

// --- audience and issuer confusion -------------------------------------------------
{
  for (const [label, aud] of [
    ["another resource", "https://other.attacks.tokenguard.test"],
    ["trailing slash", `${AUDIENCE}/`],
    ["upper-case host", AUDIENCE.toUpperCase()],
    ["a prefix of ours", AUDIENCE.slice(0, -5)],
    ["ours as a prefix", `${AUDIENCE}.evil.example`],
    ["ours with a path", `${AUDIENCE}/v2`],
    ["ours with a NUL suffix", `${AUDIENCE}\u0000`],
    ['"*"', "*"],
    ["an array holding only others", ["https://other.example", "https://third.example"]],
    ["an array holding ours with a trailing slash", [`${AUDIENCE}/`]],
  ]) {
    invalid(`aud: ${label}`, await jws(claims({ aud })), D.audience);
  }
  invalid("aud: missing", await jws(claims({ aud: undefined })), D.missing);
  for (const [label, aud] of [
    ["an empty array", []],
    ["a number", 1],
    ["null", null],
    ["an object keyed by ours", { [AUDIENCE]: true }],
    ["ours nested in an array", [[AUDIENCE]]],
    ["ours beside a number", [AUDIENCE, 1]],
  ]) {
    invalid(`aud: ${label}`, await jws(claims({ aud })), D.invalidClaim);
  }
  for (const [label, iss] of [
    ["another issuer", "https://evil.example"],
    ["trailing slash", `${ISSUER}/`],
    ["upper case", ISSUER.toUpperCase()],
    ["a prefix of ours", ISSUER.slice(0, -5)],
    ["ours as a prefix", `${ISSUER}.evil.example`],
    ["http instead of https", ISSUER.replace("https:", "http:")],
    ["ours with a NUL suffix", `${ISSUER}\u0000`],
  ]) {
    invalid(`iss: ${label}`, await jws(claims({ iss })), D.issuer);
  }
  invalid("iss: missing", await jws(claims({ iss: undefined })), D.missing);
  invalid("iss: an array holding ours", await jws(claims({ iss: [ISSUER] })), D.invalidClaim);
  invalid("iss: null", await jws(claims({ iss: null })), D.invalidClaim);
  invalid("iss: a number", await jws(claims({ iss: 1 })), D.invalidClaim);
}

// --- scope tricks (the route requires `read:invoices`) -----------------------------
{
  for (const [label, scope] of [
    ["a prefix (read)", "read"],
    ["a truncation (read:invoice)", "read:invoice"],
    ["a suffix (read:invoices2)", "read:invoices2"],
    ["an extension (read:invoices.all)", "read:invoices.all"],
    ["another prefix (xread:invoices)", "xread:invoices"],
    ["upper case", SCOPE.toUpperCase()],
    ["title case", "Read:Invoices"],
    ["a wildcard *", "*"],
    ["a wildcard read:*", "read:*"],
    ["a wildcard *:*", "*:*"],
    ["empty", ""],
    ["comma-separated", `openid,${SCOPE}`],
    ["tab-separated", `openid\t${SCOPE}`],
    ["NBSP-separated", `openid\u00a0${SCOPE}`],
    ["with a NUL suffix", `${SCOPE}\u0000`],
    ["a Cyrillic look-alike", "read:invo\u0456ces"],
  ]) {
    insufficient(`scope: ${label}`, await jws(claims({ scope })));
  }
  insufficient("scope: missing", await jws(claims({ scope: undefined })));
  insufficient("scope missing, scp array holds it", await jws(claims({ scope: undefined, scp: [SCOPE] })));
  insufficient("scope missing, scp string holds it", await jws(claims({ scope: undefined, scp: SCOPE })));
  insufficient("scope missing, permissions holds it", await jws(claims({ scope: undefined, permissions: [SCOPE] })));
  insufficient("scope missing, scopes holds it", await jws(claims({ scope: undefined, scopes: SCOPE })));
  insufficient("scope missing, a nested object holds it", await jws(claims({ scope: undefined, ext: { scope: SCOPE } })));
  invalid("scope: an array holding it", await jws(claims({ scope: [SCOPE] })), D.invalidClaim);
  invalid("scope: a number", await jws(claims({ scope: 1 })), D.invalidClaim);
  invalid("scope: null", await jws(claims({ scope: null })), D.invalidClaim);
  invalid("scope: an object", await jws(claims({ scope: { [SCOPE]: true } })), D.invalidClaim);
}

// --- duplicate JSON members (validly signed by the issuer) ---------------------------------
{
  const c = (over) => JSON.stringify(claims(over)).slice(1, -1);
  const dups = {
    "two exp (past, then future)": `{${c({ exp: undefined })},"exp":${now - 3600},"exp":${now + 300}}`,
    "two exp (future, then past)": `{${c({ exp: undefined })},"exp":${now + 300},"exp":${now - 3600}}`,
    "two iss (evil, then ours)": `{${c({ iss: undefined })},"iss":"https://evil.example","iss":"${ISSUER}"}`,
    "two iss (ours, then evil)": `{${c({ iss: undefined })},"iss":"${ISSUER}","iss":"https://evil.example"}`,
    "two aud": `{${c({ aud: undefined })},"aud":"https://other.example","aud":"${AUDIENCE}"}`,
    "two scope": `{${c({ scope: undefined })},"scope":"openid","scope":"${SCOPE}"}`,
    "two sub": `{${c({ sub: undefined })},"sub":"user-42","sub":"admin"}`,
    "two unknown members (role)": `{${c()},"role":"user","role":"admin"}`,
    'exp and "\\u0065xp" (escaped name)': `{${c({ exp: undefined })},"exp":${now - 3600},"\\u0065xp":${now + 300}}`,
  };
  for (const [label, text] of Object.entries(dups)) {
    invalid(`duplicate claims: ${label}`, await jws(text), D.invalidClaim);
  }
  const p = JSON.stringify(claims());
  const headers = {
    'two alg ("none", then "RS256")': '{"alg":"none","alg":"RS256","typ":"at+jwt","kid":"rsa-1"}',
    'two alg ("RS256", then "none")': '{"alg":"RS256","alg":"none","typ":"at+jwt","kid":"rsa-1"}',
    'alg and "\\u0061lg" (escaped name)': '{"alg":"none","\\u0061lg":"RS256","typ":"at+jwt","kid":"rsa-1"}',
    "two kid": '{"alg":"RS256","typ":"at+jwt","kid":"ec-1","kid":"rsa-1"}',
    "two typ": '{"alg":"RS256","typ":"JWT","typ":"at+jwt","kid":"rsa-1"}',
    "two crit": '{"alg":"RS256","typ":"at+jwt","kid":"rsa-1","crit":["exp"],"crit":[]}',
  };
  for (const [label, text] of Object.entries(headers)) {
    invalid(`duplicate header members: ${label}`, await signTexts(text, p), D.malformed);
  }
}

// --- payloads that parsers disagree on (validly signed) --------------------------------------
{
  const p = JSON.stringify(claims());
  const bytes = (s) => enc.encode(s);
  const payloads = {
    "a JSON array": "[]",
    "a JSON string": '"claims"',
    "JSON null": "null",
    "a UTF-8 BOM before the object": `\ufeff${p}`,
    "trailing garbage after the object": `${p}x`,
    "a NUL after the object": `${p}\u0000`,
    "two concatenated objects": `${p}${p}`,
    "a comment inside": `${p.slice(0, -1)}/* c */}`,
    "single-quoted strings": p.replaceAll('"', "'"),
    "a lone surrogate escape in sub": p.replace('"user-42"', '"\\ud800"'),
    "a huge number in an unknown claim": `${p.slice(0, -1)},"n":1e999}`,
    "sub as a number": JSON.stringify(claims({ sub: 42 })),
    "client_id as a number": JSON.stringify(claims({ client_id: 7 })),
    "cnf as a string": JSON.stringify(claims({ cnf: "jkt" })),
    "amr as a string": JSON.stringify(claims({ amr: "pwd" })),
  };
  for (const [label, text] of Object.entries(payloads)) {
    invalid(`payload: ${label}`, await jws(text), D.invalidClaim);
  }
  const [before, after] = p.split("user-42");
  invalid("payload: invalid UTF-8 in sub (0xff)", await jws(concat(bytes(before), [0xff], bytes(after))), D.invalidClaim);
  invalid("payload: overlong UTF-8 for '/' in sub", await jws(concat(bytes(before), [0xc0, 0xaf], bytes(after))), D.invalidClaim);
  invalid("payload: an empty object", await jws("{}"), D.missing);
  // RFC 7515 §5.2: the header must be a JSON object (serde would read a
  // struct from an array of its fields in order).
  invalid('header: a JSON array ["RS256"]', await signTexts('["RS256"]', p), D.malformed);
  invalid('header: a JSON array ["RS256","at+jwt","rsa-1"]', await signTexts('["RS256","at+jwt","rsa-1"]', p), D.malformed);
  invalid(
    "header: invalid UTF-8 in kid",
    await signSegments(b64u(concat(bytes('{"alg":"RS256","typ":"at+jwt","kid":"rsa-'), [0xff], bytes('"}'))), b64u(p)),
    D.malformed,
  );
  invalid("header: invalid UTF-8 in an unknown member", await signSegments(b64u(concat(bytes('{"alg":"RS256","typ":"at+jwt","kid":"rsa-1","x":"'), [0xff], bytes('"}'))), b64u(p)), D.malformed);
  invalid("header: empty (first part empty)", `.${b64u(p)}.${split(good.RS256)[2]}`, D.malformed);
  invalid("header: not base64url-encoded JSON", await signSegments("bm90IGpzb24", b64u(p)), D.malformed);
}

// --- non-canonical base64url ------------------------------------------------------------
{
  const p = JSON.stringify(claims());
  // Header and payload texts of a length that is not a multiple of 3, so their
  // encodings end in a character with unused bits (and would take padding).
  const pad3 = (s, rem) => {
    while (enc.encode(s).length % 3 !== rem) s = s.slice(0, -1) + " }";
    return s;
  };
  const h1 = pad3(JSON.stringify(header("RS256")), 1);
  const p1 = pad3(p, 1);
  const hEnc = b64u(h1);
  const pEnc = b64u(p1);
  badRequest("header padded with \"==\" in the middle of the token", { token: await signSegments(`${hEnc}==`, pEnc) });
  badRequest("payload padded with \"==\" in the middle of the token", { token: await signSegments(hEnc, `${pEnc}==`) });
  invalid("header with a non-zero trailing bit (signed over it)", await signSegments(withTrailingBit(hEnc), pEnc), D.malformed);
  invalid("payload with a non-zero trailing bit (signed over it)", await signSegments(hEnc, withTrailingBit(pEnc)), D.malformed);
  // Standard alphabet in the header and payload, signed over as sent.
  let q = p;
  let n = 0;
  while (!/[-_]/.test(b64u(q))) q = JSON.stringify(claims({ jti: `${randomUUID()}${n++}~~?>` }));
  invalid('payload in the standard alphabet ("+", "/"), signed over it', await signSegments(b64u(JSON.stringify(header("RS256"))), toStdAlphabet(b64u(q))), D.malformed);
  let hStd = JSON.stringify(header("RS256"));
  for (let i = 0; !/[-_]/.test(b64u(hStd)); i++) hStd = JSON.stringify(header("RS256", { x: `${i}?>~` }));
  invalid('header in the standard alphabet ("+", "/"), signed over it', await signSegments(toStdAlphabet(b64u(hStd)), b64u(p)), D.malformed);
  const [h, pp, s] = split(good.RS256);
  badRequest("a space inside the token", { token: `${h}.${pp.slice(0, 10)} ${pp.slice(10)}.${s}` });
  badRequest("a tab inside the token", { token: `${h}.${pp.slice(0, 10)}\t${pp.slice(10)}.${s}` });
  httpRejects("a line feed inside the token", [`Bearer ${h}.${pp.slice(0, 10)}\n${pp.slice(10)}.${s}`]);
}

// --- deep nesting, huge tokens --------------------------------------------------------------
{
  const deep = (levels) => `${"[".repeat(levels)}${"]".repeat(levels)}`;
  invalid("claim nested 10 000 arrays deep (over the 8 KiB limit)", await jws(claimsWithRaw(`"x":${deep(10000)}`)), D.tooLarge);
  invalid("claim nested 10 000 arrays deep, 256 KiB guard", await jws(claimsWithRaw(`"x":${deep(10000)}`)), D.invalidClaim, { guard: "roomy" });
  invalid(
    "claim nested 10 000 objects deep, 256 KiB guard",
    await jws(claimsWithRaw(`"x":${'{"a":'.repeat(10000)}1${"}".repeat(10000)}`)),
    D.invalidClaim,
    { guard: "roomy" },
  );
  invalid("claim nested 2 500 arrays deep (within 8 KiB)", await jws(claimsWithRaw(`"x":${deep(2500)}`)), D.invalidClaim);
  invalid("amr nested 2 500 arrays deep (within 8 KiB)", await jws(claimsWithRaw(`"amr":${deep(2500)}`)), D.invalidClaim);
  // JWS has no `zip`; a verifier that inflates anyway meets a bomb.
  invalid("zip DEF header, deflated claims (validly signed)", await jws(deflateRawSync(enc.encode(JSON.stringify(claims()))), { head: { zip: "DEF" } }), D.invalidClaim);
  invalid("zip DEF header, a 4 MB deflate bomb within 8 KiB (validly signed)", await jws(deflateRawSync(Buffer.alloc(4 << 20, 0x20), { level: 9 }), { head: { zip: "DEF" } }), D.invalidClaim);
  const big = await jws(claims({ pad: "x".repeat(1536 * 1024) }));
  invalid("2 MB validly signed token", big, D.tooLarge);
  invalid("2 MB validly signed token, 256 KiB guard", big, D.tooLarge, { guard: "roomy" });
  invalid("2 MB of base64url with two dots", `${"A".repeat(1 << 20)}.${"B".repeat(1 << 20)}.C`, D.tooLarge);
  invalid("2 MB of non-token68 bytes", "{".repeat(2 << 20), D.tooLarge);
  invalid("100 000 dots", ".".repeat(100000), D.tooLarge);
  invalid("8 000 dots", ".".repeat(8000), D.malformed);
  invalid("five parts of garbage", "a.b.c.d.e", D.malformed);
  noCredential("2 MB behind another scheme", { authorization: [`Basic ${"A".repeat(2 << 20)}`] });
}

// --- JWE and JSON serializations presented as access tokens ----------------------------------
{
  const rsaJwk = jwks.keys.find((k) => k.kid === "rsa-1");
  const oaep = await jose.importJWK({ ...rsaJwk, alg: "RSA-OAEP-256", use: undefined }, "RSA-OAEP-256");
  const plaintext = enc.encode(good.RS256);
  invalid(
    "JWE (RSA-OAEP-256, A256GCM) wrapping a valid token, the RSA kid",
    await new jose.CompactEncrypt(plaintext)
      .setProtectedHeader({ alg: "RSA-OAEP-256", enc: "A256GCM", kid: "rsa-1", typ: "at+jwt", cty: "JWT" })
      .encrypt(oaep),
    D.malformed,
  );
  const ecJwk = jwks.keys.find((k) => k.kid === "ec-1");
  const ecdh = await jose.importJWK({ ...ecJwk, alg: "ECDH-ES", use: undefined }, "ECDH-ES");
  invalid(
    "JWE (ECDH-ES, A128GCM) to the EC key, the EC kid",
    await new jose.CompactEncrypt(plaintext)
      .setProtectedHeader({ alg: "ECDH-ES", enc: "A128GCM", kid: "ec-1", typ: "at+jwt" })
      .encrypt(ecdh),
    D.malformed,
  );
  invalid(
    "JWE (dir, A256GCM) with an attacker's secret",
    await new jose.CompactEncrypt(plaintext)
      .setProtectedHeader({ alg: "dir", enc: "A256GCM", typ: "at+jwt" })
      .encrypt(new Uint8Array(32).fill(7)),
    D.malformed,
  );
  const payload = enc.encode(JSON.stringify(claims()));
  const flattened = await new jose.FlattenedSign(payload).setProtectedHeader(header("RS256")).sign(issuerKeys.RS256.privateKey);
  const general = await new jose.GeneralSign(payload)
    .addSignature(issuerKeys.RS256.privateKey)
    .setProtectedHeader(header("RS256"))
    .addSignature(issuerKeys.ES256.privateKey)
    .setProtectedHeader(header("ES256"))
    .sign();
  badRequest("flattened JSON JWS (validly signed) as the bearer token", { token: JSON.stringify(flattened) });
  badRequest("general JSON JWS (two valid signatures) as the bearer token", { token: JSON.stringify(general) });
  invalid("flattened JSON JWS, base64url-encoded", b64u(JSON.stringify(flattened)), D.malformed);
  invalid(
    "flattened JSON JWS fields joined with dots",
    `${flattened.protected}.${flattened.payload}.${flattened.signature}.${b64u(JSON.stringify({ alg: "none" }))}`,
    D.malformed,
  );
}

// --- the Authorization header itself ---------------------------------------------------
{
  const t = good.RS256;
  noCredential("no Authorization header", { authorization: [] });
  noCredential("Basic credentials", { authorization: ["Basic dXNlcjpwYXNz"] });
  noCredential("a valid token behind the DPoP scheme", { authorization: [`DPoP ${t}`] });
  noCredential("a valid token behind the Token scheme", { authorization: [`Token ${t}`] });
  noCredential('a valid token after "Bearer=" (no space)', { authorization: [`Bearer=${t}`] });
  noCredential('a valid token after "Bearer:" (no space)', { authorization: [`Bearer:${t}`] });
  noCredential("a valid token in the access_token query parameter (disabled)", { authorization: [], path: `/?access_token=${t}` });
  noCredential("a valid token in an access_token cookie (disabled)", { authorization: [], headers: [["cookie", `access_token=${t}`]] });
  badRequest('"Bearer" alone', { authorization: ["Bearer"] });
  badRequest('"Bearer " and nothing', { authorization: ["Bearer "] });
  badRequest("two Authorization headers with the same valid token", { authorization: [`Bearer ${t}`, `Bearer ${t}`] }, D.severalHeaders);
  badRequest("two Authorization headers: Basic, then a valid Bearer", { authorization: ["Basic dXNlcjpwYXNz", `Bearer ${t}`] }, D.severalHeaders);
  badRequest("two Authorization headers: expired, then valid", { authorization: [`Bearer ${expired}`, `Bearer ${t}`] }, D.severalHeaders);
  badRequest("1 000 Authorization headers", { authorization: Array(1000).fill(`Bearer ${t}`) }, D.severalHeaders);
  badRequest("two Bearer credentials in one header, comma-separated", { authorization: [`Bearer ${expired}, Bearer ${t}`] });
  badRequest("Bearer with two tokens separated by a comma", { authorization: [`Bearer ${expired},${t}`] });
  badRequest("Bearer with two tokens separated by a space", { authorization: [`Bearer ${expired} ${t}`] });
  badRequest("Bearer with the token as an auth-param", { authorization: [`Bearer access_token="${t}"`] });
  badRequest("Bearer with a quoted token", { authorization: [`Bearer "${t}"`] });
  badRequest("a tab between Bearer and the token", { authorization: [`Bearer\t${t}`] });
  badRequest("obs-text byte 0x80 after the token", { authorization: [raw(`Bearer ${t}\x80`)] });
  badRequest("obs-text byte 0xff before the token", { authorization: [raw(`Bearer \xff${t}`)] });
  badRequest("UTF-8 inside the token", { authorization: [raw(Buffer.concat([Buffer.from(`Bearer ${t.slice(0, 20)}`), Buffer.from("ø"), Buffer.from(t.slice(20))]))] });
  httpRejects("DEL (0x7f) after the token", [raw(`Bearer ${t}\x7f`)]);
  httpRejects("NUL after the token", [raw(`Bearer ${t}\x00`)]);
  httpRejects("CR-LF and an injected header line", [raw(`Bearer ${t}\r\nX-Injected: 1`)]);
  // The scheme is case-insensitive and 1*SP may separate it from the token:
  // these carry an expired token so that they must be read as Bearer credentials.
  for (const scheme of ["bearer", "BEARER", "bEaReR"]) {
    invalid(`scheme "${scheme}" with an expired token`, undefined, D.expired, { token: undefined, authorization: [`${scheme} ${expired}`] });
  }
  invalid("three spaces after Bearer, expired token", undefined, D.expired, { token: undefined, authorization: [`Bearer   ${expired}`] });
  invalid('"=" padding after an expired token', undefined, D.malformed, { token: undefined, authorization: [`Bearer ${expired}=`] });
  // RFC 9110 §5.5: leading and trailing whitespace is not part of a field
  // value, so these are Bearer credentials holding an expired token.
  invalid("leading space before Bearer, expired token", undefined, D.expired, { token: undefined, authorization: [` Bearer ${expired}`] });
  invalid("trailing space after an expired token", undefined, D.expired, { token: undefined, authorization: [`Bearer ${expired} `] });
}

for (const c of cases) {
  if (c.token === undefined) delete c.token;
}

process.stdout.write(
  JSON.stringify({
    issuer: ISSUER,
    audience: AUDIENCE,
    required_scope: SCOPE,
    jwks,
    valid,
    cases,
  }),
);
