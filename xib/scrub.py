"""The one credential scrubber: applied to a config (or any text) before it is saved anywhere.

Two rules. A URL loses its user info (`scheme://user:password@host` -> `scheme://host`), wherever it
appears in a value. A value whose key *names* a secret (`password`, `aws_secret_access_key`,
`api_token`, `private_key`, ...) is masked; a key that merely contains a secret-looking word
(`bootstrap.llm.arch.num_key_value_heads`, `max_new_tokens`, `pad_token`) is left alone.
Credentials reach the services through the environment (MLFLOW_TRACKING_USERNAME/PASSWORD,
AWS_*), never through a saved config: see `credentials_from_url`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
# The last part of a key (after the last "."), as a whole: exactly a secret's name, or one ending
# in it after "_"/"-" ("aws_secret_access_key", "db_password", "hf_token"). Not "num_key_value_heads".
SECRET_NAMES = (
    "password|passwd|pwd|passphrase|secret|secret_key|secret_access_key|access_key|access_key_id"
    "|session_token|security_token|api_key|apikey|private_key|token|auth_token|access_token"
    "|refresh_token|api_token|bearer_token|credential|credentials|client_secret|hmac_key|signing_key"
)
_SECRET_KEY = re.compile(rf"^(?:.*[_\-])?(?:{SECRET_NAMES})$", re.I)
# Prefixes that turn "token" into a tokenizer's vocabulary entry, not a credential.
_NOT_SECRET = re.compile(r"^(pad|eos|bos|unk|sep|cls|mask|start|end|image|audio|video|query)_token$", re.I)
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.\-]*://)(?P<userinfo>[^/@\s?#]*)@", re.I)
_SECRET_VALUE = re.compile(r"(AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9]{20,})")


def is_secret_key(key: str) -> bool:
    """True when the last part of a dotted key names a secret."""
    last = str(key).rsplit(".", 1)[-1]
    return bool(_SECRET_KEY.match(last)) and not _NOT_SECRET.match(last)


def scrub_text(text: str) -> str:
    """`text` with user info removed from every URL in it and known token shapes masked."""
    return _SECRET_VALUE.sub(MASK, _URL_USERINFO.sub(lambda m: m["scheme"], text))


def scrub_value(value: Any) -> Any:
    return scrub_text(value) if isinstance(value, str) else value


def scrub(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A flat {key: value} mapping with secret-named values masked and URLs stripped of user info."""
    return {
        k: (MASK if is_secret_key(k) and v not in ("", None) else scrub_value(v)) for k, v in mapping.items()
    }


def scrub_tree(node: Any, key: str = "") -> Any:
    """A nested dict/list (a config as containers) scrubbed by the same two rules."""
    if isinstance(node, Mapping):
        return {k: scrub_tree(v, str(k)) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [scrub_tree(v, key) for v in node]
    if is_secret_key(key) and node not in ("", None) and not isinstance(node, bool | int | float):
        return MASK
    return scrub_value(node)


def scrubbed_yaml(cfg: Any) -> str:
    """The resolved config as YAML with every credential removed: what gets written to disk or logged."""
    # Any, not XibConfig: a base module never names the config room, and a mapping is scrubbed as well.
    import dataclasses

    import yaml

    tree = (
        dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type) else dict(cfg)
    )
    return yaml.safe_dump(scrub_tree(tree), sort_keys=False, allow_unicode=True)


def credentials_from_url(url: str) -> tuple[str, str, str]:
    """(url without user info, user, password); user and password are "" when the URL has none."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, "", ""
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user), unquote(password)
