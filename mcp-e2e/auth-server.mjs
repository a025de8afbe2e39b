// A real OAuth 2.0 authorization server (panva's oidc-provider) for the MCP
// end-to-end test of tests/it/rmcp.rs: the MCP TypeScript SDK client finds it
// through the MCP server's 401 and RFC 9728 document, and gets its token
// here with the client credentials grant.
//
//   node auth-server.mjs [--port N] [--exit-with-stdin]
//
// Prints `READY <issuer>` once listening on 127.0.0.1 (`--port 0`, the
// default: a free port). One confidential client, CLIENT_ID / CLIENT_SECRET
// below (client_secret_basic, client_credentials only). Access tokens are
// RFC 9068 JWTs (ES256, `typ: at+jwt`) whose `aud` is the resource indicator
// (RFC 8707) the client names: any `http://127.0.0.1:PORT/mcp` (the test's
// MCP server), granting what it asks of `read:invoices write:invoices`.
// Keys are new at every start.

import crypto from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const CLIENT_ID = 'mcp-e2e-client';
const CLIENT_SECRET = 'mcp-e2e-client-secret-0123456789abcdef';
const SCOPE = 'read:invoices write:invoices';
const ACCESS_TOKEN_TTL = 300;

function fail(message) {
  console.error(`auth-server.mjs: ${message}`);
  process.exit(2);
}

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'exit-with-stdin': { type: 'boolean', default: false },
  },
  strict: true,
});
const port = Number(args.port);
if (!/^\d+$/.test(args.port) || port > 65535) fail(`invalid port ${JSON.stringify(args.port)}`);

/** The MCP servers of the test: loopback, path /mcp. */
function isTestResource(indicator) {
  try {
    const url = new URL(indicator);
    return url.protocol === 'http:' && url.hostname === '127.0.0.1' && url.pathname === '/mcp' && !url.search && !url.hash;
  } catch {
    return false;
  }
}

function signingKey() {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: `ec-${crypto.randomBytes(6).toString('base64url')}`, use: 'sig', alg: 'ES256' };
}

function configuration() {
  return {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        // Only ES256 keys: no RS256 default for ID tokens it never gets.
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys: [signingKey()] },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        // No default: the client must name the MCP server it wants a token for.
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        async getResourceServerInfo(_ctx, resourceIndicator) {
          if (!isTestResource(resourceIndicator)) throw new errors.InvalidTarget();
          return {
            scope: SCOPE,
            audience: resourceIndicator,
            accessTokenTTL: ACCESS_TOKEN_TTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    ttl: { AccessToken: ACCESS_TOKEN_TTL, ClientCredentials: ACCESS_TOKEN_TTL },
  };
}

const server = http.createServer();
server.on('error', (err) => fail(`cannot listen on 127.0.0.1:${port}: ${err.message}`));
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  let provider;
  try {
    provider = new Provider(issuer, configuration());
  } catch (err) {
    fail(`invalid configuration: ${err.stack}`);
  }
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  provider.on('grant.error', (_ctx, err) => console.error('grant.error', err.message, err.error_description ?? ''));
  server.on('request', provider.callback());
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
