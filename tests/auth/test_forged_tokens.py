"""A corpus of forged and invalid access tokens: every one is refused with a 401.

Each forgery starts from a well-formed token for a live session, minted with the app's real
signing key, and changes exactly one thing; the positive control proves that the unchanged
token is accepted, so no case can pass because minting itself is broken.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

from tests.auth.factories import Account, account, assert_error, login
from ultrachat.auth.keys import LoadedKey
from ultrachat.storage import new_id

INVALID = "invalid or expired access token"
DROP = object()  # a claim or header value meaning "leave this field out"

_ATTACKER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_ATTACKER_EC = ec.generate_private_key(ec.SECP256R1())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def rs256(key: rsa.RSAPrivateKey) -> Callable[[bytes], bytes]:
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def hmac_with(secret: bytes, digest: str) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, getattr(hashlib, digest)).digest()


def attacker_jwk() -> dict[str, str]:
    numbers = _ATTACKER_RSA.public_key().public_numbers()
    return {
        "kty": "RSA",
        "n": b64(numbers.n.to_bytes(256, "big")),
        "e": b64(numbers.e.to_bytes(3, "big")),
    }


def attacker_certificate() -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ultrachat")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_ATTACKER_RSA.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(_ATTACKER_RSA, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


@dataclass
class Forge:
    """Mints tokens for the victim's live session, with one field changed."""

    app: FastAPI
    victim: Account
    other_user_id: str
    revoked_access_token: str

    @property
    def key(self) -> LoadedKey:
        key: LoadedKey = self.app.state.runtime.keys.signing_key
        return key

    @property
    def public_pem(self) -> bytes:
        return self.key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def claims(self, **changes: Any) -> dict[str, Any]:
        settings = self.app.state.runtime.settings
        now = int(time.time())
        claims = {
            "iss": settings.jwt_issuer,
            "aud": settings.jwt_audience,
            "sub": self.victim.id,
            "sid": self.victim.session_id,
            "jti": new_id(),
            "typ": "access",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not DROP}

    def header(self, **changes: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": "RS256", "typ": "JWT", "kid": self.key.kid, **changes}
        return {name: value for name, value in header.items() if value is not DROP}

    def token(
        self,
        header: Any = None,
        claims: dict[str, Any] | None = None,
        sign: Callable[[bytes], bytes] | None = None,
    ) -> str:
        """A compact JWS, RS256-signed with our real key unless ``sign`` says otherwise."""
        signing_input = f"{b64json(header or self.header())}.{b64json(claims or self.claims())}"
        signature = (sign or rs256(self.key.private_key))(signing_input.encode())
        return f"{signing_input}.{b64(signature)}"

    def pyjwt(self, algorithm: str, key: Any) -> str:
        return jwt.encode(self.claims(), key, algorithm=algorithm, headers={"kid": self.key.kid})


def _ago(seconds: int) -> int:
    return int(time.time()) - seconds


def _swap_payload(token: str, payload: str) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{payload}.{signature}"


def _alg_none(alg: str, signed: bool) -> Callable[[Forge], str]:
    def build(f: Forge) -> str:
        token = f.token(header=f.header(alg=alg))
        return token if signed else token.rsplit(".", 1)[0] + "."

    return build


def _hmac_with_public_key(alg: str) -> Callable[[Forge], str]:
    digest = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}[alg]
    return lambda f: f.token(header=f.header(alg=alg), sign=hmac_with(f.public_pem, digest))


