"""SASL on the SASL_PLAINTEXT and SASL_SSL listeners: who may connect, and how they prove it.

Users and passwords come from the node config (`sasl.users`, kraftboard's own key).
Mechanisms are Kafka's PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802/7677, with
credentials derived from the passwords at start; hashlib and hmac do the math). Each
connection has a Session: the listener it came in on and, on a SASL listener, whether it
has authenticated yet (broker/server.py serves nothing else until it has).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Protocol

from broker.config import NodeConfig

SCRAM_ITERATIONS = 4096  # Kafka's default for SCRAM credentials
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


class AuthenticationFailed(Exception):
    """The client did not prove who it is; the message goes back in SaslAuthenticate."""


class Exchange(Protocol):
    """One SASL exchange: each client token in, each server token out, until `principal`
    is set (authenticated) or AuthenticationFailed is raised."""
    principal: str | None

    def step(self, token: bytes) -> bytes: ...


class Users:
    """The node's SASL users, with SCRAM credentials made once at start."""

    def __init__(self, config: NodeConfig):
        self.mechanisms: list[str] = list(config["sasl.enabled.mechanisms"])
        self._passwords: dict[str, str] = dict(config["sasl.users"])
        self._scram = {mechanism: {user: ScramCredential.of(password, SCRAM_HASHES[mechanism])
                                   for user, password in self._passwords.items()}
                       for mechanism in self.mechanisms if mechanism in SCRAM_HASHES}

    def exchange(self, mechanism: str) -> Exchange:
        if mechanism == "PLAIN":
            return PlainExchange(self._passwords)
        return ScramExchange(mechanism, self._scram[mechanism])


class PlainExchange:
    """One token: `authzid NUL user NUL password`, as Kafka's PlainSaslServer reads it."""

    def __init__(self, passwords: dict[str, str]):
        self._passwords = passwords
        self.principal: str | None = None

    def step(self, token: bytes) -> bytes:
        parts = token.split(b"\0")
        if len(parts) != 3:
            raise AuthenticationFailed("Invalid SASL/PLAIN request: expected 3 tokens")
        authzid, user, password = (p.decode("utf-8", "replace") for p in parts)
        if authzid and authzid != user:
            raise AuthenticationFailed("Authentication failed: Client requested an authorization "
                                       "id that is different from username")
        expected = self._passwords.get(user)
        # Compared in constant time, and for unknown users too, so timing tells little.
        matches = hmac.compare_digest((expected or "").encode(), password.encode())
        if expected is None or not matches:
            raise AuthenticationFailed("Authentication failed: Invalid username or password")
        self.principal = user
        return b""


@dataclass(frozen=True)
class ScramCredential:
    """What a server keeps of a password (RFC 5802): never the password itself."""
    salt: bytes
    stored_key: bytes
    server_key: bytes

    @classmethod
    def of(cls, password: str, hash_name: str) -> "ScramCredential":
        salt = secrets.token_bytes(16)
        salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, SCRAM_ITERATIONS)
        client_key = hmac.digest(salted, b"Client Key", hash_name)
        return cls(salt, hashlib.new(hash_name, client_key).digest(),
                   hmac.digest(salted, b"Server Key", hash_name))


class ScramExchange:
    """Two round trips: client-first -> server-first, client-final -> server-final.

    Written here rather than taken from a SCRAM library because librdkafka's client-final
    nonce is its own nonce followed by the whole server nonce (which already starts with
    it); Kafka accepts that by checking that the nonce *ends with* the server's, and so
    does this exchange, where a strict RFC implementation refuses librdkafka.
    """

    def __init__(self, mechanism: str, credentials: dict[str, ScramCredential]):
        self.mechanism = mechanism
        self._hash = SCRAM_HASHES[mechanism]
        self._credentials = credentials
        self._user: str | None = None
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self.principal: str | None = None

    def step(self, token: bytes) -> bytes:
        try:
            message = token.decode("utf-8")
        except UnicodeDecodeError:
            raise self._failed("the message is not UTF-8") from None
        if self._user is None:
            return self._first(message).encode()
        return self._final(message).encode()

    def _failed(self, why: str | None = None) -> AuthenticationFailed:
        """Kafka's words; an unknown user and a wrong password read the same."""
        return AuthenticationFailed(f"Authentication failed during authentication due to invalid "
                                    f"credentials with SASL mechanism {self.mechanism}"
                                    + (f": {why}" if why else ""))

    def _first(self, message: str) -> str:
        # gs2-header "n,," (or "n,a=authzid,"; "y,," too) then "n=user,r=nonce[,extensions]"
        flag, authzid, bare = (message.split(",", 2) + ["", ""])[:3]
        attributes = dict(a.split("=", 1) for a in bare.split(",") if "=" in a)
        if flag not in ("n", "y") or "n" not in attributes or not attributes.get("r"):
            raise self._failed("malformed client-first message (channel binding is not offered)")
        user = attributes["n"].replace("=2C", ",").replace("=3D", "=")  # RFC 5802's escapes
        if authzid not in ("", f"a={attributes['n']}"):
            raise self._failed("the authorization id differs from the user name")
        credential = self._credentials.get(user)
        if credential is None:
            raise self._failed()
        self._user, self._gs2_header, self._client_first_bare = user, f"{flag},{authzid},", bare
        self._nonce = attributes["r"] + secrets.token_urlsafe(24)
        self._server_first = (f"r={self._nonce},s={base64.b64encode(credential.salt).decode()},"
                              f"i={SCRAM_ITERATIONS}")
        return self._server_first

    def _final(self, message: str) -> str:
        without_proof, _, proof = message.rpartition(",p=")
        attributes = dict(a.split("=", 1) for a in without_proof.split(",") if "=" in a)
        if attributes.get("c") != base64.b64encode(self._gs2_header.encode()).decode():
            raise self._failed("the channel binding differs from the client-first message")
        if not attributes.get("r", "").endswith(self._nonce):  # see the class comment
            raise self._failed("the nonce is not the server's")
        credential = self._credentials[self._user]
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = hmac.digest(credential.stored_key, auth_message, self._hash)
        try:
            client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof, validate=True),
                                                       signature, strict=True))
        except ValueError:
            raise self._failed("malformed client proof") from None
        if not hmac.compare_digest(hashlib.new(self._hash, client_key).digest(),
                                   credential.stored_key):
            raise self._failed()
        self.principal = self._user
        server_signature = hmac.digest(credential.server_key, auth_message, self._hash)
        return "v=" + base64.b64encode(server_signature).decode()


@dataclass
class Session:
    """A connection's security: its listener and, on a SASL listener, the exchange."""
    listener: str  # the listener's name, which is its security protocol
    users: Users | None = None  # set on SASL listeners: authentication is required
    mechanism: str | None = None  # chosen by SaslHandshake
    exchange: Exchange | None = None
    principal: str | None = None  # the authenticated user
    refused: str | None = None  # why the connection closes once this answer is sent

    @property
    def authenticated(self) -> bool:
        return self.users is None or self.principal is not None
