#!/usr/bin/python3
"""An OAuth 2.0 / OpenID Connect authorization server for the tests, built on Authlib.

It issues JWT access tokens (RFC 9068 style claims) signed with RS256, ES256 or EdDSA keys it
publishes as a JWKS, and answers token introspection (RFC 7662) and revocation (RFC 7009)
through Authlib's endpoints. Users get tokens with the resource owner password grant, which
keeps the tests free of browsers; the client authenticates with client_secret_basic.

A second, public client (no secret: the `pop3` retriever, an installed application in RFC 8252's
words) gets tokens as a real mail client does: the authorization code grant with PKCE (S256
required) and a loopback redirect URI on any port (RFC 8252 section 7.3), or the device
authorization grant (RFC 8628); each comes with a refresh token, which is rotated on every use
(the old one stops working) and can be revoked (RFC 7009, as the public client).

Test controls (loopback only, never part of a real server):
  POST /admin/rotate      new signing keys with new key ids; keep_old=1 still publishes the old
  POST /admin/behaviour   mode=normal|stall|garbage|down for /jwks and /introspect
  POST /admin/token_behaviour  mode=normal|stall|lose for /token: stall waits 30 s and answers
                          503 without doing anything; lose does what was asked (a refresh token
                          is rotated) and then waits 30 s before answering, as when the answer is
                          lost on its way
  POST /admin/login       user=NAME: the user the authorization endpoint approves as (no login
                          page: whoever follows the authorization URL is that user); empty: none
  POST /admin/lifetime    seconds=N: the lifetime of access tokens issued without expires_in
  POST /admin/device      user_code=CODE user=NAME approve=1|0: the user approves or denies;
                          or interval=N expires_in=N slow_down=N (the next N polls are told
                          slow_down) for device authorizations
  GET  /admin/stats       how many times the JWKS, the introspection and the token endpoint
                          were asked (token_requests counts refresh grants apart)

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
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import (DEVICE_CODE_GRANT_TYPE, DeviceAuthorizationEndpoint,
                                    DeviceCodeGrant)
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
# The public client the retriever is registered as (no secret: RFC 8252 section 8.5).
PUBLIC_CLIENT_ID = "pop3-retriever"

LOCK = threading.Lock()
STATE = {"mode": "normal", "jwks_fetches": 0, "introspections": 0, "generation": 0,
         "token_mode": "normal", "token_requests": 0, "refresh_requests": 0,
         "login": None, "access_lifetime": 3600,
         "device_interval": 1, "device_expires_in": 600, "slow_down": 0}
KEYS = {}  # alg -> private JsonWebKey
PUBLISHED = []  # public JWKs (dicts) in the JWKS
TOKENS = {}  # access token -> Token
REFRESH = {}  # refresh token -> RefreshToken
CODES = {}  # authorization code -> AuthorizationCode
DEVICES = {}  # device code -> DeviceCredential
USER_GRANTS = {}  # user code -> (user, approved)


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


def loopback_redirect(uri):
    """True for RFC 8252 section 7.3's loopback redirect: http on 127.0.0.1 or [::1], any port."""
    for host in ("http://127.0.0.1:", "http://[::1]:"):
        if uri.startswith(host):
            port, _, _ = uri[len(host):].partition("/")
            return port.isdigit()
    return False


class PublicClient:
    """The retriever: no secret, authorization code with PKCE, device grant, refresh tokens."""

    client_id = PUBLIC_CLIENT_ID
    GRANTS = ("authorization_code", "refresh_token", DEVICE_CODE_GRANT_TYPE)

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        allowed = set(SCOPES.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri):
        return loopback_redirect(redirect_uri)

    def check_client_secret(self, client_secret):
        return False

    def check_endpoint_auth_method(self, method, endpoint):
        return method == "none"

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type in self.GRANTS


def query_client(client_id):
    return {CLIENT_ID: Client, PUBLIC_CLIENT_ID: PublicClient}.get(client_id, lambda: None)()


class RefreshToken:
    """An issued refresh token: valid until used (rotation) or revoked."""

    def __init__(self, value, client_id, user, scope):
        self.value = value
        self.client_id = client_id
        self.user = user
        self.scope = scope
        self.revoked = False

    def check_client(self, client):
        return client.client_id == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return None  # the access tokens it gets have the current lifetime (/admin/lifetime)

    def is_expired(self):
        return False

    def is_revoked(self):
        return self.revoked


class AuthorizationCode:
    """A code issued to the public client, with its PKCE challenge; used once."""

    def __init__(self, code, request):
        self.code = code
        self.client_id = request.client_id
        self.user = request.user
        self.redirect_uri = request.redirect_uri
        self.scope = request.scope or ""
        self.code_challenge = request.data.get("code_challenge")
        self.code_challenge_method = request.data.get("code_challenge_method")
        self.expires_at = time.time() + 300

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

    def save_authorization_code(self, code, request):
        with LOCK:
            CODES[code] = AuthorizationCode(code, request)

    def query_authorization_code(self, code, client):
        with LOCK:
            item = CODES.get(code)
        if item and item.client_id == client.client_id and time.time() < item.expires_at:
            return item
        return None

    def delete_authorization_code(self, authorization_code):
        with LOCK:
            CODES.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return authorization_code.user


