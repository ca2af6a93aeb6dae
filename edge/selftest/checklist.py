"""The checklist: one line per check (``OK``, ``WARN``, ``FAIL``), laid out for a phone
screen over SSH (40 columns), and the verdict."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..words import DEFAULT_LANG, Words

OK, WARN, FAIL = "OK", "WARN", "FAIL"
WIDTH = 40


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    status: str  # OK, WARN or FAIL
    text: str  # what was found
    advice: str = ""  # what to do about it

    def sentence(self) -> str:
        return f"{self.text} {self.advice}".strip()



# --------------------------------------------------------------------------------------
# Output for a phone screen
# --------------------------------------------------------------------------------------
def verdict(checks: list[Check]) -> bool:
    """Fit to run: no FAIL."""
    return not any(c.status == FAIL for c in checks)


def format_checklist(header: list[str], checks: list[Check], *, lang: str = DEFAULT_LANG,
                     width: int = WIDTH) -> str:
    """The checklist as lines of at most ``width`` columns: the ``header`` lines, a rule,
    one item per check (its verdict, then what was found and what to do), a rule, and
    the verdict with the counts."""
    w = Words(lang)
    rule = "=" * width
    indent = 6  # "GAGAL " and "FAIL  ": the verdicts in a column of their own
    lines = [line for text in header
             for line in textwrap.wrap(text, width, break_on_hyphens=False)]
    lines.append(rule)
    for check in checks:
        lines += textwrap.wrap(check.sentence(), width,
                               initial_indent=w(f"status.{check.status}").ljust(indent),
                               subsequent_indent=" " * indent, break_on_hyphens=False)
    lines.append(rule)
    lines += textwrap.wrap(w("tally", verdict=w("fit" if verdict(checks) else "unfit"),
                             fails=sum(c.status == FAIL for c in checks),
                             fail=w(f"status.{FAIL}"),
                             warns=sum(c.status == WARN for c in checks),
                             warn=w(f"status.{WARN}")), width)
    return "\n".join(lines)


def config_checklist(exc: ConfigError, *, lang: str = DEFAULT_LANG) -> str:
    """The checklist of a unit whose config is invalid: one FAIL line per problem (file,
    field, reason, as ``check`` names them), and nothing else, because nothing else was
    tried: like ``run``, selftest touches no pin with a config that ``check`` refuses."""
    w = Words(lang)
    checks = [Check(FAIL, w("config_fail", path=exc.path, field=w.field(field),
                            reason=w.reason(reason)),
                    w("broker_ca_do") if field == "broker.ca_file" else "")
              for field, reason in exc.problems]
    return format_checklist([w("title", device=Path(exc.path).name), w("config_stopped")],
                            checks, lang=lang)
