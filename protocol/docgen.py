"""Build docs/protocol.md from the code, so the document cannot drift from the contract.

Field tables come from the models' JSON schemas (type, required, ``Field`` description),
examples from :mod:`protocol.examples` through :func:`~protocol.codec.encode`, and the
topic and QoS tables from :mod:`protocol.topics`. Only the prose is written by hand.

Usage::

    python -m protocol.docgen            # print the document
    python -m protocol.docgen --write    # rewrite docs/protocol.md
    python -m protocol.docgen --check    # exit 1 if docs/protocol.md is out of date

The prose is in :mod:`protocol.docsections`, the Markdown made from the models in
:mod:`protocol.doctables`; this module puts the sections together and writes or checks the
file.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
from pathlib import Path

from protocol.docsections import (
    command_extra,
    config_extra,
    delivery_section,
    encoding_section,
    errors_section,
    event_extra,
    intro,
    payload_section,
    reply_extra,
    status_extra,
    topics_section,
)
from protocol.topics import Channel

__all__ = ["DOC_PATH", "main", "render"]

logger = logging.getLogger(__name__)

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
"""Where the generated document lives in the source tree."""


def render() -> str:
    """The full text of docs/protocol.md."""
    sections = [
        intro(),
        topics_section(),
        encoding_section(),
        "## Payloads",
        payload_section(Channel.STATUS, status_extra()),
        payload_section(Channel.TELEMETRY),
        payload_section(Channel.EVENT, event_extra()),
        payload_section(Channel.CMD, command_extra()),
        payload_section(Channel.CMD_REPLY, reply_extra()),
        payload_section(Channel.ACK),
        payload_section(Channel.CONFIG, config_extra()),
        delivery_section(),
        errors_section(),
    ]
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: print, ``--write`` or ``--check`` the document."""
    parser = argparse.ArgumentParser(prog="python -m protocol.docgen", description=__doc__
                                     .splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the document")
    mode.add_argument("--check", action="store_true",
                      help="exit 1 if the document differs from the code")
    parser.add_argument("--path", type=Path, default=DOC_PATH,
                        help=f"document path (default {DOC_PATH})")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(text, encoding="utf-8")
        sys.stderr.write(f"wrote {args.path}\n")
        return 0
    if args.check:
        try:
            current = args.path.read_text(encoding="utf-8")
        except OSError as exc:
            sys.stderr.write(f"{args.path}: cannot read: {exc}\n")
            return 1
        if current == text:
            return 0
        diff = difflib.unified_diff(current.splitlines(keepends=True),
                                    text.splitlines(keepends=True),
                                    fromfile=str(args.path), tofile="generated")
        sys.stderr.writelines(list(diff)[:200])
        sys.stderr.write(f"\n{args.path} is out of date: run python -m protocol.docgen "
                         "--write\n")
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
