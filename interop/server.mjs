// A real OAuth 2.0 / OpenID Connect authorization server for tokenguard's
// interop tests (tests/it/interop.rs): panva's oidc-provider, configured the way
// a deployment issuing RFC 9068 JWT access tokens is.
//
//   node server.mjs [--port N] [--keys FILE] [--exit-with-stdin]
//
// --port N / PORT           port on 127.0.0.1 (default 0: a free port)
// --keys FILE / KEYS_FILE   private JWKS to sign with; created (with new keys)
//                           when missing. Without it, new keys every start.
// --exit-with-stdin         exit when stdin closes (the test process went away)
//
// Prints `RS_KEY <base64 of a PKCS#8 PEM>` (the private key of the
// private_key_jwt resource-server client, new at every start), then
// `READY http://127.0.0.1:PORT` (the issuer) on stdout once listening.
// Only ever listens on 127.0.0.1.
//
// What it serves:
// - discovery (/.well-known/openid-configuration), JWKS (/jwks), token
//   endpoint (/token), authorization endpoint (/auth) with oidc-provider's
//   development login + consent pages (any login and password), userinfo;
// - one confidential client, CLIENT_ID / CLIENT_SECRET below, with the
//   client_credentials and authorization_code grants (client_secret_basic);
// - resource indicators (RFC 8707): access tokens for a resource are RFC 9068
//   JWTs (`typ: at+jwt`) whose `aud` is that resource. One resource server
//   per signing algorithm (RESOURCE_SERVERS), plus https://other.example.com;
//   each grants `read:invoices write:invoices` (other requested scopes are
//   silently dropped by oidc-provider);
// - one resource whose access tokens are opaque (OPAQUE_RESOURCE), same
//   scopes and lifetime: the resource server introspects them;
// - DPoP (RFC 9449): a token request (client_credentials, any resource
//   above) carrying a `DPoP` proof for the token endpoint (htm POST, htu the
//   token endpoint, no `ath`) gets an access token bound to the proof's key:
//   `token_type: DPoP`, and `cnf.jkt` (the key's RFC 7638 thumbprint) in the
//   JWT, or in the introspection answer of an opaque token (with
//   `token_type: DPoP`). Without a proof, a Bearer token as before. Proof
//   algorithms: ES256 ES384 EdDSA Ed25519 RS256 PS256. No DPoP nonces (no
//   `nonceSecret`): proofs need only an `iat` within oidc-provider's window;
//   a replayed proof `jti` is refused. interop/dpop.mjs makes the proofs;
// - certificate-bound access tokens (RFC 8705 §3), as behind a
//   TLS-terminating proxy: the proxy (the tests) forwards the client's
//   certificate in the RFC 9440 `Client-Cert` header, an RFC 8941 byte
//   sequence of its DER (`:base64:`), the same header tokenguard reads with
//   `MtlsConfig::from_proxy_header("client-cert")`. This server does not
//   check the certificate (the proxy would have): it binds to whatever it
//   gets. The client MTLS_CLIENT_ID / MTLS_CLIENT_SECRET below
//   (client_secret_basic, client_credentials only) has
//   `tls_client_certificate_bound_access_tokens`: its token requests need the
//   header (400 invalid_grant without it), and its access tokens, JWT or
//   opaque, for any resource above, carry `cnf["x5t#S256"]`, base64url
//   SHA-256 of the DER (in the JWT, or in the introspection answer). A
//   malformed or repeated header is answered 400 invalid_request. Other
//   clients' tokens are not bound, header or not;
// - token introspection (RFC 7662, /token/introspection) and revocation
//   (RFC 7009, /token/revocation). oidc-provider introspects and revokes
//   opaque tokens only: a JWT gets 400 `unsupported_token_type`;
// - three clients for the resource server itself, with no grant and no
//   response type (they only introspect), one per client authentication
//   method:
//     tokenguard-rs-basic  client_secret_basic, RS_BASIC_SECRET below
//     tokenguard-rs-post   client_secret_post,  RS_POST_SECRET below
//     tokenguard-rs-jwt    private_key_jwt (ES256), the public half of an EC
//                          P-256 key generated at every start; its private
//                          key is the `RS_KEY` line on stdout. The assertion's
//                          `aud` may be the issuer, the token endpoint or the
//                          introspection endpoint;
// - GET /test/introspections: `{"count": N}`, the number of requests to the
//   introspection endpoint since the start (any method, any outcome);
// - a JWKS with two RSA keys, one per algorithm (`alg` RS256 and PS256: a
//   key verifies exactly one algorithm, RFC 8725 §3.1), an EC P-256 key and
//   an Ed25519 key.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const CLIENT_ID = 'tokenguard-interop';
const CLIENT_SECRET = 'tokenguard-interop-secret-0123456789abcdef';
const REDIRECT_URI = 'https://client.example.com/callback';
const SCOPE = 'read:invoices write:invoices';
const ACCESS_TOKEN_TTL = 300;

