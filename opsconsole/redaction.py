"""Secrets are never shown: one place that knows what a secret looks like and how to hide it.

Two tools, used together wherever a person or a read key can look (pages, admin, API, CLI,
logs, notifications, error texts):

* masking by shape: ``mask_url``, ``mask_dsn``, ``mask_headers``, ``mask_config`` and
  ``mask_text`` hide what looks secret (URL userinfo, secret-named query parameters, DSN
  passwords, header values, secret-named config keys, webhook paths) without knowing the values;
* scrubbing by value: ``secret_values`` lists the raw secrets of a config, and ``scrub`` replaces
  them in any text, which catches a secret that a driver or server echoed back in an error
  message in a shape no pattern recognises.

Masking errs on the side of hiding: a parameter named ``monkey`` is masked too.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MASK = "***"

# Header names whose values are never secret; every other header value is masked.
SAFE_HEADERS = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "content-encoding",
        "content-language",
        "content-length",
        "content-type",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "pragma",
        "user-agent",
        "x-request-id",
        "x-correlation-id",
    }
)

# Names (query parameters, config keys) that hold secrets: exact names, and words that make any
# name containing them secret (``client_secret``, ``x-auth-token``, ``db_password``).
_SECRET_NAMES = frozenset(
    {"key", "sig", "pwd", "pass", "passwd", "auth", "code", "sas", "dsn", "credentials"}
)
_SECRET_WORDS = (
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "auth",
    "credential",
    "session",
    "cookie",
)

# Hosts and paths whose URL path itself is the credential (Slack, Discord, Teams, Zapier...).
_WEBHOOK_HOST_WORDS = ("hooks.", "webhook")
_WEBHOOK_PATH_WORDS = ("/hooks/", "/webhook", "/services/", "/api/webhooks/", "/bot")

# Secrets shorter than this are not scrubbed from free text: replacing "ab" everywhere would
# garble every message while protecting nothing worth the name. They are still masked by shape.
MIN_SCRUB_LENGTH = 4

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
# libpq key=value style: password=secret or password='se cret' (backslash escapes inside quotes).
_KV_PASSWORD = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd)\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s'&;,]+)",
    re.IGNORECASE,
)
_AUTH_HEADER_IN_TEXT = re.compile(
    r"(?P<key>\b(?:authorization|proxy-authorization)\s*[:=]\s*)(?P<value>(?:\w+\s+)?[^\s,;'\"]+)",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or config key of this name holds a secret."""
    lowered = str(name).strip().lower().replace("-", "_")
    if lowered in _SECRET_NAMES or lowered.endswith("key"):
        return True
    # "author" and "authority" are not credentials; "auth", "x_auth", "oauth_token" are.
    lowered = re.sub(r"auth(?=or)", "", lowered)
    return any(word in lowered for word in _SECRET_WORDS)


def _split_url(url: str) -> tuple[str, str, str, str] | None:
    """(scheme://, authority, path, rest) without re-encoding anything, or None if no URL.

    The authority ends at the first ``/``, ``?`` or ``#`` after the *last* ``@`` before them, so
    a password holding ``@`` or ``:`` (spelled raw) still counts as userinfo.
    """
    match = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*:)//", url)
    if not match:
        return None
    head = match.group(0)
    remainder = url[len(head) :]
    end = len(remainder)
    for sep in "/?#":
        position = remainder.find(sep)
        if position != -1:
            end = min(end, position)
    authority = remainder[:end]
    # A raw "/" in a password: "u:pa/ss@host/x" — the "@" after the first "/" ends the userinfo
    # only if what precedes it has no "/" of a real path before the host.
    at_after = remainder.find("@", end)
    if "@" not in authority and at_after != -1:
        stop = min(
            (p for p in (remainder.find("?", end), remainder.find("#", end)) if p != -1),
            default=len(remainder),
        )
        candidate = remainder[:at_after]
        if at_after < stop and ":" in candidate.split("/", 1)[0]:
            next_slash = remainder.find("/", at_after)
            end = next_slash if next_slash != -1 else len(remainder)
            for sep in "?#":
                position = remainder.find(sep, at_after)
                if position != -1:
                    end = min(end, position)
            authority = remainder[:end]
    rest = remainder[end:]
    path_end = len(rest)
    for sep in "?#":
        position = rest.find(sep)
        if position != -1:
            path_end = min(path_end, position)
    return head, authority, rest[:path_end], rest[path_end:]


def _split_userinfo(authority: str) -> tuple[str | None, str | None, str]:
    """(user, password, host) of an authority; user and password raw (still percent-encoded)."""
    if "@" not in authority:
        return None, None, authority
    userinfo, _, host = authority.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return user, (password if colon else None), host


def _looks_like_webhook(host: str, path: str) -> bool:
    host = host.lower()
    lowered_path = path.lower()
    return any(word in host for word in _WEBHOOK_HOST_WORDS) or any(
        word in lowered_path for word in _WEBHOOK_PATH_WORDS
    )


