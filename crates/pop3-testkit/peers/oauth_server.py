#!/usr/bin/python3
"""An OAuth 2.0 / OpenID Connect authorization server for the tests, built on Authlib.

It issues JWT access tokens (RFC 9068 style claims) signed with RS256, ES256 or EdDSA keys it
publishes as a JWKS, and answers token introspection (RFC 7662) and revocation (RFC 7009)
through Authlib's endpoints. Users get tokens with the resource owner password grant, which
keeps the tests free of browsers; the client authenticates with client_secret_basic.

Test controls (loopback only, never part of a real server):
  POST /admin/rotate      new signing keys with new key ids; keep_old=1 still publishes the old
  POST /admin/behaviour   mode=normal|stall|garbage|down for /jwks and /introspect
  GET  /admin/stats       how many times the JWKS and the introspection endpoint were asked

Token request extras for the tests: alg (RS256, ES256, EdDSA), expires_in (seconds, may be
negative for a token that is already expired), aud (another audience).

Usage: oauth_server.py [--tls CERT KEY] [--audience AUD] [--bench-users N]; prints
"READY <port>" once listening on 127.0.0.1. --bench-users adds user0..user(N-1), password
"secret", for the load generator (cargo xtask authbench).
"""

import argparse
import os
import secrets
import sys
import threading
import time

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.jose import JsonWebKey, KeySet, jwt
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

USERS = {
    "alice": {"password": "alice-secret", "email": "alice@example.org"},
    "bob": {"password": "bob-secret", "email": "bob@example.org"},
    "carol": {"password": "carol-secret", "email": "carol@example.org"},
}

# The client pop3d (or a mail client) is registered as; pop3d's introspection uses it too.
CLIENT_ID = "pop3-test-client"
CLIENT_SECRET = "pop3-test-client-secret"
SCOPES = "openid email offline_access pop3"

LOCK = threading.Lock()
STATE = {"mode": "normal", "jwks_fetches": 0, "introspections": 0, "generation": 0}
KEYS = {}  # alg -> private JsonWebKey
PUBLISHED = []  # public JWKs (dicts) in the JWKS
TOKENS = {}  # access token -> Token


def new_keys(keep_old):
    """Signing keys for every algorithm, with key ids naming their generation."""
    STATE["generation"] += 1
    generation = STATE["generation"]
    fresh = {
        "RS256": JsonWebKey.generate_key("RSA", 2048, is_private=True),
        "ES256": JsonWebKey.generate_key("EC", "P-256", is_private=True),
        "EdDSA": JsonWebKey.generate_key("OKP", "Ed25519", is_private=True),
    }
    public = []
    for alg, key in fresh.items():
        key.options["kid"] = f"{alg.lower()}-{generation}-{secrets.token_hex(4)}"
        data = key.as_dict(is_private=False)
        data["kid"] = key.options["kid"]
        data["alg"] = alg
        data["use"] = "sig"
        public.append(data)
    if not keep_old:
        PUBLISHED.clear()
    PUBLISHED.extend(public)
    KEYS.clear()
    KEYS.update(fresh)


class Client:
    """The one registered client (Authlib's ClientMixin methods)."""

    client_id = CLIENT_ID

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        allowed = set(SCOPES.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, CLIENT_SECRET)

    def check_endpoint_auth_method(self, method, endpoint):
        return method == "client_secret_basic"

    def check_response_type(self, response_type):
        return False

    def check_grant_type(self, grant_type):
        return grant_type == "password"


class Token:
    """An issued access token, as introspection and revocation see it."""

    def __init__(self, value, user, scope, expires_at, audience):
        self.value = value
        self.user = user
        self.scope = scope
        self.expires_at = expires_at
        self.audience = audience
        self.revoked = False

    def check_client(self, client):
        return client.client_id == CLIENT_ID

    def is_expired(self):
        return time.time() >= self.expires_at

    def is_revoked(self):
        return self.revoked


class PasswordGrant(grants.ResourceOwnerPasswordCredentialsGrant):
    def authenticate_user(self, username, password):
        user = USERS.get(username)
        if user and secrets.compare_digest(user["password"], password):
            return username
        return None


def lifetime():
    return int(request.form.get("expires_in", "3600"))


def make_access_token(client, grant_type, user, scope):
    """A signed JWT (RFC 9068 claims) for `user`; the tests pick the algorithm and lifetime."""
    alg = request.form.get("alg", "RS256")
    now = int(time.time())
    expires_at = now + lifetime()
    audience = request.form.get("aud", AUDIENCE)
    claims = {
        "iss": ISSUER,
        "sub": f"sub-{user}",
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": expires_at,
        "jti": secrets.token_hex(8),
        "client_id": client.client_id,
        "scope": scope or "",
        "email": USERS[user]["email"],
        "preferred_username": user,
    }
    key = KEYS[alg]
    header = {"alg": alg, "typ": "at+jwt", "kid": key.options["kid"]}
    value = jwt.encode(header, claims, key).decode()
    with LOCK:
        TOKENS[value] = Token(value, user, scope or "", expires_at, audience)
    return value