/** The client whose access tokens are bound to its certificate. */
const MTLS_CLIENT_ID = 'tokenguard-interop-mtls';
const MTLS_CLIENT_SECRET = 'tokenguard-interop-mtls-secret-0123456789abcdef';
/** The RFC 9440 header the TLS-terminating proxy sets. */
const CLIENT_CERT_HEADER = 'client-cert';

/** The resource servers' own clients: they introspect, nothing else. */
const RS_BASIC_ID = 'tokenguard-rs-basic';
const RS_BASIC_SECRET = 'tokenguard-rs-basic-secret-0123456789abcdef';
const RS_POST_ID = 'tokenguard-rs-post';
const RS_POST_SECRET = 'tokenguard-rs-post-secret-0123456789abcdef';
const RS_JWT_ID = 'tokenguard-rs-jwt';

/** The resource whose access tokens are opaque. */
const OPAQUE_RESOURCE = 'https://api.example.com/opaque';

/** Resource indicator → JWS algorithm of its access tokens. */
const RESOURCE_SERVERS = {
  'https://api.example.com/rs256': 'RS256',
  'https://api.example.com/ps256': 'PS256',
  'https://api.example.com/es256': 'ES256',
  'https://api.example.com/eddsa': 'EdDSA',
  // RFC 9864's fully-specified name for EdDSA with Ed25519.
  'https://api.example.com/ed25519': 'Ed25519',
  'https://other.example.com': 'RS256',
};

function fail(message) {
  console.error(`server.mjs: ${message}`);
  process.exit(2);
}

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    keys: { type: 'string' },
    'exit-with-stdin': { type: 'boolean', default: false },
  },
  strict: true,
});

const portText = args.port ?? process.env.PORT ?? '0';
const port = Number(portText);
if (!/^\d+$/.test(portText) || !Number.isInteger(port) || port > 65535) {
  fail(`invalid port ${JSON.stringify(portText)}`);
}
const keysFile = args.keys ?? process.env.KEYS_FILE;

/** A private JWK with a random `kid` naming its type. */
function generate(name, type, options) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: `${name}-${crypto.randomBytes(6).toString('base64url')}`,
    use: 'sig',
  };
}

function generateJwks() {
  return {
    keys: [
      { ...generate('rsa', 'rsa', { modulusLength: 2048 }), alg: 'RS256' },
      { ...generate('rsa-pss', 'rsa', { modulusLength: 2048 }), alg: 'PS256' },
      generate('ec', 'ec', { namedCurve: 'P-256' }),
      generate('ed25519', 'ed25519'),
    ],
  };
}

function loadJwks() {
  if (!keysFile) return generateJwks();
  if (fs.existsSync(keysFile)) {
    try {
      return JSON.parse(fs.readFileSync(keysFile, 'utf8'));
    } catch (err) {
      return fail(`cannot read the key file ${keysFile}: ${err.message}`);
    }
  }
  const jwks = generateJwks();
  fs.writeFileSync(keysFile, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600 });
  return jwks;
}

const accounts = {
  async findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub };
      },
    };
  },
};

/** The key pair of the private_key_jwt client, new at every start. */
function generateRsKey() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    publicJwk: { ...publicKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig' },
    privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }),
  };
}

/**
 * The client certificate the proxy forwards: the RFC 9440 header, one RFC
 * 8941 byte sequence (no parameters); undefined without it.
 */
function getCertificate(ctx) {
  const value = ctx.req.headers[CLIENT_CERT_HEADER];
  if (value === undefined) return undefined;
  // Node joins repeated headers with ", ": that is no byte sequence either.
  const match = /^:([A-Za-z0-9+/]+={0,2}):$/.exec(value.trim());
  if (!match) throw new errors.InvalidRequest(`malformed ${CLIENT_CERT_HEADER} header`);
  try {
    return new crypto.X509Certificate(Buffer.from(match[1], 'base64'));
  } catch {
    throw new errors.InvalidRequest(`${CLIENT_CERT_HEADER} is not a certificate`);
  }
}

