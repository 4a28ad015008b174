"""URL helpers: credentials come only from URLs or the environment and never reach a log.

:func:`redact` hides a URL's secrets without trusting a URL parser to find them: a password
that holds '/', '?', '#' or '@' unencoded makes :func:`urllib.parse.urlsplit` end the netloc
inside the password, so the rest of the secret would be printed as a path or a query. Here the
credentials end at the LAST '@' of the raw text instead (a host never holds one). What follows
that '@' may be shown, with the values of secret-looking query parameters hidden and any
fragment hidden (a '#' inside a query value starts one); when that '@' may itself sit inside a
secret query value (``?password=p@q``), what follows it up to the next parameter is hidden too.

:func:`new_secret` makes the passwords (and user names) of the brokers we start ourselves.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import quote, unquote, urlsplit

SECRET_PARAMS = ("password", "passwd", "pass", "pwd", "secret", "token", "key", "auth", "credentials")
UNPARSABLE = "<unparsable url>"
HIDDEN = "***"
_ENDS_AUTHORITY = "/?#"
_PARAMETER = re.compile(r"[?&]([^?&=#]*)=")  # a query parameter's start: "?name=" or "&name="


def redact(url: object) -> str:
    """The URL with every secret hidden: ``scheme://user:***@host:port/path?password=***``.

    Guarantees, for any input: it never raises; the password of the userinfo (everything
    between the first ':' after ``scheme://`` and the LAST '@') never appears in the output,
    whatever characters it holds; nor do the values of query parameters whose names look
    secret (:data:`SECRET_PARAMS`), nor a fragment. A user name is shown only when it holds
    none of '@', '/', '?', '#' (else it is hidden too). Text that still does not parse as a
    URL once its secrets are hidden comes back as ``<unparsable url>`` (a message about a bad
    URL must not fail while it is being written)."""
    try:
        hidden = _redact(str(url))
        urlsplit(hidden)  # e.g. an IPv6 host without its ']': say so rather than guess
        return hidden
    except Exception:  # noqa: BLE001 - whatever is wrong with it, say so without the URL
        return UNPARSABLE


def _redact(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    userinfo, at, after = rest.rpartition("@")
    credentials = ""
    if at and _secret_value_runs_on(userinfo):
        # The last '@' may sit inside a secret query value ("?password=p@q"): what follows it,
        # up to the next parameter, may be the rest of that secret, not a host.
        end = min((i for i in (after.find(c) for c in "&#") if i >= 0), default=len(after))
        after = HIDDEN + after[end:]
    if at:
        user, colon, _password = userinfo.partition(":")
        if any(c in user for c in "@" + _ENDS_AUTHORITY):
            user = HIDDEN
        credentials = f"{user}:{HIDDEN}@" if colon else f"{user}@"
    end = min((i for i in (after.find(c) for c in _ENDS_AUTHORITY) if i >= 0), default=len(after))
    hostport, tail = after[:end], after[end:]
    tail, hash_, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    out = (f"{scheme}://" if sep else "") + credentials + hostport + path
    if question:
        out += "?" + _redact_query(query)
    if hash_:
        out += "#" + HIDDEN
    return out


def _secret_value_runs_on(userinfo: str) -> bool:
    """True if ``userinfo`` (the text before the last '@') ends inside a query parameter whose
    name looks secret: ``...?password=p`` of ``...?password=p@q``."""
    for found in reversed(list(_PARAMETER.finditer(userinfo))):
        if _is_secret(found.group(1)):
            return not any(c in userinfo[found.end():] for c in "&#")  # else its value ended there
    return False


def _is_secret(name: str) -> bool:
    return any(s in unquote(name).lower() for s in SECRET_PARAMS)


def _redact_query(query: str) -> str:
    """``a=1&password=x`` -> ``a=1&password=***``; the raw text of other parameters kept. A
    piece without '=' right after a secret one is taken as part of its value (an unencoded
    '&' in a password) and hidden with it."""
    pieces: list[str] = []
    in_secret = False
    for piece in query.split("&"):
        name, eq, _value = piece.partition("=")
        if not eq and in_secret:
            continue
        in_secret = bool(eq) and _is_secret(name)
        pieces.append(f"{name}={HIDDEN}" if in_secret else piece)
    return "&".join(pieces)


def ambiguous_credentials(url: str) -> bool:
    """True if the text between ``scheme://`` and the LAST '@' holds '/', '?' or '#': a URL
    parser would end the netloc inside it, so the password (or a vhost or path holding an
    unencoded '@') would be read as host, port, path or query, and its pieces quoted in the
    parser's errors. Such a URL must be refused, not guessed at: percent-encode them."""
    rest = str(url).partition("://")[2] or str(url)
    userinfo, at, _ = rest.rpartition("@")
    return bool(at) and any(c in userinfo for c in _ENDS_AUTHORITY)


def new_secret(nbytes: int = 16) -> str:
    """A random secret (hex: safe in a URL and a config file without quoting)."""
    return secrets.token_hex(nbytes)


def userinfo(user: str | None, password: str | None) -> str:
    """``user:password@`` percent-encoded for a URL's netloc ('' when both are empty)."""
    if not user and not password:
        return ""
    text = quote(user or "", safe="")
    if password is not None:
        text += ":" + quote(password, safe="")
    return text + "@"