def _mask_params(query: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=***``; keeps the original spelling of harmless parts."""
    parts = []
    for part in re.split(r"([&;])", query):
        if part in ("&", ";") or "=" not in part:
            parts.append(part)
            continue
        name, _, _value = part.partition("=")
        parts.append(f"{name}={MASK}" if is_secret_name(unquote_plus(name)) else part)
    return "".join(parts)


def mask_url(url: str, *, webhook: bool | None = None) -> str:
    """The URL with userinfo, secret-named query/fragment parameters and webhook paths masked.

    ``webhook=True`` masks the path whatever the host (a channel's URL); ``None`` guesses from
    the host and path (``hooks.slack.com``, ``/webhook``...).
    """
    if not isinstance(url, str):
        return url
    parts = _split_url(url)
    if parts is None:
        return _KV_PASSWORD.sub(lambda m: m.group("key") + MASK, url)
    head, authority, path, rest = parts
    user, password, host = _split_userinfo(authority)
    if user is not None:
        authority = f"{user}:{MASK}@{host}" if password is not None else f"{MASK}@{host}"
    if webhook is None:
        webhook = _looks_like_webhook(host, path)
    if webhook and path.strip("/"):
        path = "/" + MASK
        # A webhook's query and fragment are part of the credential too (Teams, signed URLs).
        rest = ""
    query, hash_mark, fragment = rest.partition("#")
    if query.startswith("?"):
        query = "?" + _mask_params(query[1:])
    if hash_mark and "=" in fragment:
        fragment = _mask_params(fragment)
    return f"{head}{authority}{path}{query}{hash_mark}{fragment}"


def mask_dsn(dsn: str) -> str:
    """A DSN with its password masked, URL style (``postgres://u:p@h/db?password=p``) or libpq
    key=value style (``host=h password='p w'``)."""
    if not isinstance(dsn, str):
        return dsn
    if _split_url(dsn.strip()) is not None:
        return mask_url(dsn.strip(), webhook=False)
    return _KV_PASSWORD.sub(lambda m: m.group("key") + MASK, dsn)


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header values masked unless the header is a harmless one (``Accept``, ``User-Agent``...)."""
    return {
        name: (value if str(name).strip().lower() in SAFE_HEADERS else MASK)
        for name, value in headers.items()
    }


def mask_text(text: str) -> str:
    """Free text (an error, a log line) with every URL masked and DSN passwords and
    ``Authorization:`` values hidden."""
    if not isinstance(text, str) or not text:
        return text
    text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)
    text = _KV_PASSWORD.sub(lambda m: m.group("key") + MASK, text)
    return _AUTH_HEADER_IN_TEXT.sub(lambda m: m.group("key") + MASK, text)


def mask_config(value: Any) -> Any:
    """A recursive copy of a config or payload with every secret masked: values under secret-named
    keys, header values, URL userinfo and secret query parameters, DSN passwords, webhook paths."""
    return _mask(value, None)


def _mask(value: Any, key: str | None) -> Any:
    lowered = (key or "").lower()
    if isinstance(value, Mapping):
        if lowered == "headers":
            return {
                k: (_mask(v, k) if str(k).strip().lower() in SAFE_HEADERS else MASK)
                for k, v in value.items()
            }
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(item, key) for item in value]
    if isinstance(value, str):
        if lowered == "dsn" or lowered.endswith("_dsn"):
            return mask_dsn(value)
        if key is not None and is_secret_name(key):
            return MASK if value else value
        if "webhook" in lowered:
            return mask_url(value, webhook=True)
        return mask_text(value)
    if key is not None and is_secret_name(key) and value is not None and value != "":
        return MASK
    return value


def _url_secrets(url: str, *, webhook: bool | None = None) -> list[str]:
    parts = _split_url(url)
    if parts is None:
        return []
    _head, authority, path, rest = parts
    found: list[str] = []
    user, password, host = _split_userinfo(authority)
    if password is not None:
        found.append(password)
        # Clients send userinfo as Basic auth, and servers echo that header back.
        basic = f"{unquote(user or '')}:{unquote(password)}".encode()
        found.append(base64.b64encode(basic).decode())
    elif user:
        found.append(user)
    if webhook is None:
        webhook = _looks_like_webhook(host, path)
    if webhook and path.strip("/"):
        found.append(path.strip("/"))
        # Each segment alone too: Slack's T…/B…/secret often shows up one segment at a time.
        # Only token-like segments: scrubbing a word like "services" would garble every text.
        found.extend(
            segment
            for segment in path.split("/")
            if len(segment) >= 8 and (len(segment) >= 16 or any(c.isdigit() for c in segment))
        )
    query, _, fragment = rest.partition("#")
    for params in (query.lstrip("?"), fragment):
        for part in re.split(r"[&;]", params):
            name, equals, value = part.partition("=")
            if equals and value and is_secret_name(unquote_plus(name)):
                found.append(value)
    return found


def _text_secrets(text: str, *, webhook: bool | None = None) -> list[str]:
    found: list[str] = []
    stripped = text.strip()
    if _split_url(stripped) is not None:
        found.extend(_url_secrets(stripped, webhook=webhook))
    else:
        for match in _URL_IN_TEXT.finditer(text):
            found.extend(_url_secrets(match.group(0)))
    for match in _KV_PASSWORD.finditer(text):
        raw = match.group("value")
        if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
            found.append(raw[1:-1])
            found.append(re.sub(r"\\(.)", r"\1", raw[1:-1]))
        else:
            found.append(raw)
    return found


def secret_values(value: Any) -> list[str]:
    """The raw secret strings inside a config or payload (passwords, tokens, header values,
    URL userinfo, secret query values, webhook paths), decoded forms included, longest first."""
    found: list[str] = []
    _collect(value, None, found)
    expanded: set[str] = set()
    for secret in found:
        for form in (secret, unquote(secret), unquote_plus(secret)):
            if len(form) >= MIN_SCRUB_LENGTH and form != MASK:
                expanded.add(form)
    return sorted(expanded, key=lambda s: (-len(s), s))


def _collect(value: Any, key: str | None, found: list[str]) -> None:
    lowered = (key or "").lower()
    if isinstance(value, Mapping):
        for k, v in value.items():
            if lowered == "headers" and str(k).strip().lower() not in SAFE_HEADERS:
                _collect_all(v, found)
            else:
                _collect(v, str(k), found)
        return
    if isinstance(value, list | tuple):
        for item in value:
            _collect(item, key, found)
        return
    if isinstance(value, str):
        if lowered == "dsn" or lowered.endswith("_dsn"):
            found.extend(_text_secrets(value, webhook=False))
        elif key is not None and is_secret_name(key):
            found.append(value)
        else:
            found.extend(_text_secrets(value, webhook=True if "webhook" in lowered else None))
        return
    if key is not None and is_secret_name(key) and isinstance(value, int | float):
        found.append(str(value))


def _collect_all(value: Any, found: list[str]) -> None:
    if isinstance(value, Mapping):
        for item in value.values():
            _collect_all(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect_all(item, found)
    elif isinstance(value, str):
        found.append(value)
        # "Bearer abc": the credential alone may be echoed without its scheme word.
        scheme, _, credential = value.partition(" ")
        if credential and scheme.isalpha():
            found.append(credential.strip())


def _encoded_forms(secret: str) -> set[str]:
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    # Percent-encoding may be spelled with lower-case hex digits.
    forms |= {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in list(forms)}
    return {f for f in forms if f}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of the given secrets (also URL-encoded) replaced by ``***``."""
    if not isinstance(text, str) or not text:
        return text
    forms: set[str] = set()
    for secret in secrets:
        if isinstance(secret, str) and len(secret) >= MIN_SCRUB_LENGTH:
            forms |= _encoded_forms(secret)
    if not forms:
        return text
    # One alternation, longest first, so a secret that contains another is replaced whole.
    pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
    return pattern.sub(MASK, text)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Scrub known secrets, then mask anything secret-shaped left (URLs, DSN passwords)."""
    return mask_text(scrub(text, secrets))


# Secrets of the work in progress (the check being probed, the batch being run), so that log
# lines written deep inside a driver or a handler are scrubbed of them too.
_scope: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "opsconsole_redaction_scope", default=()
)


@contextlib.contextmanager
def redaction_scope(secrets: Iterable[str]) -> Iterator[None]:
    """Adds secrets that every log line written inside the block is scrubbed of."""
    token = _scope.set((*_scope.get(), *secrets))
    try:
        yield
    finally:
        _scope.reset(token)


def scoped_secrets() -> tuple[str, ...]:
    return _scope.get()


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """``redact`` applied to every string inside a JSON-like value (observation details)."""
    secrets = list(secrets)
    if isinstance(value, Mapping):
        return {k: redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item, secrets) for item in value]
    if isinstance(value, str):
        return redact(value, secrets)
    return value


def restore_masked(submitted: Any, stored: Any) -> Any:
    """The submitted config with every masked value that came back unchanged replaced by the
    stored secret, so an edit form can show masked values and still keep the real ones."""
    return _restore(submitted, stored, mask_config(stored))


def _restore(submitted: Any, stored: Any, masked: Any) -> Any:
    if submitted == masked and masked != stored:
        return stored
    if isinstance(submitted, Mapping) and isinstance(stored, Mapping):
        return {
            k: (_restore(v, stored[k], masked[k]) if k in stored else v)
            for k, v in submitted.items()
        }
    if (
        isinstance(submitted, list)
        and isinstance(stored, list | tuple)
        and len(submitted) == len(stored)
    ):
        return [_restore(s, o, m) for s, o, m in zip(submitted, stored, masked, strict=True)]
    return submitted


def holds_mask(value: Any) -> bool:
    """Whether a submitted value still carries the ``***`` placeholder somewhere (a masked
    secret edited around, e.g. a new host with the old masked password)."""
    if isinstance(value, Mapping):
        return any(holds_mask(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(holds_mask(v) for v in value)
    return isinstance(value, str) and MASK in value
