// The official MCP TypeScript SDK as a client of a tokenguard-protected MCP
// server (tests/it/rmcp.rs runs it against examples/mcp_server.rs).
//
//   node client.mjs <server URL> [--token T] [tool | tool=<JSON arguments>]...
//   node client.mjs <server URL> --client-id ID --client-secret S --issuer URL [--scope "a b"] [tool ...]
//
// Connects with StreamableHTTPClientTransport. With --token, the token goes
// as `Authorization: Bearer` (through `requestInit`); with --client-id, the
// SDK's own OAuth support does the whole dance: the server's 401 →
// `resource_metadata` → the RFC 9728 document → the authorization server's
// metadata → a client credentials token for the resource (RFC 8707) → the
// request again. Without either, no token is sent. Then it lists the tools,
// calls each tool named, and prints ONE line of JSON:
//   {"connected": true, "server", "tools": [...], "calls": [{"name", "result"} | {"name", "error": {code, message, data}}],
//    "oauth": {token_type, scope}, "oauth_after": {token_type, scope}}   (the last two with --client-id)
//   {"connected": false, "error": {"name", "message", "code"}}     when connecting fails (e.g. HTTP 401)
// Exit status 0 whenever that line was printed.

import { parseArgs } from 'node:util';

import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const USAGE =
  'usage: node client.mjs <server URL> [--token T | --client-id ID --client-secret S --issuer URL [--scope S]] [tool | tool=<JSON arguments>]...';

let parsed;
try {
  parsed = parseArgs({
    options: {
      token: { type: 'string' },
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
      issuer: { type: 'string' },
      scope: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
} catch (e) {
  console.error(`${e.message}\n${USAGE}`);
  process.exit(2);
}
const { values: args, positionals } = parsed;
const [url, ...calls] = positionals;
if (!url) {
  console.error(USAGE);
  process.exit(2);
}

const options = {};
if (args.token) {
  options.requestInit = { headers: { Authorization: `Bearer ${args.token}` } };
} else if (args['client-id']) {
  if (!args['client-secret'] || !args.issuer) {
    console.error(`--client-id needs --client-secret and --issuer\n${USAGE}`);
    process.exit(2);
  }
  options.authProvider = new ClientCredentialsProvider({
    clientId: args['client-id'],
    clientSecret: args['client-secret'],
    expectedIssuer: args.issuer,
    scope: args.scope,
  });
}
const transport = new StreamableHTTPClientTransport(new URL(url), options);
const client = new Client({ name: 'tokenguard-mcp-e2e', version: '0.0.0' });

const describe = (e) => ({ name: e?.name, message: String(e?.message ?? e), code: e?.code, data: e?.data });

try {
  await client.connect(transport);
} catch (e) {
  console.log(JSON.stringify({ connected: false, error: describe(e) }));
  process.exit(0);
}

const out = { connected: true, server: client.getServerVersion()?.name, tools: [], calls: [] };
if (options.authProvider) {
  // What the SDK obtained, never the token itself.
  const tokens = options.authProvider.tokens();
  out.oauth = { token_type: tokens?.token_type, scope: tokens?.scope };
}
try {
  const { tools } = await client.listTools();
  out.tools = tools.map((t) => t.name);
  for (const call of calls) {
    const at = call.indexOf('=');
    const name = at < 0 ? call : call.slice(0, at);
    const callArgs = at < 0 ? {} : JSON.parse(call.slice(at + 1));
    try {
      out.calls.push({ name, result: await client.callTool({ name, arguments: callArgs }) });
    } catch (e) {
      out.calls.push({ name, error: describe(e) });
    }
  }
} finally {
  await client.close();
}
if (options.authProvider) {
  // After the calls: a 403 insufficient_scope makes the SDK get a new token.
  const tokens = options.authProvider.tokens();
  out.oauth_after = { token_type: tokens?.token_type, scope: tokens?.scope };
}
console.log(JSON.stringify(out));
