"""protocol/logs.py: journal priorities under systemd, readable lines elsewhere, fields,
and payloads as truncated JSON; both entry points set it up."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.logs import (
    ELLIPSIS,
    PAYLOAD_CHARS,
    FieldsAdapter,
    Formatter,
    fields,
    journal_priority,
    payload_text,
)

REPO = Path(__file__).resolve().parents[2]

# Each entry point configures logging its own way, then a warning, an info line and an
# exception are logged.
EDGE = "from edge.cli import _setup_logging; _setup_logging(False)"
CONTROLLER = ("import sys; from controller.cli import main; "
              "main(['token', 'list', '--config', sys.argv[1]])")
LOG_SOME = """
import logging
log = logging.getLogger("smartcity.check")
log.warning("careful", extra={"fields": {"device": "dlh-x", "cmd": "c-1"}})
log.info("fine")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("boom")
"""


def run_logging(tmp_path: Path, setup: str, *, journal: str | None) -> list[str]:
    """Run ``setup`` + LOG_SOME in a fresh interpreter, stderr into a file; ``journal``:
    "self" names that file in JOURNAL_STREAM (as systemd does), "other" names another."""
    config = tmp_path / "controller.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "c.db"}"\n[mqtt]\nenabled = false\n')
    out = tmp_path / "stderr"
    other = tmp_path / "other"
    other.touch()
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    with out.open("w") as stderr:
        if journal is not None:
            st = os.fstat(stderr.fileno()) if journal == "self" else other.stat()
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        subprocess.run([sys.executable, "-c", setup + "\n" + LOG_SOME, str(config)],
                       stderr=stderr, env=env, cwd=REPO, timeout=60, check=True)
    return out.read_text().splitlines()


@pytest.mark.parametrize("setup", [EDGE, CONTROLLER], ids=["edge", "controller"])
def test_logs_under_the_journal_carry_priority_prefixes(tmp_path, setup):
    lines = run_logging(tmp_path, setup, journal="self")
    assert "<4>smartcity.check: careful device=dlh-x cmd=c-1" in lines
    assert "<6>smartcity.check: fine" in lines
    start = lines.index("<3>smartcity.check: boom")
    traceback = lines[start:]
    assert len(traceback) > 3 and all(line.startswith("<3>") for line in traceback)
    assert traceback[-1] == "<3>ZeroDivisionError: division by zero"


@pytest.mark.parametrize("journal", [None, "other"], ids=["no-journal", "inherited"])
@pytest.mark.parametrize("setup", [EDGE, CONTROLLER], ids=["edge", "controller"])
def test_logs_elsewhere_are_readable_with_time(tmp_path, setup, journal):
    """Also when JOURNAL_STREAM was inherited but stderr goes somewhere else."""
    lines = run_logging(tmp_path, setup, journal=journal)
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert any(re.fullmatch(rf"{stamp} WARNING smartcity.check: careful device=dlh-x cmd=c-1",
                            line) for line in lines), lines
    assert not any(line.startswith("<") for line in lines)


def test_logs_priorities_follow_sd_daemon():
    assert [journal_priority(level) for level in (logging.CRITICAL, logging.ERROR,
            logging.WARNING, logging.INFO, logging.DEBUG)] == [2, 3, 4, 6, 7]


def test_logs_payload_is_compact_json_truncated_with_an_ellipsis():
    big = {"seq": 1, "readings": {f"probe_{i}": i / 3 for i in range(100)}}
    text = payload_text(json.dumps(big, indent=2).encode())
    assert len(text) == PAYLOAD_CHARS and text.endswith(ELLIPSIS)
    assert text.startswith('{"seq":1,"readings":{"probe_0":0.0,')
    assert payload_text(b'{"a": [1, 2]}') == '{"a":[1,2]}'
    assert payload_text({"zone": "lawn", "duration_s": 60}) == '{"zone":"lawn","duration_s":60}'


def test_logs_payload_that_is_not_json_is_a_json_string_never_a_repr():
    for raw in (b"{'zone': b'\\x00'}", b"\xff\xfe garbage", "caf\u00e9 \x00"):
        text = payload_text(raw)
        assert isinstance(json.loads(text), str)
        assert not text.startswith(("b'", 'b"'))


def test_logs_fields_from_an_adapter_and_the_call():
    record_holder = []

    class Keep(logging.Handler):
        def emit(self, record):
            record_holder.append(record)

    logger = logging.getLogger("smartcity.test.fields")
    logger.addHandler(Keep())
    logger.propagate = False
    try:
        FieldsAdapter(logger, device="dlh-x").warning("refused", extra=fields(cmd="c 2",
                                                                              seq=None))
    finally:
        logger.handlers.clear()
        logger.propagate = True
    line = Formatter(journal=True).format(record_holder[0])
    assert line == '<4>smartcity.test.fields: refused device=dlh-x cmd="c 2"'
