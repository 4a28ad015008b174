"""What the page may send with each action, checked for name, type and range before anything is
done, and the errors an action can end with, each carrying the HTTP status the web layer answers
(its message is meant for the page: it names the parameter, or the broker and what failed).

Every action takes ``side`` (a broker kind, ``"all"`` or ``"both"``; absent means all) and only
the parameters listed in :data:`ALLOWED`; anything else is refused with a 400 naming it.
Numbers may come as JSON numbers or as numeric strings (an ``<input>``'s value); booleans,
NaN, infinities and fractions where a whole number is due are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from ..harness.workloads import PROFILES
from .load import LoadSettings
from .side import SPECIALS

LOAD_FIELDS = {"rate": float, "profile": str, "consumers": int, "concurrency": int, "lock_s": float,
               "time_scale": float}
ALLOWED: dict[str, frozenset[str]] = {
    "start_load": frozenset(LOAD_FIELDS),
    "stop_load": frozenset(),
    "kill_worker": frozenset(),
    "kill_broker": frozenset(),
    "set_profile": frozenset({"profiles"}),
    "drop_connections": frozenset(),
    "publish": frozenset({"what"}),
}
MAX_TEXT = 64   # characters of a string parameter: names and numbers are short


class ActionError(Exception):
    """An action that could not be done; ``status`` is the HTTP status that says why."""

    status = 500


class BadParameter(ActionError, ValueError):
    """A parameter is missing, of the wrong type or out of range (400)."""

    status = 400


class UnknownAction(ActionError):
    """The page asked for an action that is not in the list (404)."""

    status = 404


class Busy(ActionError):
    """Another action is still running (409)."""

    status = 409


class ActionFailed(ActionError):
    """An action failed on one broker. The original error is kept as ``__cause__`` (never
    re-created with another type). Status: 403 for what ``--shared`` forbids (PermissionError),
    400 for what cannot be done now or here (ValueError: no worker running, broker restarting),
    502 for anything else (the broker or a tool it runs failed). ``done`` says what the action
    already did on the brokers before this one."""

    def __init__(self, kind: str, cause: BaseException, done: Mapping[str, str]) -> None:
        if isinstance(cause, PermissionError):
            self.status = 403
        elif isinstance(cause, ValueError):
            self.status = 400
        else:
            self.status = 502
        text = str(cause) or type(cause).__name__
        if self.status == 502:
            text = f"{type(cause).__name__}: {text}"
        already = "; ".join(f"{k}: {v}" for k, v in done.items())
        super().__init__(f"{kind}: {text}" + (f" (already done: {already})" if already else ""))
        self.kind, self.done = kind, dict(done)


@dataclass(frozen=True)
class Checked:
    """An action's parameters, checked and typed."""

    targets: list[str]
    settings: LoadSettings | None = None
    what: str | None = None
    profiles: Mapping[str, str] | None = None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadParameter(f"{field} must be a string, not {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise BadParameter(f"{field} is too long (at most {MAX_TEXT} characters)")
    return value


def number(field: str, value: Any, *, integer: bool) -> int | float:
    """``value`` as a finite int (``integer``) or float, from a JSON number or a numeric string."""
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadParameter(f"{field} must be {kind}, not {type(value).__name__}")
    if isinstance(value, str):
        text = _text(field, value).strip()
        try:
            value = float(text) if not integer or any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise BadParameter(f"{field} must be {kind}, got {_short(text)}") from None
    if isinstance(value, int) and abs(value) > 10**15:   # far beyond every range; float() would overflow
        raise BadParameter(f"{field} is out of range, got {_short(value)}")
    if not math.isfinite(value):
        raise BadParameter(f"{field} must be a finite number, got {value}")
    if integer:
        if not float(value).is_integer():
            raise BadParameter(f"{field} must be a whole number, got {value}")
        return int(value)
    return float(value)


def _targets(side: Any, kinds: list[str]) -> list[str]:
    where = f"one of {', '.join(kinds)} or 'all'"
    if side is None:
        return list(kinds)
    if not isinstance(side, str):
        raise BadParameter(f"side must be a string ({where}), not {type(side).__name__}")
    if side in ("all", "both"):
        return list(kinds)
    if side not in kinds:
        raise BadParameter(f"side must be {where}, got {_short(side)}")
    return [side]


def _settings(params: Mapping[str, Any]) -> LoadSettings:
    typed: dict[str, Any] = {}
    for field, kind in LOAD_FIELDS.items():
        if field not in params:
            continue
        value = params[field]
        if kind is str:
            typed[field] = _text(field, value)
            if typed[field] not in PROFILES:
                raise BadParameter(f"{field} must be one of {', '.join(PROFILES)}, got {_short(value)}")
        else:
            typed[field] = number(field, value, integer=kind is int)
    try:
        return LoadSettings(**typed).validated()
    except ValueError as exc:   # the ranges, all named
        raise BadParameter(str(exc)) from None


def _profiles(value: Any, targets: list[str], profile_names: Mapping[str, list[str]]) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadParameter("profiles must be an object naming a durability profile per broker, "
                           'e.g. {"redis": "no persistence"}')
    out: dict[str, str] = {}
    for kind, name in value.items():
        if kind not in profile_names:
            raise BadParameter(f"profiles: unknown broker {_short(kind)}; one of {', '.join(profile_names)}")
        name = _text(f"profiles.{kind}", name)
        if name not in profile_names[kind]:
            raise BadParameter(f"profiles.{kind} must be one of {', '.join(profile_names[kind])}, got {_short(name)}")
        out[kind] = name
    missing = [kind for kind in targets if kind not in out]
    if missing:
        raise BadParameter(f"profiles must name a profile for {', '.join(missing)}")
    return out


def check(action: str, params: Mapping[str, Any], profile_names: Mapping[str, list[str]]) -> Checked:
    """The checked parameters of ``action`` (a name in :data:`ALLOWED`) for the brokers of
    ``profile_names`` (kind -> its durability profiles' names). Raises BadParameter."""
    allowed = ALLOWED[action] | {"action", "side"}
    unknown = sorted(str(k) for k in params if k not in allowed)
    if unknown:
        takes = ", ".join(sorted(allowed - {"action"}))
        names = ", ".join(_short(k) for k in unknown)
        raise BadParameter(f"unknown parameter {names} for {action} (it takes: {takes})")
    targets = _targets(params.get("side"), list(profile_names))
    if action == "start_load":
        return Checked(targets, settings=_settings(params))
    if action == "publish":
        what = params.get("what")
        if not isinstance(what, str) or what not in SPECIALS:
            raise BadParameter(f"what must be one of {', '.join(SPECIALS)}, got {_short(what)}")
        return Checked(targets, what=what)
    if action == "set_profile":
        return Checked(targets, profiles=_profiles(params.get("profiles"), targets, profile_names))
    return Checked(targets)
