"""docs/protocol.md is generated from the code and must match it."""

import subprocess
import sys
from pathlib import Path

from protocol import docgen
from protocol.examples import EXAMPLES

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "protocol.md"


def test_protocol_doc_matches_render():
    assert docgen.DOC_PATH == DOC
    assert DOC.read_text(encoding="utf-8") == docgen.render(), (
        "docs/protocol.md is out of date: run python -m protocol.docgen --write")


def test_protocol_doc_render_is_deterministic():
    assert docgen.render() == docgen.render()


def test_protocol_doc_covers_every_channel_and_example():
    text = docgen.render()
    for channel, message in EXAMPLES.items():
        assert f"### `{channel.value}`" in text
        assert type(message).__name__ in text
    for heading in ("## Delivery: seq, outbox and ack", "## Outbox drop announcements",
                    "## Commands: expiry and at-most-once", "#### Last Will", "## Errors"):
        assert heading in text


def test_protocol_docgen_check_cli(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "protocol.docgen", "--check"], cwd=REPO,
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    stale = tmp_path / "protocol.md"
    stale.write_text(docgen.render().replace("QoS", "qos", 1), encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "protocol.docgen", "--check", "--path",
                          str(stale)], cwd=REPO, capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert "out of date" in bad.stderr
    missing = docgen.main(["--check", "--path", str(tmp_path / "nope.md")])
    assert missing == 1


def test_protocol_docgen_write(tmp_path):
    target = tmp_path / "docs" / "protocol.md"
    assert docgen.main(["--write", "--path", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == docgen.render()
    assert docgen.main(["--check", "--path", str(target)]) == 0
