"""Authentication of `servo serve` requests: OIDC ID tokens and HMAC signatures.

Tokens are minted here with real RSA keys; the issuer's JWKS is served by a loopback
HTTP server, so the fetch, the cache and the refetch on rotation run for real.
"""

from __future__ import annotations

import base64
import hashlib
import hmac as hmac_lib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from servo.config.settings import WorkerSettings
from servo.errors import ConfigError
from servo.observability import metrics
from servo.resilience.clock import ManualClock
from servo.serve.auth import (
    SIGNATURE_HEADER,
    Authenticator,
    AuthError,
    AuthMethod,
    AuthUnavailable,
    Principal,
    sign_hmac,
)
from servo.serve.auth_hmac import RedisReplayCache, ReplayCache
from servo.serve.auth_oidc import cache_ttl

AUDIENCE = "https://worker-abc123.a.run.app"
ISSUER = "https://accounts.google.com"
ACCOUNT = "servo-tasks@proj.iam.gserviceaccount.com"
SECRET = "hmac-secret-7f3a9c1e5b2d8f4a6c0e"
NOW = 1_700_000_000.0


# ------------------------------------------------------------------- issuer keys
@dataclass
class Key:
    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    """The issuer's current key, its next one (rotation), and an attacker's."""
    return {"a": Key("kid-a", _rsa()), "b": Key("kid-b", _rsa()), "evil": Key("kid-a", _rsa())}


