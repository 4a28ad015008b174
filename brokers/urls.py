"""URL helpers: credentials come only from URLs or the environment and never reach a log."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_PARAMS = ("password", "passwd", "pass", "pwd", "secret", "token", "key", "auth", "credentials")


def redact(url: str) -> str:
    """The URL with every secret hidden: ``scheme://user:***@host:port/path?password=***``.

    Never raises: what cannot be parsed comes back as "<unparsable url>" (a message about a bad
    URL must not fail while it is being written)."""
    try:
        parts = urlsplit(str(url))
        netloc = parts.netloc
        if parts.password is not None or "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if any(s in k.lower() for s in SECRET_PARAMS) else v) for k, v in pairs],
                              safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except Exception:  # noqa: BLE001 - whatever is wrong with it, say so without the URL
        return "<unparsable url>"
