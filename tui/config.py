"""The console's files: user settings, user themes, and client configs for other clusters.

Settings live in `$XDG_CONFIG_HOME/kraftboard/config.yaml` (default `~/.config/...`),
user themes in the `themes/` folder next to it. A client config is a YAML file with
Kafka's client config names (`security.protocol`, `sasl.mechanism`, ...), turned into
aiokafka keyword arguments; a bad one is refused with the file, the key and the reason.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiokafka.helpers import create_ssl_context

from broker.config import ConfigError, read_yaml_mapping, unknown_key_reason

log = logging.getLogger(__name__)


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "kraftboard"


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "kraftboard"


@dataclass
class Settings:
    """What the console remembers between runs."""

    theme: str = "kraftboard-dark"
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> keys
    path: Path | None = None

    @classmethod
    def load(cls, path: Path | None = None) -> "Settings":
        path = path or config_dir() / "config.yaml"
        settings = cls(path=path)
        if not path.exists():
            return settings
        try:
            data = read_yaml_mapping(path)
        except ConfigError as exc:
            log.warning("ignoring settings: %s", exc)
            return settings
        if isinstance(data.get("theme"), str):
            settings.theme = data["theme"]
        if isinstance(data.get("keymap"), dict):
            settings.keymap = {str(k): str(v) for k, v in data["keymap"].items()}
        return settings

    def save(self) -> None:
        """Write the settings, keeping keys this version does not know."""
        try:
            data = read_yaml_mapping(self.path) if self.path.exists() else {}
        except ConfigError:
            data = {}
        data["theme"] = self.theme
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(yaml.safe_dump(data, sort_keys=True))
        except OSError as exc:
            log.warning("cannot save settings to %s: %s", self.path, exc)


# Kafka client config name -> (aiokafka keyword, allowed values or a type).
CLIENT_KEYS: dict[str, tuple[str, Any]] = {
    "security.protocol": ("security_protocol", ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")),
    "sasl.mechanism": ("sasl_mechanism", ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI")),
    "sasl.username": ("sasl_plain_username", str),
    "sasl.password": ("sasl_plain_password", str),
    "sasl.kerberos.service.name": ("sasl_kerberos_service_name", str),
    "client.id": ("client_id", str),
    "request.timeout.ms": ("request_timeout_ms", int),
    "ssl.ca.location": ("cafile", Path),
    "ssl.certificate.location": ("certfile", Path),
    "ssl.key.location": ("keyfile", Path),
    "ssl.key.password": ("password", str),
    "ssl.endpoint.identification.algorithm": ("check_hostname", ("https", "none")),
}
SSL_KEYWORDS = ("cafile", "certfile", "keyfile", "password", "check_hostname")


def load_client_config(path: Path) -> dict[str, Any]:
    """Read a client config file into keyword arguments for aiokafka's clients."""
    kwargs: dict[str, Any] = {}
    for key, value in read_yaml_mapping(path).items():
        if key not in CLIENT_KEYS:
            raise ConfigError(f"{path}: {key}: {unknown_key_reason(str(key), CLIENT_KEYS)}")
        keyword, expected = CLIENT_KEYS[key]
        kwargs[keyword] = _checked(path, key, value, expected)
    ssl = {k: kwargs.pop(k) for k in SSL_KEYWORDS if k in kwargs}
    protocol = kwargs.get("security_protocol", "PLAINTEXT")
    if ssl and "SSL" not in protocol:
        raise ConfigError(f"{path}: security.protocol: {protocol} uses no TLS, yet ssl.* "
                          "keys are set; use SSL or SASL_SSL")
    if "SSL" in protocol:
        check = ssl.pop("check_hostname", "https") == "https"
        try:
            context = create_ssl_context(**{k: str(v) for k, v in ssl.items()})
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: ssl.*: cannot build a TLS context: {exc}") from None
        context.check_hostname = check
        kwargs["ssl_context"] = context
    if "SASL" in protocol and kwargs.get("sasl_mechanism", "PLAIN") != "GSSAPI":
        for key in ("sasl.username", "sasl.password"):
            if CLIENT_KEYS[key][0] not in kwargs:
                raise ConfigError(f"{path}: {key}: required with security.protocol {protocol}")
    return kwargs


def _checked(path: Path, key: str, value: Any, expected: Any) -> Any:
    if isinstance(expected, tuple):
        if value not in expected:
            raise ConfigError(f"{path}: {key}: {value!r} is not one of {', '.join(expected)}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{path}: {key}: expected a positive integer, found {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {key}: expected a string, found {value!r}")
    if expected is Path:
        file = (path.parent / value).expanduser()
        if not file.is_file():
            raise ConfigError(f"{path}: {key}: no such file {file}")
        return file
    return value
