#!/usr/bin/env python3
"""Token helpers for bench/run.sh (Python 3 standard library only).

Traffic goes to 127.0.0.1 only; every loop is bounded.

  tokens.py mock-idp-code ISSUER --scope "openid profile" [--prompt consent] [--field access_token]
      The code flow with PKCE S256 against `mock-idp --auto-login USER`
      (client chat-example, redirect http://127.0.0.1:1/callback); prints the
      token response (or one field of it).

  tokens.py oidc-provider-code ISSUER --scope "openid profile" [--prompt consent]
            [--resource urn:bench:api] [--login alice] [--field refresh_token]
      The code flow with PKCE S256 against bench/oidc-provider.mjs (client
      bench-app), signing in and consenting through its devInteractions pages.

  tokens.py check METHOD URL [--header 'Name: value']... [--data BODY]
            [--expect KEY,KEY] [--jwt KEY,KEY]
      One request; exits 1 unless the answer is 200 with a JSON object that
      has every --expect key, and every --jwt key holds a JWT signed with
      RS256. Prints one line: `ok 200 <n> RS256 signature(s) ...`.
"""

import argparse
import base64
import hashlib
import http.client
import json
import re
import secrets
import sys
import urllib.parse

REDIRECT_MOCK_IDP = "http://127.0.0.1:1/callback"
REDIRECT_OIDC_PROVIDER = "http://127.0.0.1:1/callback"
MAX_HOPS = 12


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce():
    verifier = b64url(secrets.token_bytes(32))
    challenge = b64url(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge


def request(method, url, headers=None, body=None, timeout=10):
    """One HTTP/1.1 request to 127.0.0.1; returns (status, headers, body bytes)."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or u.hostname != "127.0.0.1":
        raise SystemExit(f"refusing a request to {url}: only http://127.0.0.1 is allowed")
    conn = http.client.HTTPConnection("127.0.0.1", u.port, timeout=timeout)
    try:
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        hdrs = dict(headers or {})
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def header(headers, name):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def fail(msg):
    print(f"tokens.py: {msg}", file=sys.stderr)
    sys.exit(1)


def token_request(issuer, form, auth=None):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if auth:
        headers["Authorization"] = auth
    status, _, body = request("POST", issuer + "/token", headers, urllib.parse.urlencode(form))
    if status != 200:
        fail(f"token request answered {status}: {body[:300]!r}")
    return json.loads(body)


def code_from_location(location, redirect_uri, state):
    if not location or not location.startswith(redirect_uri):
        fail(f"expected a redirect to {redirect_uri}, got {location!r}")
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    if "error" in q:
        fail(f"authorization error: {q}")
    if q.get("state") != [state]:
        fail(f"state mismatch in {location!r}")
    return q["code"][0]


def mock_idp_code(args):
    issuer = args.issuer.rstrip("/")
    verifier, challenge = pkce()
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    params = {
        "response_type": "code",
        "client_id": "chat-example",
        "redirect_uri": REDIRECT_MOCK_IDP,
        "scope": args.scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if args.prompt:
        params["prompt"] = args.prompt
    status, headers, body = request("GET", issuer + "/authorize?" + urllib.parse.urlencode(params))
    if status != 303:
        fail(f"/authorize answered {status} (is mock-idp running with --auto-login?): {body[:300]!r}")
    code = code_from_location(header(headers, "Location"), REDIRECT_MOCK_IDP, state)
    return token_request(issuer, {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "client_id": "chat-example",
        "redirect_uri": REDIRECT_MOCK_IDP,
    })


def oidc_provider_code(args):
    issuer = args.issuer.rstrip("/")
    verifier, challenge = pkce()
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    params = {
        "response_type": "code",
        "client_id": "bench-app",
        "redirect_uri": REDIRECT_OIDC_PROVIDER,
        "scope": args.scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if args.prompt:
        params["prompt"] = args.prompt
    if args.resource:
        params["resource"] = args.resource
    jar = {}

    def send(method, url, body=None):
        headers = {}
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urllib.parse.urlencode(body)
        status, hdrs, data = request(method, url, headers, body)
        for k, v in hdrs:
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                value = rest.split(";", 1)[0]
                if value and "expires=Thu, 01 Jan 1970" not in v:
                    jar[name.strip()] = value
                else:
                    jar.pop(name.strip(), None)
        return status, hdrs, data

    url = issuer + "/authorize?" + urllib.parse.urlencode(params)
    status, hdrs, data = send("GET", url)
    for _ in range(MAX_HOPS):
        if status not in (302, 303):
            fail(f"{url} answered {status}: {data[:300]!r}")
        location = urllib.parse.urljoin(url, header(hdrs, "Location"))
        if location.startswith(REDIRECT_OIDC_PROVIDER):
            code = code_from_location(location, REDIRECT_OIDC_PROVIDER, state)
            form = {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "client_id": "bench-app",
                "redirect_uri": REDIRECT_OIDC_PROVIDER,
            }
            return token_request(issuer, form)
        url = location
        if urllib.parse.urlsplit(url).path.startswith("/interaction/"):
            status, hdrs, page = send("GET", url)
            if status != 200:
                fail(f"interaction page answered {status}: {page[:300]!r}")
            m = re.search(rb'name="prompt" value="(\w+)"', page)
            if not m:
                fail(f"no prompt on the interaction page: {page[:500]!r}")
            prompt = m.group(1).decode()
            if prompt == "login":
                form = {"prompt": "login", "login": args.login, "password": args.login}
            elif prompt == "consent":
                form = {"prompt": "consent"}
            else:
                fail(f"unexpected prompt {prompt}")
            status, hdrs, data = send("POST", url, form)
        else:
            status, hdrs, data = send("GET", url)
    fail(f"no code after {MAX_HOPS} redirects")


def jwt_alg(token):
    try:
        head = token.split(".")[0]
        head += "=" * (-len(head) % 4)
        return json.loads(base64.urlsafe_b64decode(head)).get("alg")
    except (ValueError, AttributeError, IndexError):
        return None


def check(args):
    headers = {}
    for h in args.header or []:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    if args.data is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    status, _, body = request(args.method, args.url, headers, args.data)
    if status != 200:
        fail(f"check {args.method} {args.url}: status {status}, body {body[:300]!r}")
    try:
        doc = json.loads(body)
    except ValueError:
        fail(f"check {args.method} {args.url}: not JSON: {body[:300]!r}")
    if not isinstance(doc, dict):
        fail(f"check {args.method} {args.url}: not a JSON object")
    expect = [k for k in (args.expect or "").split(",") if k]
    missing = [k for k in expect if k not in doc]
    if missing:
        fail(f"check {args.method} {args.url}: missing {missing} in {sorted(doc)}")
    jwts = [k for k in (args.jwt or "").split(",") if k]
    for k in jwts:
        alg = jwt_alg(doc.get(k))
        if alg != "RS256":
            fail(f"check {args.method} {args.url}: {k} is not an RS256 JWT (alg {alg})")
    print(f"ok 200 {len(jwts)} RS256 signature(s) [{', '.join(jwts) or '-'}] keys: {', '.join(sorted(doc))}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("mock-idp-code", "oidc-provider-code"):
        s = sub.add_parser(name)
        s.add_argument("issuer")
        s.add_argument("--scope", required=True)
        s.add_argument("--prompt")
        s.add_argument("--field")
        if name == "oidc-provider-code":
            s.add_argument("--resource")
            s.add_argument("--login", default="alice")
    c = sub.add_parser("check")
    c.add_argument("method")
    c.add_argument("url")
    c.add_argument("--header", action="append")
    c.add_argument("--data")
    c.add_argument("--expect")
    c.add_argument("--jwt")
    args = p.parse_args()
    if args.cmd == "check":
        check(args)
        return
    tokens = mock_idp_code(args) if args.cmd == "mock-idp-code" else oidc_provider_code(args)
    if args.field:
        if args.field not in tokens:
            fail(f"no {args.field} in the token response (keys: {sorted(tokens)})")
        print(tokens[args.field])
    else:
        print(json.dumps(tokens))


if __name__ == "__main__":
    main()