def claims(**overrides: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "1234567890",
        "email": ACCOUNT,
        "email_verified": True,
        "iat": int(NOW),
        "exp": int(NOW) + 3600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def mint(key: Key, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), key.private, algorithm="RS256", headers={"kid": key.kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], mac_key: bytes | None) -> str:
    """A token built by hand: unsigned (alg none) or HMAC'd with `mac_key`."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if mac_key is None:
        return signing_input + "."
    mac = hmac_lib.new(mac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


# ------------------------------------------------------------------- JWKS server
@dataclass
class JwksState:
    keys: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    cache_control: str | None = "public, max-age=3600"
    requests: int = 0


class _Handler(BaseHTTPRequestHandler):
    server: _JwksServer

    def do_GET(self) -> None:
        state = self.server.state
        state.requests += 1
        body = json.dumps({"keys": state.keys}).encode()
        self.send_response(state.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if state.cache_control:
            self.send_header("Cache-Control", state.cache_control)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _JwksServer(ThreadingHTTPServer):
    daemon_threads = True
    state: JwksState


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[_JwksServer]:
    server = _JwksServer(("127.0.0.1", 0), _Handler)
    server.state = JwksState()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def jwks(jwks_server: _JwksServer, keys: dict[str, Key]) -> JwksState:
    jwks_server.state = JwksState(keys=[keys["a"].jwk()])
    return jwks_server.state


@pytest.fixture
def jwks_url(jwks_server: _JwksServer) -> str:
    host, port = jwks_server.server_address[:2]
    return f"http://{host!s}:{port}/oauth2/v3/certs"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


def make_auth(
    jwks_url: str, clock: ManualClock, http: httpx.Client, **worker: Any
) -> Authenticator:
    settings = {
        "oidc_audience": AUDIENCE,
        "oidc_jwks_url": jwks_url,
        "hmac_secret": SECRET,
        **worker,
    }
    return Authenticator.from_settings(WorkerSettings(**settings), clock=clock, http=http)


@pytest.fixture
def auth(jwks: JwksState, jwks_url: str, clock: ManualClock, http: httpx.Client) -> Authenticator:
    return make_auth(jwks_url, clock, http)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused(auth: Authenticator, headers: dict[str, str], body: bytes = b"{}") -> AuthError:
    with pytest.raises(AuthError) as info:
        auth.authenticate(headers, body, client="203.0.113.7")
    return info.value


def failures(method: str, reason: str) -> float:
    return metrics.sample("servo_auth_failures_total", {"method": method, "reason": reason})


# ------------------------------------------------------------------------- OIDC
def test_a_good_token_yields_its_verified_email(auth: Authenticator, keys: dict[str, Key]) -> None:
    principal = auth.authenticate(bearer(mint(keys["a"])), b"{}")
    assert principal == Principal(AuthMethod.OIDC, ACCOUNT)
    assert principal.method == "oidc"  # a StrEnum: equal to its value


def test_header_names_are_case_insensitive(auth: Authenticator, keys: dict[str, Key]) -> None:
    token = mint(keys["a"])
    assert auth.authenticate({"AUTHORIZATION": f"bearer {token}"}, b"").subject == ACCOUNT


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "https://someone-else.a.run.app"}, "wrong_audience"),
        ({"iss": "https://evil.example.com"}, "wrong_issuer"),
        ({"exp": int(NOW) - 31}, "expired"),
        ({"iat": int(NOW) + 31}, "not_yet_valid"),
        ({"nbf": int(NOW) + 31}, "not_yet_valid"),
        ({"email_verified": False}, "email_not_verified"),
        ({"email_verified": None}, "email_not_verified"),
        ({"email": None}, "email_not_verified"),
        ({"exp": None}, "malformed"),
        ({"exp": "tomorrow"}, "malformed"),
    ],
)
def test_a_token_failing_a_check_is_refused_with_its_reason(
    auth: Authenticator, keys: dict[str, Key], overrides: dict[str, Any], reason: str
) -> None:
    before = failures("oidc", reason)
    error = refused(auth, bearer(mint(keys["a"], **overrides)))
    assert error.reason == reason
    assert failures("oidc", reason) == before + 1


def test_clock_skew_is_tolerated_within_the_configured_leeway(
    auth: Authenticator, keys: dict[str, Key]
) -> None:
    for overrides in ({"exp": int(NOW) - 29}, {"iat": int(NOW) + 29}, {"nbf": int(NOW) + 29}):
        assert auth.authenticate(bearer(mint(keys["a"], **overrides)), b"").subject == ACCOUNT


def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(
    auth: Authenticator, keys: dict[str, Key]
) -> None:
    assert refused(auth, bearer(mint(keys["evil"]))).reason == "bad_signature"


def test_algorithm_confusion_is_refused(auth: Authenticator, keys: dict[str, Key]) -> None:
    payload = claims()
    unsigned = forge({"alg": "none", "typ": "JWT", "kid": "kid-a"}, payload, None)
    hs256 = forge({"alg": "HS256", "typ": "JWT", "kid": "kid-a"}, payload, keys["a"].public_pem())
    assert refused(auth, bearer(unsigned)).reason == "bad_signature"
    assert refused(auth, bearer(hs256)).reason == "bad_signature"


def test_an_account_off_the_allow_list_is_refused(
    jwks: JwksState, jwks_url: str, clock: ManualClock, http: httpx.Client, keys: dict[str, Key]
) -> None:
    auth = make_auth(jwks_url, clock, http, allowed_service_accounts="Other@proj.iam.x, " + ACCOUNT)
    assert auth.authenticate(bearer(mint(keys["a"])), b"").subject == ACCOUNT
    error = refused(auth, bearer(mint(keys["a"], email="intruder@proj.iam.gserviceaccount.com")))
    assert error.reason == "account_not_allowed"


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-jwt", "Bearer " + "x" * 20_000]
)
def test_a_malformed_bearer_is_refused(auth: Authenticator, authorization: str) -> None:
    assert refused(auth, {"Authorization": authorization}).reason == "malformed"


def test_an_unreachable_jwks_makes_the_request_unavailable_not_refused(
    jwks: JwksState, jwks_url: str, clock: ManualClock, http: httpx.Client, keys: dict[str, Key]
) -> None:
    jwks.status = 500
    auth = make_auth(jwks_url, clock, http)
    before = failures("oidc", "unavailable")
    with pytest.raises(AuthUnavailable):
        auth.authenticate(bearer(mint(keys["a"])), b"")
    assert failures("oidc", "unavailable") == before + 1
    # nothing listens there at all: the same
    closed = make_auth("http://127.0.0.1:9/certs", clock, http)
    with pytest.raises(AuthUnavailable):
        closed.authenticate(bearer(mint(keys["a"])), b"")
    # the issuer recovers: after the failure backoff, the next request fetches again
    jwks.status = 200
    clock.advance(6)
    assert auth.authenticate(bearer(mint(keys["a"], iat=int(clock()))), b"").subject == ACCOUNT


def test_an_unknown_kid_refetches_once_and_then_succeeds(
    auth: Authenticator, jwks: JwksState, clock: ManualClock, keys: dict[str, Key]
) -> None:
    assert auth.authenticate(bearer(mint(keys["a"])), b"").subject == ACCOUNT
    assert jwks.requests == 1
    jwks.keys = [keys["a"].jwk(), keys["b"].jwk()]  # the issuer rotates
    assert auth.authenticate(bearer(mint(keys["a"])), b"").subject == ACCOUNT
    assert jwks.requests == 1  # cached

    # a kid never seen, moments after a fetch: presumed bogus, no request
    assert refused(auth, bearer(mint(keys["b"]))).reason == "unknown_key"
    assert jwks.requests == 1

    clock.advance(31)
    token = mint(keys["b"], iat=int(NOW) + 31)
    assert auth.authenticate(bearer(token), b"").subject == ACCOUNT
    assert jwks.requests == 2  # exactly one refetch

    # random kids cannot make us hammer the issuer: one refetch per interval at most
    random_kid = Key(f"kid-{uuid.uuid4().hex}", keys["a"].private)
    for _ in range(5):
        assert refused(auth, bearer(mint(random_kid, iat=int(NOW) + 31))).reason == "unknown_key"
    assert jwks.requests == 2


def test_the_key_set_is_kept_for_its_max_age_and_used_stale_when_the_issuer_fails(
    auth: Authenticator, jwks: JwksState, clock: ManualClock, keys: dict[str, Key]
) -> None:
    jwks.cache_control = "public, max-age=120, must-revalidate"
    auth.authenticate(bearer(mint(keys["a"])), b"")
    clock.advance(100)
    auth.authenticate(bearer(mint(keys["a"])), b"")
    assert jwks.requests == 1
    clock.advance(30)
    auth.authenticate(bearer(mint(keys["a"])), b"")
    assert jwks.requests == 2  # expired, refetched
    jwks.status = 503
    clock.advance(121)
    assert auth.authenticate(bearer(mint(keys["a"])), b"").subject == ACCOUNT  # stale keys
    assert jwks.requests == 3


def test_cache_control_is_clamped() -> None:
    assert cache_ttl(None) == 3600
    assert cache_ttl("public, max-age=19800") == 19800
    assert cache_ttl("max-age=0") == 60
    assert cache_ttl("no-store") == 60
    assert cache_ttl("max-age=99999999") == 86400


# ------------------------------------------------------------------------- HMAC
def test_a_good_hmac_signature_is_accepted(auth: Authenticator, clock: ManualClock) -> None:
    body = b'{"task": "orders"}'
    headers = {SIGNATURE_HEADER: sign_hmac(SECRET, body, clock())}
    assert auth.authenticate(headers, body) == Principal(AuthMethod.HMAC, "hmac")


def test_a_bad_hmac_signature_is_refused(auth: Authenticator, clock: ManualClock) -> None:
    body = b'{"task": "orders"}'
    wrong_secret = {SIGNATURE_HEADER: sign_hmac("not-the-secret", body, clock())}
    assert refused(auth, wrong_secret, body).reason == "bad_signature"
    signed = {SIGNATURE_HEADER: sign_hmac(SECRET, body, clock())}
    assert refused(auth, signed, b'{"task": "payroll"}').reason == "bad_signature"
    non_ascii = {SIGNATURE_HEADER: f"t={int(clock())},v1=\u00e9"}
    assert refused(auth, non_ascii, body).reason == "bad_signature"


def test_a_replayed_hmac_signature_is_refused(auth: Authenticator, clock: ManualClock) -> None:
    body = b"{}"
    headers = {SIGNATURE_HEADER: sign_hmac(SECRET, body, clock())}
    auth.authenticate(headers, body)
    clock.advance(10)
    assert refused(auth, headers, body).reason == "replayed"


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_stale_hmac_timestamp_is_refused(
    auth: Authenticator, clock: ManualClock, offset: int
) -> None:
    headers = {SIGNATURE_HEADER: sign_hmac(SECRET, b"{}", clock() + offset)}
    assert refused(auth, headers).reason == "stale_timestamp"


@pytest.mark.parametrize("header", ["v1=abc", "t=1700000000", "t=soon,v1=abc", "garbage"])
def test_a_malformed_signature_header_is_refused(auth: Authenticator, header: str) -> None:
    assert refused(auth, {SIGNATURE_HEADER: header}).reason == "malformed"


def test_the_replay_cache_forgets_what_left_the_window_and_stays_bounded() -> None:
    cache = ReplayCache(max_entries=3)
    assert cache.first_use("s1", expires_at=100, now=0)
    assert not cache.first_use("s1", expires_at=100, now=50)
    assert cache.first_use("s1", expires_at=300, now=101)  # expired, so forgotten
    for i in range(10):
        cache.first_use(f"x{i}", expires_at=500, now=200)
    assert len(cache) == 3


def test_a_signature_replayed_to_another_instance_is_refused_through_redis(
    clock: ManualClock,
) -> None:
    """Two instances sharing the rate-limit Redis share the replay cache too."""
    from tests.unit.resilience.test_rate_limit import REDIS_URL, _redis_answers

    if not _redis_answers():
        if os.environ.get("CI"):
            pytest.fail(f"no Redis answers at {REDIS_URL}; CI must start one")
        pytest.skip(f"no Redis answers at {REDIS_URL}")
    worker = WorkerSettings(hmac_secret=SECRET)
    one, other = (
        Authenticator.from_settings(worker, clock=clock, replay_url=REDIS_URL) for _ in range(2)
    )
    assert one.describe()["hmac"] == {"window_s": 300.0, "replay_cache": "shared"}
    body = f'{{"n": "{uuid.uuid4().hex}"}}'.encode()
    headers = {SIGNATURE_HEADER: sign_hmac(SECRET, body, clock())}
    one.authenticate(headers, body)
    assert refused(other, headers, body).reason == "replayed"


def test_without_redis_an_instance_falls_back_to_its_own_replay_cache() -> None:
    class Down:
        def set(self, *args: object, **kwargs: object) -> bool:
            raise ConnectionError("redis is down")

    cache = RedisReplayCache(Down())
    before = metrics.sample(
        "servo_hmac_replay_cache_errors_total", {"error_type": "ConnectionError"}
    )
    assert cache.first_use("s1", expires_at=100, now=0)
    assert not cache.first_use("s1", expires_at=100, now=1), "the local cache still refuses"
    after = metrics.sample(
        "servo_hmac_replay_cache_errors_total", {"error_type": "ConnectionError"}
    )
    assert after == before + 2


# ------------------------------------------------------------- either / neither
def test_missing_credentials_are_refused(auth: Authenticator) -> None:
    before = failures("none", "missing_credentials")
    error = refused(auth, {"Content-Type": "application/json"})
    assert error.reason == "missing_credentials"
    assert error.method is None
    assert "Bearer" in str(error) and SIGNATURE_HEADER in str(error)
    assert failures("none", "missing_credentials") == before + 1


def test_a_method_that_is_not_enabled_is_not_accepted(
    jwks_url: str, clock: ManualClock, http: httpx.Client, keys: dict[str, Key]
) -> None:
    hmac_only = make_auth(jwks_url, clock, http, oidc_audience=None)
    assert refused(hmac_only, bearer(mint(keys["a"]))).reason == "missing_credentials"
    oidc_only = make_auth(jwks_url, clock, http, hmac_secret=None)
    headers = {SIGNATURE_HEADER: sign_hmac(SECRET, b"", clock())}
    assert refused(oidc_only, headers, b"").reason == "missing_credentials"


def test_neither_method_configured_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Authenticator.from_settings(WorkerSettings())
    assert "SERVO_WORKER_OIDC_AUDIENCE" in str(info.value)
    assert "SERVO_WORKER_HMAC_SECRET" in str(info.value)


def test_a_plain_http_jwks_url_off_loopback_is_a_config_error() -> None:
    settings = WorkerSettings(oidc_audience=AUDIENCE, oidc_jwks_url="http://keys.example.com/")
    with pytest.raises(ConfigError, match="SERVO_WORKER_OIDC_JWKS_URL"):
        Authenticator.from_settings(settings)


def test_describe_states_the_configuration_without_the_secret(auth: Authenticator) -> None:
    described = auth.describe()
    assert described["methods"] == ["oidc", "hmac"]
    oidc = described["oidc"]
    assert isinstance(oidc, dict) and oidc["audience"] == AUDIENCE
    assert described["hmac"] == {"window_s": 300.0, "replay_cache": "instance"}
    assert SECRET not in json.dumps(described)


def test_an_authenticator_closes_only_the_client_it_made(http: httpx.Client) -> None:
    own = Authenticator.from_settings(WorkerSettings(oidc_audience=AUDIENCE))
    client = own._owned_http
    assert client is not None
    own.close()
    assert client.is_closed
    Authenticator.from_settings(WorkerSettings(oidc_audience=AUDIENCE), http=http).close()
    assert not http.is_closed


def test_refusals_never_reveal_the_token_or_the_secret(
    auth: Authenticator,
    clock: ManualClock,
    keys: dict[str, Key],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tokens = [
        mint(keys["a"], aud="https://other"),
        mint(keys["evil"]),
        mint(keys["a"], exp=int(NOW) - 3600),
        mint(keys["a"], email_verified=False),
        mint(Key("kid-zzz", keys["a"].private)),
    ]
    errors = [refused(auth, bearer(token)) for token in tokens]
    signature = sign_hmac(SECRET, b"{}", clock())
    errors.append(refused(auth, {SIGNATURE_HEADER: signature}, b"tampered"))
    stale = sign_hmac(SECRET, b"{}", clock() - 1000)
    errors.append(refused(auth, {SIGNATURE_HEADER: stale}, b"{}"))
    logged = capsys.readouterr().err
    assert "serve.auth.rejected" in logged and "203.0.113.7" in logged
    for text in [*(str(e) for e in errors), logged]:
        assert SECRET not in text
        for secret in [*tokens, signature, stale]:
            assert secret not in text
            assert secret.split(".")[-1] not in text  # not even the signature part
