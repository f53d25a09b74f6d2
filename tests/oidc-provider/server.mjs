// panva/oidc-provider, configured for sessionkit's interoperability tests
// (tests/tests/oidc_provider.rs starts it; nothing here is sessionkit's code).
//
//   node tests/oidc-provider/server.mjs
//
// Listens on 127.0.0.1 on a free port and prints one line on stdout:
//   oidc-provider listening on http://127.0.0.1:PORT
// That URL is the issuer. It runs until stdin closes (the test that started
// it ends) or it gets SIGTERM/SIGINT.
//
// The provider as an app would run it, in development mode (plain http on
// loopback; its built-in login and consent pages, "devInteractions"):
// - client `sessionkit-interop`: public (PKCE, no secret), native, redirect
//   http://127.0.0.1/callback on any port (RFC 8252; oidc-provider ignores
//   the port of loopback redirects of native clients), authorization code
//   and refresh token grants;
// - refresh tokens for offline_access (issueRefreshToken), rotated at every
//   use (rotateRefreshToken); a used one presented again revokes the grant
//   (oidc-provider's reuse detection);
// - revocation (RFC 7009), userinfo, RP-initiated logout; access tokens are
//   opaque (no resource indicator is asked for);
// - signing keys made at start: RSA (RS256, ID tokens of the interop
//   client), EC P-256 (ES256) and two Ed25519 keys (one labelled `EdDSA`,
//   one `Ed25519`, RFC 9864's name), with clients `sessionkit-interop-es256`,
//   `-eddsa` and `-ed25519` whose ID tokens are signed with each.
//
// - DPoP (RFC 9449) with nonces required (`features.dPoP`: a proof without
//   the provider's current nonce is answered `use_dpop_nonce`; with
//   SESSIONKIT_DPOP_NONCE=0 there are no nonces, and a proof's `iat` must be
//   recent instead — with a nonce, oidc-provider takes the nonce as the
//   proof's freshness and does not look at `iat`), and client
//   `sessionkit-interop-dpop` whose tokens must be DPoP-bound
//   (`dpop_bound_access_tokens`);
// - pushed authorization requests (RFC 9126, on by default in
//   oidc-provider 9), required for every client when started with
//   SESSIONKIT_REQUIRE_PAR=1 (discovery then says
//   `require_pushed_authorization_requests: true`).
//
// - client `sessionkit-interop-chat` (DPoP-bound tokens required) for the
//   example chat: its access tokens are for the resource
//   `urn:sessionkit:chat-server` by default (RFC 8707, kept at refresh):
//   JWTs (RFC 9068, ES256) with audience `chat-server`, which chat-server
//   verifies with this provider's JWKS; their lifetime is
//   SESSIONKIT_ACCESS_TOKEN_TTL seconds when set (else an hour).
//
// For the tests, GET /_test/log answers what happened, without any token:
// the provider's events (grant.success, grant.error, grant.revoked, ...) with
// the grant type and error, and every request (method, path, status).

import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const CLIENT_ID = 'sessionkit-interop';

// Node 20's export of a private key as a JWK now and then never returns
// (about one key in a few hundred on the CI machines, seen with RSA first and
// then with the EC or Ed25519 keys, which were made in this process and
// hung it). So every key is made and exported in a child process, killed
// and made again if it takes more than 10 s.
function privateJwks(specs) {
  const code = `const { generateKeyPairSync } = require('node:crypto');
    const specs = ${JSON.stringify(specs)};
    process.stdout.write(JSON.stringify(specs.map(([type, options]) =>
      generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' }))));`;
  for (let attempt = 1; attempt <= 5; attempt += 1) {
    const child = spawnSync(process.execPath, ['-e', code], { timeout: 10_000, encoding: 'utf8' });
    if (child.status === 0 && child.stdout) return JSON.parse(child.stdout);
    process.stderr.write(`oidc-provider start: key attempt ${attempt} failed (${child.signal ?? child.status})\n`);
  }
  throw new Error('could not make the signing keys in 5 attempts');
}

