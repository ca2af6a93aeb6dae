"""What the unit's technician tools say, in Bahasa Indonesia and English.

``smartcity-edge check`` and ``selftest`` speak the technician's language (``--lang id``,
the default, or ``--lang en``). Every message is a code plus parameters; the words are
here, one table per language (``id.py``, ``en.py``), with the same codes in both, loaded
when first asked for::

    w = Words("id")
    w("pulsed", what=w("valve"), name="valve-bunga", pin=22, secs="0.5")
    w.reason(problem_reason)  # a config problem's reason (``edge.errors.Reason``)

A config problem's reason is a ``Reason``: its English text (what logs and ``run`` show)
is made from ``en.py`` by its code, and ``Words("id").reason`` says it again from
``id.py``.
Errors found by pydantic (out of range, wrong type, unknown key, ...) carry pydantic's
error type as their code (``pydantic.greater_than``...) and pydantic's own English text as
``msg``.

What a library or the operating system reports in its own words (an ``OSError``, an MQTT
reason) is said from the ``errno.*`` and ``mqtt.*`` entries where there is one, and as
the library words it otherwise.
"""

from __future__ import annotations

import errno
import importlib
import socket

LANGS = ("id", "en")
DEFAULT_LANG = "id"
"""The units' technicians work in Balikpapan: Bahasa Indonesia unless asked otherwise."""


def table(lang: str) -> dict[str, str]:
    """The messages of ``lang`` (``id`` or ``en``), by code."""
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r} ({', '.join(LANGS)})")
    module = importlib.import_module(f"{__name__}.{lang}")
    return getattr(module, lang.upper())


def render(messages: dict[str, str], code: str, params: dict) -> str:
    """The message ``code`` from ``messages`` (a language's table); an ``input`` parameter
    (what the file said, already shown as text) is added as "(got ...)"."""
    text = messages[code].format(**params)
    if params.get("input") is not None:
        text += messages["got"].format(input=params["input"])
    return text


class Words:
    """``words(code, **params)``: the message in the chosen language (``id`` or ``en``)."""

    def __init__(self, lang: str = DEFAULT_LANG):
        self.lang = lang
        self.table = table(lang)

    def __call__(self, code: str, **params) -> str:
        return render(self.table, code, params)

    def reason(self, reason) -> str:
        """A config problem's reason in this language (a plain string as it is)."""
        code = getattr(reason, "code", None)
        if code is None:
            return str(reason)
        return render(self.table, code, reason.params)

    def field(self, field: str) -> str:
        """A config field's dotted path; "(file)" and "(syntax)" in words."""
        return self.table.get(f"field.{field}", field)

    def problems(self, exc) -> list[str]:
        """``field: reason`` of each problem of a ``ConfigError``."""
        return [self("config_problem", field=self.field(f), reason=self.reason(r))
                for f, r in exc.problems]

    def os_error(self, exc: BaseException) -> str:
        """What an ``OSError`` means, from its errno where the table has it."""
        if isinstance(exc, socket.gaierror):
            name = "gaierror"  # the host name does not resolve
        else:
            name = errno.errorcode.get(getattr(exc, "errno", None) or -1)
        if name is not None and f"errno.{name}" in self.table:
            return self.table[f"errno.{name}"]
        return getattr(exc, "strerror", None) or str(exc)

    def mqtt_reason(self, reason: str) -> str:
        """An MQTT CONNACK reason ("Not authorized", ...) in this language."""
        return self.table.get(f"mqtt.{reason}", reason)