class Introspection(IntrospectionEndpoint):
    def query_token(self, token_string, token_type_hint):
        with LOCK:
            return TOKENS.get(token_string)

    def introspect_token(self, token):
        return {
            "active": True,
            "client_id": CLIENT_ID,
            "token_type": "Bearer",
            "username": token.user,
            "email": USERS[token.user]["email"],
            "scope": token.scope,
            "sub": f"sub-{token.user}",
            "aud": token.audience,
            "iss": ISSUER,
            "exp": token.expires_at,
        }

    def check_permission(self, token, client, request):
        return client.client_id == CLIENT_ID


class Revocation(RevocationEndpoint):
    def query_token(self, token_string, token_type_hint):
        with LOCK:
            return TOKENS.get(token_string)

    def revoke_token(self, token, request):
        token.revoked = True


app = Flask(__name__)
server = AuthorizationServer(app, query_client=lambda cid: Client() if cid == CLIENT_ID else None,
                             save_token=lambda token, req: None)
server.register_grant(PasswordGrant)
server.register_token_generator(
    "default", BearerTokenGenerator(make_access_token, expires_generator=lambda c, g: lifetime()))
server.register_endpoint(Introspection)
server.register_endpoint(Revocation)


def misbehave():
    """What /jwks and /introspect do in the mode the test chose, or None when normal."""
    mode = STATE["mode"]
    if mode == "stall":
        time.sleep(30)
    if mode == "garbage":
        return Response(b"\x00\xffnot json{", status=200, content_type="application/json")
    if mode == "down":
        return Response("unavailable", status=503)
    return None


@app.get("/.well-known/openid-configuration")
def discovery():
    return jsonify({
        "issuer": ISSUER,
        "jwks_uri": f"{ISSUER}/jwks",
        "token_endpoint": f"{ISSUER}/token",
        "introspection_endpoint": f"{ISSUER}/introspect",
        "revocation_endpoint": f"{ISSUER}/revoke",
        "grant_types_supported": ["password"],
        "scopes_supported": SCOPES.split(),
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    })


@app.get("/jwks")
def jwks():
    with LOCK:
        STATE["jwks_fetches"] += 1
    odd = misbehave()
    if odd is not None:
        return odd
    with LOCK:
        return jsonify(KeySet([]).as_dict() | {"keys": list(PUBLISHED)})


@app.post("/token")
def token():
    return server.create_token_response()


@app.post("/introspect")
def introspect():
    with LOCK:
        STATE["introspections"] += 1
    odd = misbehave()
    if odd is not None:
        return odd
    return server.create_endpoint_response("introspection")


@app.post("/revoke")
def revoke():
    return server.create_endpoint_response("revocation")


@app.post("/admin/rotate")
def rotate():
    with LOCK:
        new_keys(keep_old=request.form.get("keep_old") == "1")
        return jsonify({"kids": [k["kid"] for k in PUBLISHED]})


@app.post("/admin/behaviour")
def behaviour():
    with LOCK:
        STATE["mode"] = request.form["mode"]
    return jsonify({"mode": STATE["mode"]})


@app.get("/admin/stats")
def stats():
    with LOCK:
        return jsonify({k: STATE[k] for k in ("jwks_fetches", "introspections", "mode")})


def main():
    global ISSUER, AUDIENCE
    parser = argparse.ArgumentParser()
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--audience", default="pop3")
    parser.add_argument("--bench-users", type=int, default=0)
    args = parser.parse_args()
    for n in range(args.bench_users):
        USERS[f"user{n}"] = {"password": "secret", "email": f"user{n}@example.org"}
    AUDIENCE = args.audience
    if not args.tls:
        # Authlib insists on https; plain http is for loopback tests only.
        os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    httpd = make_server("127.0.0.1", 0, app, threaded=True,
                        ssl_context=tuple(args.tls) if args.tls else None)
    scheme = "https" if args.tls else "http"
    ISSUER = f"{scheme}://127.0.0.1:{httpd.server_port}"
    new_keys(keep_old=False)
    print(f"READY {httpd.server_port}", flush=True)
    sys.stdout.flush()
    httpd.serve_forever()


ISSUER = ""
AUDIENCE = "pop3"

if __name__ == "__main__":
    main()
