// A minimal oauth2-mock-server for the benchmark in bench/run.sh.
//
//   node bench/oauth2-mock-server.mjs PORT   (or PORT=... node bench/oauth2-mock-server.mjs)
//
// Listens on 127.0.0.1:PORT with one RS256 key (RSA-2048, generated at start)
// and prints `oauth2-mock-server listening on URL` once it accepts connections.
// It accepts any client and any bearer token; its refresh_token grant answers
// with a new access token and an ID token (two RS256 signatures), its
// client_credentials grant with an access token (one signature).

import { OAuth2Server } from 'oauth2-mock-server';

const port = Number(process.argv[2] ?? process.env.PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node oauth2-mock-server.mjs PORT');
  process.exit(2);
}

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
await server.start(port, '127.0.0.1');
console.log(`oauth2-mock-server listening on http://127.0.0.1:${port} (issuer ${server.issuer.url})`);

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => {
    await server.stop();
    process.exit(0);
  });
}