/** A client that only introspects: no grant, no response type. */
function resourceServerClient(clientId, method, extra) {
  return {
    client_id: clientId,
    grant_types: [],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: method,
    ...extra,
  };
}

function configuration(jwks, rsKey) {
  return {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials', 'authorization_code'],
        response_types: ['code'],
        redirect_uris: [REDIRECT_URI],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: MTLS_CLIENT_ID,
        client_secret: MTLS_CLIENT_SECRET,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        tls_client_certificate_bound_access_tokens: true,
      },
      resourceServerClient(RS_BASIC_ID, 'client_secret_basic', { client_secret: RS_BASIC_SECRET }),
      resourceServerClient(RS_POST_ID, 'client_secret_post', { client_secret: RS_POST_SECRET }),
      resourceServerClient(RS_JWT_ID, 'private_key_jwt', {
        token_endpoint_auth_signing_alg: 'ES256',
        jwks: { keys: [rsKey.publicJwk] },
      }),
    ],
    jwks,
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    findAccount: accounts.findAccount,
    claims: { openid: ['sub'] },
    scopes: ['openid'],
    features: {
      clientCredentials: { enabled: true },
      // The login and consent pages the tests drive to get an ID token.
      devInteractions: { enabled: true },
      introspection: { enabled: true },
      // Signed introspection answers (RFC 9701) for a request that accepts
      // application/token-introspection+jwt; JSON for every other.
      jwtIntrospection: { enabled: true },
      revocation: { enabled: true },
      // DPoP (RFC 9449): a token request with a `DPoP` proof gets a DPoP-bound
      // access token (`token_type: DPoP`, `cnf.jkt`). No server nonces: with
      // no `nonceSecret` oidc-provider neither requires nor issues them.
      dPoP: { enabled: true, requireNonce: () => false, allowReplay: false },
      // Certificate-bound access tokens (RFC 8705 §3) for the clients that
      // ask for them, the certificate from the proxy's header.
      mTLS: { enabled: true, certificateBoundAccessTokens: true, getCertificate },
      resourceIndicators: {
        enabled: true,
        // No default: clients must name the resource they want a token for.
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        async getResourceServerInfo(_ctx, resourceIndicator, _client) {
          if (resourceIndicator === OPAQUE_RESOURCE) {
            return {
              scope: SCOPE,
              audience: resourceIndicator,
              accessTokenTTL: ACCESS_TOKEN_TTL,
              accessTokenFormat: 'opaque',
            };
          }
          const alg = RESOURCE_SERVERS[resourceIndicator];
          if (!alg) throw new errors.InvalidTarget();
          return {
            scope: SCOPE,
            audience: resourceIndicator,
            accessTokenTTL: ACCESS_TOKEN_TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg } },
          };
        },
      },
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519'],
      // The proof algorithms tokenguard accepts by default, and Ed25519.
      dPoPSigningAlgValues: ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'RS256', 'PS256'],
    },
    ttl: {
      AccessToken: ACCESS_TOKEN_TTL,
      ClientCredentials: ACCESS_TOKEN_TTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Grant: 3600,
      Session: 3600,
    },
  };
}

/**
 * Counts the requests to the introspection endpoint and answers
 * GET /test/introspections with the count.
 */
function introspectionCounter(provider) {
  const path = new URL(provider.urlFor('introspection')).pathname;
  let count = 0;
  return async (ctx, next) => {
    if (ctx.path === path) {
      count += 1;
    } else if (ctx.path === '/test/introspections' && ctx.method === 'GET') {
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { count };
      return;
    }
    await next();
  };
}

const jwks = loadJwks();
const rsKey = generateRsKey();
const server = http.createServer();
server.on('error', (err) => fail(`cannot listen on 127.0.0.1:${port}: ${err.message}`));
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  let provider;
  try {
    provider = new Provider(issuer, configuration(jwks, rsKey));
  } catch (err) {
    fail(`invalid configuration: ${err.stack}`);
  }
  provider.use(introspectionCounter(provider));
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  server.on('request', provider.callback());
  console.log(`RS_KEY ${Buffer.from(rsKey.privatePem).toString('base64')}`);
  console.log(`READY ${issuer}`);
});

function shutdown() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (args['exit-with-stdin']) {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