CASES: list[tuple[str, Callable[[Forge], str], str]] = [
    # alg "none", in its case variants, with and without a signature
    *[
        (f"alg-{alg}-{'signed' if signed else 'unsigned'}", _alg_none(alg, signed), INVALID)
        for alg in ("none", "None", "NONE", "nOnE")
        for signed in (False, True)
    ],
    # HMAC keyed with our public key (the RS/HS confusion attack)
    *[
        (f"{alg}-keyed-with-public-pem", _hmac_with_public_key(alg), INVALID)
        for alg in ("HS256", "HS384", "HS512")
    ],
    # other asymmetric algorithms: genuinely signed, but only RS256 is accepted
    ("RS384-real-key", lambda f: f.pyjwt("RS384", f.key.private_key), INVALID),
    ("RS512-real-key", lambda f: f.pyjwt("RS512", f.key.private_key), INVALID),
    ("PS256-real-key", lambda f: f.pyjwt("PS256", f.key.private_key), INVALID),
    ("ES256-attacker-key", lambda f: f.pyjwt("ES256", _ATTACKER_EC), INVALID),
    ("alg-rs256-lowercase", lambda f: f.token(header=f.header(alg="rs256")), INVALID),
    # kid: only our own keys, looked up as an opaque string
    ("kid-unknown", lambda f: f.token(header=f.header(kid=new_id())), INVALID),
    ("kid-path-traversal", lambda f: f.token(header=f.header(kid="../../etc/passwd")), INVALID),
    ("kid-sql-injection", lambda f: f.token(header=f.header(kid="' OR 1=1 --")), INVALID),
    ("kid-not-a-string", lambda f: f.token(header=f.header(kid=1)), INVALID),
    ("kid-null", lambda f: f.token(header=f.header(kid=None)), INVALID),
    ("kid-missing", lambda f: f.token(header=f.header(kid=DROP)), INVALID),
    ("kid-10kb", lambda f: f.token(header=f.header(kid="k" * 10_240)), INVALID),
    # keys carried by the token itself are never used
    (
        "jwk-attacker-key",
        lambda f: f.token(header=f.header(jwk=attacker_jwk()), sign=rs256(_ATTACKER_RSA)),
        INVALID,
    ),
    (
        "jku-attacker-url",
        lambda f: f.token(
            header=f.header(jku="https://attacker.example/jwks.json"), sign=rs256(_ATTACKER_RSA)
        ),
        INVALID,
    ),
    (
        "x5u-attacker-url",
        lambda f: f.token(
            header=f.header(x5u="https://attacker.example/cert.pem"), sign=rs256(_ATTACKER_RSA)
        ),
        INVALID,
    ),
    (
        "x5c-attacker-cert",
        lambda f: f.token(header=f.header(x5c=[attacker_certificate()]), sign=rs256(_ATTACKER_RSA)),
        INVALID,
    ),
    (
        "jwk-header-refused-even-when-signed-by-us",
        lambda f: f.token(header=f.header(jwk=f.key.jwk())),
        INVALID,
    ),
    ("attacker-key-with-our-kid", lambda f: f.token(sign=rs256(_ATTACKER_RSA)), INVALID),
    # registered claims
    (
        "expired-beyond-leeway",
        lambda f: f.token(claims=f.claims(exp=_ago(120), iat=_ago(720), nbf=_ago(720))),
        INVALID,
    ),
    ("nbf-in-future", lambda f: f.token(claims=f.claims(nbf=_ago(-120))), INVALID),
    ("iat-in-future", lambda f: f.token(claims=f.claims(iat=_ago(-120))), INVALID),
    ("wrong-aud", lambda f: f.token(claims=f.claims(aud="another-api")), INVALID),
    ("aud-list", lambda f: f.token(claims=f.claims(aud=["ultrachat-api", "other"])), INVALID),
    ("wrong-iss", lambda f: f.token(claims=f.claims(iss="https://attacker.example")), INVALID),
    ("wrong-typ", lambda f: f.token(claims=f.claims(typ="refresh")), INVALID),
    *[
        (f"missing-{name}", lambda f, name=name: f.token(claims=f.claims(**{name: DROP})), INVALID)
        for name in ("sid", "sub", "jti", "exp", "iat", "nbf", "typ")
    ],
    ("sid-not-a-string", lambda f: f.token(claims=f.claims(sid=12345)), INVALID),
    # tokens that are not ours at all, or were tampered with
    ("refresh-token-as-access", lambda f: f.victim.refresh_token, INVALID),
    (
        "tampered-sub",
        lambda f: _swap_payload(f.token(), b64json(f.claims(sub=f.other_user_id))),
        INVALID,
    ),
    (
        "tampered-exp",
        lambda f: _swap_payload(f.token(), b64json(f.claims(exp=_ago(-(10**7))))),
        INVALID,
    ),
    ("signature-stripped", lambda f: f.token().rsplit(".", 1)[0] + ".", INVALID),
    (
        "signature-of-another-token",
        lambda f: f.token().rsplit(".", 1)[0] + "." + f.victim.access_token.rsplit(".", 1)[1],
        INVALID,
    ),
    ("two-segments", lambda f: f.token().rsplit(".", 1)[0], INVALID),
    ("four-segments", lambda f: f.token() + "." + f.token().rsplit(".", 1)[1], INVALID),
    ("header-not-an-object", lambda f: f.token(header=["RS256"]), INVALID),
    ("garbage", lambda f: "garbage", INVALID),
    ("garbage-three-dots", lambda f: "a.b.c", INVALID),
    ("garbage-base64-prefixes", lambda f: "eyJ.eyJ.eyJ", INVALID),
    ("empty", lambda f: "", "missing bearer token"),
    # a well-formed token for a session that was logged out
    ("revoked-session", lambda f: f.revoked_access_token, "session has been revoked"),
]


@pytest.fixture(scope="module")
async def forge(app_and_client: tuple[FastAPI, httpx.AsyncClient]) -> Forge:
    app, client = app_and_client
    victim = await account(client)
    other = await account(client)
    departed = await login(client, victim.username)
    revoked = departed["access_token"]
    logout = await client.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {revoked}"}
    )
    assert logout.status_code == 204
    return Forge(app, victim, other.id, revoked)


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({name for name, _, _ in CASES}) == len(CASES)


async def test_positive_control_a_correctly_minted_token_is_accepted(
    client: httpx.AsyncClient, forge: Forge
) -> None:
    for token in (forge.token(), forge.pyjwt("RS256", forge.key.private_key)):
        response = await client.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["id"] == forge.victim.id


@pytest.mark.parametrize(
    ("build", "message"), [pytest.param(build, msg, id=name) for name, build, msg in CASES]
)
async def test_forged_token_is_refused(
    client: httpx.AsyncClient, forge: Forge, build: Callable[[Forge], str], message: str
) -> None:
    response = await client.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {build(forge)}"}
    )
    error = assert_error(response, 401, "unauthorized")
    assert error["message"] == message
