"""Every decoder and parser target, and the runner that feeds one its examples."""

from __future__ import annotations

import random
import time
import traceback
import zlib

from hypothesis import HealthCheck, Phase, given, seed, settings

from faults.fuzz import decoders, lines, modbus
from faults.fuzz.base import Tally, Target, Wrong


def targets() -> list[Target]:
    """Every target and its example count in the long run (sized to about 10 minutes
    on the reference machine: the fast pure parsers get more than the 100,000 floor)."""
    return [*decoders.targets(), *lines.targets(), *modbus.targets()]


BUFFER_SIZES = (16, 64, 256, 1024, 4096)


def run_target(target: Target, examples: int, seed_value: int,
               driver: str = "buffers") -> Tally:
    """Run one target for ``examples`` examples; never stops at a failure.

    ``driver="buffers"`` (the default) feeds seeded random byte strings to Hypothesis's
    ``fuzz_one_input``, its entry point for fuzzers: the same strategies and checks,
    without the engine's per-example bookkeeping (about 0.6 ms an example here, which
    would make 100,000 examples of 15 targets take most of an hour). ``"engine"`` runs
    the usual ``@given`` with ``settings(max_examples=examples)`` instead.
    """
    tally = Tally(target.name)

    def body(example):
        tally.examples += 1
        try:
            if target.check(example):
                tally.accepted += 1
            else:
                tally.refused += 1
        except Wrong as exc:
            tally.wrong += 1
            if len(tally.samples) < 5:
                tally.samples.append(f"wrong: {exc}"[:500])
        except Exception as exc:  # noqa: BLE001 - a crash is what this counts
            tally.crashes += 1
            if len(tally.samples) < 5:
                tally.samples.append(f"crash: {type(exc).__name__}: {exc} on {example!r}"[:500]
                                     + "\n" + traceback.format_exc(limit=3))

    quiet = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}
    t0 = time.perf_counter()
    if driver == "engine":
        seed(seed_value)(settings(max_examples=examples, phases=[Phase.generate], **quiet)(
            given(target.strategy)(body)))()
    else:
        test = settings(**quiet)(given(target.strategy)(body))
        rng = random.Random(seed_value ^ zlib.crc32(target.name.encode()))
        for _ in range(20 * examples):  # a buffer too short for the example is skipped
            if tally.examples >= examples:
                break
            test.hypothesis.fuzz_one_input(rng.randbytes(rng.choice(BUFFER_SIZES)))
    tally.seconds = time.perf_counter() - t0
    return tally


def run_named(name: str, examples: int, seed_value: int, driver: str) -> Tally:
    """``run_target`` by name, in a worker process (strategies do not pickle)."""
    return run_target(next(t for t in targets() if t.name == name), examples, seed_value,
                      driver)