function signingKeys(specs) {
  return privateJwks(specs.map(([type, options]) => [type, options])).map((jwk, i) => {
    const alg = specs[i][2];
    return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${randomBytes(4).toString('hex')}` };
  });
}

process.stderr.write('oidc-provider start: modules loaded\n');
const jwks = {
  keys: signingKeys([
    ['rsa', { modulusLength: 2048 }, 'RS256'],
    ['ec', { namedCurve: 'P-256' }, 'ES256'],
    ['ed25519', {}, 'EdDSA'],
    // The fully-specified name of the same algorithm (RFC 9864).
    ['ed25519', {}, 'Ed25519'],
  ]),
};

// Every user exists; the password is not checked (devInteractions' page says
// "Enter any login"). A user's claims follow from the login name.
async function findAccount(_ctx, sub) {
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        name: sub.charAt(0).toUpperCase() + sub.slice(1),
        preferred_username: sub,
        email: `${sub}@example.test`,
        email_verified: true,
      };
    },
  };
}

// What the tests read back: events and requests, never a token.
const log = { events: [], requests: [] };
function record(event, fields = {}) {
  log.events.push({ event, ...fields });
  process.stderr.write(`oidc-provider event ${JSON.stringify({ event, ...fields })}\n`);
}

process.stderr.write('oidc-provider start: keys made\n');
const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
process.stderr.write('oidc-provider start: socket bound\n');

// The interop client, and the same client with ID tokens signed by each of
// the other algorithms (`sessionkit-interop-es256`, ...).
const client = {
  client_id: CLIENT_ID,
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  redirect_uris: ['http://127.0.0.1/callback'],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
};
const clients = [
  client,
  ...['ES256', 'EdDSA', 'Ed25519'].map((alg) => ({
    ...client,
    client_id: `${CLIENT_ID}-${alg.toLowerCase()}`,
    id_token_signed_response_alg: alg,
  })),
  { ...client, client_id: `${CLIENT_ID}-dpop`, dpop_bound_access_tokens: true },
  { ...client, client_id: `${CLIENT_ID}-chat`, dpop_bound_access_tokens: true },
];
const CHAT_RESOURCE = 'urn:sessionkit:chat-server';
const accessTokenTtl = Number(process.env.SESSIONKIT_ACCESS_TOKEN_TTL || 3600);

const provider = new Provider(issuer, {
  clients,
  findAccount,
  jwks,
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    dPoP: process.env.SESSIONKIT_DPOP_NONCE === '0'
      ? { enabled: true }
      : { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true },
    resourceIndicators: {
      enabled: true,
      async defaultResource(_ctx, client, oneOf) {
        if (oneOf) return oneOf;
        return client?.clientId === `${CLIENT_ID}-chat` ? CHAT_RESOURCE : undefined;
      },
      async useGrantedResource() {
        return true;
      },
      async getResourceServerInfo(_ctx, resource) {
        if (resource !== CHAT_RESOURCE) throw new errors.InvalidTarget();
        return {
          scope: 'openid profile offline_access',
          audience: 'chat-server',
          accessTokenFormat: 'jwt',
          accessTokenTTL: accessTokenTtl,
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
    pushedAuthorizationRequests: {
      enabled: true,
      requirePushedAuthorizationRequests: process.env.SESSIONKIT_REQUIRE_PAR === '1',
    },
  },
  pkce: { required: () => true },
  async issueRefreshToken(_ctx, client, source) {
    return client.grantTypeAllowed('refresh_token') && source.scopes.has('offline_access');
  },
  rotateRefreshToken: true,
  ttl: {
    AccessToken: accessTokenTtl,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    Session: 24 * 3600,
    Interaction: 600,
    AuthorizationCode: 60,
  },
});

provider.on('grant.success', (ctx) => record('grant.success', { grant_type: ctx.oidc.params?.grant_type }));
provider.on('grant.error', (ctx, err) => record('grant.error', { grant_type: ctx.oidc?.params?.grant_type, error: err.error }));
provider.on('grant.revoked', () => record('grant.revoked'));
provider.on('refresh_token.consumed', () => record('refresh_token.consumed'));
provider.on('refresh_token.destroyed', () => record('refresh_token.destroyed'));
provider.on('revocation.error', (_ctx, err) => record('revocation.error', { error: err.error }));
provider.on('userinfo.error', (_ctx, err) => record('userinfo.error', { error: err.error }));
provider.on('end_session.success', () => record('end_session.success'));
provider.on('authorization.error', (_ctx, err) => record('authorization.error', { error: err.error }));
provider.on('server_error', (_ctx, err) => record('server_error', { error: String(err) }));

provider.use(async (ctx, next) => {
  if (ctx.path === '/_test/log' && ctx.method === 'GET') {
    ctx.body = log;
    return;
  }
  try {
    await next();
  } finally {
    log.requests.push({ method: ctx.method, path: ctx.path, status: ctx.status });
  }
});

server.on('request', provider.callback());
process.stdout.write(`oidc-provider listening on ${issuer}\n`);

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The test holds our stdin open; when it ends (or is killed), so do we.
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
