// A minimal oidc-provider (panva) for the benchmark in bench/run.sh.
//
//   node bench/oidc-provider.mjs PORT        (or PORT=... node bench/oidc-provider.mjs)
//
// Listens on 127.0.0.1:PORT and prints `oidc-provider listening on URL` once
// it accepts connections. Everything is in memory (the default adapter).
//
// - RS256 everywhere: one RSA-2048 key generated at start with node:crypto and
//   handed to the provider as a private JWK; ID tokens and JWT access tokens
//   are signed with it.
// - `bench-app`: a public client (PKCE S256, like mock-idp's `chat-example`)
//   with the code and refresh grants and redirect http://127.0.0.1:1/callback.
//   Users sign in through the built-in devInteractions pages (any login).
// - `bench-cc`: a confidential client (client_secret_basic, secret
//   `bench-cc-secret`) with the client credentials grant.
// - Resource indicators: `urn:bench:api` is a resource server whose access
//   tokens are RS256 JWTs (like mock-idp's access tokens for `chat-server`).
//   Tokens without a resource are opaque and are the ones /userinfo accepts.
// - rotateRefreshToken: false, so one refresh token serves every request.
// - Routes: /authorize and /userinfo (instead of /auth and /me) so that every
//   provider in the benchmark has the same paths.

import crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node oidc-provider.mjs PORT');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-rs256', alg: 'RS256', use: 'sig' };

const API = 'urn:bench:api';

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  clients: [
    {
      client_id: 'bench-app',
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      redirect_uris: ['http://127.0.0.1:1/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      id_token_signed_response_alg: 'RS256',
    },
    {
      client_id: 'bench-cc',
      client_secret: 'bench-cc-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'api:read',
    },
  ],
  scopes: ['openid', 'offline_access', 'profile', 'api:read'],
  claims: { openid: ['sub'], profile: ['name'] },
  findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, name: `${sub} example` };
      },
    };
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource) => {
        if (resource !== API) throw new errors.InvalidTarget();
        return {
          scope: 'api:read',
          audience: API,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  pkce: { required: () => true },
  rotateRefreshToken: false,
  routes: { authorization: '/authorize', userinfo: '/userinfo' },
  ttl: {
    AccessToken: 300,
    IdToken: 300,
    ClientCredentials: 300,
    RefreshToken: 86400,
    Session: 86400,
    Grant: 86400,
    Interaction: 600,
    AuthorizationCode: 60,
  },
});

// Without a listener oidc-provider prints every error on stderr; keep quiet
// (wrk's Lua hook counts non-200 answers instead).
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