class RotatingRefreshGrant(grants.RefreshTokenGrant):
    """Refresh tokens are rotated: each use returns a new one and revokes the one used."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        with LOCK:
            item = REFRESH.get(refresh_token)
        if item and not item.revoked:
            return item
        return None

    def authenticate_user(self, credential):
        return credential.user

    def revoke_old_credential(self, credential):
        with LOCK:
            credential.revoked = True


class DeviceCredential:
    def __init__(self, client_id, scope, data):
        self.client_id = client_id
        self.scope = scope
        self.user_code = data["user_code"]
        self.expires_at = time.time() + data["expires_in"]

    def get_client_id(self):
        return self.client_id

    def get_scope(self):
        return self.scope

    def get_user_code(self):
        return self.user_code

    def is_expired(self):
        return time.time() >= self.expires_at


class DeviceAuthorization(DeviceAuthorizationEndpoint):
    CLIENT_AUTH_METHODS = ["none"]

    def create_endpoint_response(self, request):
        self.INTERVAL = STATE["device_interval"]
        self.EXPIRES_IN = STATE["device_expires_in"]
        return super().create_endpoint_response(request)

    def get_verification_uri(self):
        return f"{ISSUER}/device"

    def save_device_credential(self, client_id, scope, data):
        with LOCK:
            DEVICES[data["device_code"]] = DeviceCredential(client_id, scope or "", data)


class DeviceGrant(DeviceCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

    def query_device_credential(self, device_code):
        with LOCK:
            return DEVICES.get(device_code)

    def query_user_grant(self, user_code):
        with LOCK:
            return USER_GRANTS.get(user_code)

    def should_slow_down(self, credential):
        with LOCK:
            if STATE["slow_down"] > 0:
                STATE["slow_down"] -= 1
                return True
        return False


def make_refresh_token(client, grant_type, user, scope):
    value = secrets.token_urlsafe(32)
    with LOCK:
        REFRESH[value] = RefreshToken(value, client.client_id, user, scope or "")
    return value


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
    return int(request.form.get("expires_in", STATE["access_lifetime"]))


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
    # The public client revokes its refresh tokens with its client_id alone (RFC 7009 section 2.1).
    CLIENT_AUTH_METHODS = ["client_secret_basic", "none"]

    def query_token(self, token_string, token_type_hint):
        with LOCK:
            return TOKENS.get(token_string) or REFRESH.get(token_string)

    def revoke_token(self, token, request):
        token.revoked = True


app = Flask(__name__)
server = AuthorizationServer(app, query_client=query_client, save_token=lambda token, req: None)
server.register_grant(PasswordGrant)
server.register_grant(CodeGrant, [CodeChallenge(required=True)])
server.register_grant(RotatingRefreshGrant)
server.register_grant(DeviceGrant)
server.register_token_generator(
    "default", BearerTokenGenerator(make_access_token, make_refresh_token,
                                    expires_generator=lambda c, g: lifetime()))
server.register_endpoint(Introspection)
server.register_endpoint(Revocation)
server.register_endpoint(DeviceAuthorization)


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
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "device_authorization_endpoint": f"{ISSUER}/device_authorization",
        "introspection_endpoint": f"{ISSUER}/introspect",
        "revocation_endpoint": f"{ISSUER}/revoke",
        "grant_types_supported": ["password", "authorization_code", "refresh_token",
                                  DEVICE_CODE_GRANT_TYPE],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
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
    refresh = request.form.get("grant_type") == "refresh_token"
    with LOCK:
        STATE["token_requests"] += 1
        STATE["refresh_requests"] += int(refresh)
        mode = STATE["token_mode"]
    if mode == "stall":
        time.sleep(30)
        return Response("unavailable", status=503)
    answer = server.create_token_response()
    if mode == "lose":
        time.sleep(30)
    return answer


@app.get("/authorize")
def authorize():
    """Approves as the user the test logged in (/admin/login): there is no login page."""
    return server.create_authorization_response(grant_user=STATE["login"])


@app.post("/device_authorization")
def device_authorization():
    return server.create_endpoint_response("device_authorization")


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


@app.post("/admin/token_behaviour")
def token_behaviour():
    with LOCK:
        STATE["token_mode"] = request.form["mode"]
    return jsonify({"mode": STATE["token_mode"]})


@app.post("/admin/login")
def login():
    with LOCK:
        STATE["login"] = request.form.get("user") or None
    return jsonify({"login": STATE["login"]})


@app.post("/admin/lifetime")
def access_lifetime():
    with LOCK:
        STATE["access_lifetime"] = int(request.form["seconds"])
    return jsonify({"seconds": STATE["access_lifetime"]})


@app.post("/admin/device")
def device():
    form = request.form
    with LOCK:
        if "user_code" in form:
            USER_GRANTS[form["user_code"]] = (form["user"], form.get("approve", "1") == "1")
        for key, name in (("interval", "device_interval"), ("expires_in", "device_expires_in"),
                          ("slow_down", "slow_down")):
            if key in form:
                STATE[name] = int(form[key])
    return jsonify({"ok": True})


@app.get("/admin/stats")
def stats():
    with LOCK:
        keys = ("jwks_fetches", "introspections", "mode", "token_requests", "refresh_requests")
        return jsonify({k: STATE[k] for k in keys})


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
