"""OIDC ID tokens like the ones Google attaches to Cloud Tasks pushes, and their JWKS.

`TokenIssuer` holds a local RSA key (with a ``kid``) and mints RS256 ID tokens with
Google's claims for a service account: ``iss`` (https://accounts.google.com by
default), ``aud`` (the push's audience, by default its URL), ``email``,
``email_verified`` (true), ``sub`` (a stable 21-digit id derived from the email, as
Google's numeric service-account ids), ``iat`` and ``exp`` (one hour later).

`JwksServer` publishes the public key on loopback (``GET /certs``, also
``/oauth2/v3/certs`` like Google's path, and an OpenID configuration at
``/.well-known/openid-configuration``) so a verifier under test fetches keys the way
it does in production, from a URL.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

GOOGLE_ISSUER = "https://accounts.google.com"
CERTS_PATHS = ("/certs", "/oauth2/v3/certs")


#: Seconds of life a cached push token must have left to be reused.
REUSE_MARGIN_S = 300.0


class TokenIssuer:
    """Mints ID tokens signed by a local RSA key.

    Args:
        issuer: the ``iss`` claim.
        lifetime_s: seconds from ``iat`` to ``exp``.
        key: the signing key (default: a fresh 2048-bit key).
    """

    def __init__(
        self,
        issuer: str = GOOGLE_ISSUER,
        lifetime_s: float = 3600.0,
        key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        self.issuer = issuer
        self.lifetime_s = lifetime_s
        self._key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        #: The key id tokens name in their header and the JWKS lists.
        self.kid = hashlib.sha256(der).hexdigest()[:40]
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}
        self._cache_lock = threading.Lock()

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        """The verification key."""
        return self._key.public_key()

    def token_for(self, email: str, audience: str) -> str:
        """A token for a push: one minted per (account, audience) is reused until it
        has less than `REUSE_MARGIN_S` to live, as a caching client would (signing is
        the local server's largest cost per push)."""
        key = (email, audience)
        now = time.time()
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None and cached[1] - now > REUSE_MARGIN_S:
                return cached[0]
        token = self.mint(email, audience, now=now)
        with self._cache_lock:
            self._cache[key] = (token, now + self.lifetime_s)
        return token

    def mint(
        self,
        email: str,
        audience: str,
        *,
        now: float | None = None,
        lifetime_s: float | None = None,
        issuer: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """An ID token for service account `email` with audience `audience`.

        Args:
            now: ``iat`` (epoch seconds; default: now); tests pass old times to get
                expired tokens.
            lifetime_s: override of the lifetime.
            issuer: override of ``iss`` (a token from another issuer).
            extra: claims to add or replace.
        """
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": issuer or self.issuer,
            "aud": audience,
            "azp": _subject(email),
            "sub": _subject(email),
            "email": email,
            "email_verified": True,
            "iat": issued,
            "exp": issued + int(self.lifetime_s if lifetime_s is None else lifetime_s),
        }
        claims.update(extra or {})
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        """The public key as a JSON Web Key Set."""
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}


def _subject(email: str) -> str:
    return str(int(hashlib.sha256(email.encode("utf-8")).hexdigest(), 16))[:21]


class JwksServer:
    """Serves an issuer's JWKS over HTTP on loopback, from a daemon thread.

    Args:
        issuer: whose keys to publish.
        host: the address to bind.
        port: the port (0: any free one).
    """

    def __init__(self, issuer: TokenIssuer, host: str = "127.0.0.1", port: int = 0) -> None:
        self._issuer = issuer
        self._host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The JWKS URL (``http://host:port/certs``)."""
        if self._server is None:
            raise RuntimeError("the JWKS server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/certs"

    def start(self) -> str:
        """Bind and serve; the JWKS URL."""
        issuer = self._issuer
        base: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in CERTS_PATHS:
                    self._json(issuer.jwks())
                elif path == "/.well-known/openid-configuration":
                    self._json({"issuer": issuer.issuer, "jwks_uri": base[0]})
                else:
                    self.send_error(404)

            def _json(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "public, max-age=3600")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read their own output."""

        server = ThreadingHTTPServer((self._host, self._port), Handler)
        server.daemon_threads = True
        self._server = server
        base.append(self.url)
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="servo-jwks", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
