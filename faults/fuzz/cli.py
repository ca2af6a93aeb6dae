"""``python -m faults.fuzz``: the decoder and parser targets in worker processes, then
the API and the ingest path; prints what each counted and exits 0 only when clean."""

from __future__ import annotations

import argparse
import logging
import os
import random
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import faults.fuzz
from faults.fuzz.api import fuzz_api
from faults.fuzz.base import Tally
from faults.fuzz.ingest import fuzz_ingest
from faults.fuzz.runner import run_named, targets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m faults.fuzz",
                                description=faults.fuzz.__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every example count (default 1: the long run)")
    p.add_argument("--api-examples", type=int, default=300,
                   help="schemathesis examples per API operation (default 300)")
    p.add_argument("--ingest", type=int, default=50_000,
                   help="fuzzed messages published to the ingest (default 50000)")
    p.add_argument("--only", default="",
                   help="comma-separated name prefixes of the parts to run, e.g. "
                        "decode,modbus,api,ingest")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--driver", choices=["buffers", "engine"], default="buffers",
                   help="buffers: random byte strings through Hypothesis's fuzz_one_input "
                        "(fast, default); engine: @given with settings(max_examples)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="processes running the decoder and parser targets (default: CPUs)")
    args = p.parse_args(argv)
    # The API logs each refused request; the counts below are what matters.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    seed_value = random.randrange(2**32) if args.seed is None else args.seed
    only = [s for s in args.only.split(",") if s]

    def wanted(name: str) -> bool:
        return not only or any(name.startswith(prefix) for prefix in only)

    print(f"seed {seed_value}, scale {args.scale:g}, {args.jobs} job(s)", flush=True)
    bad = 0
    started = time.perf_counter()
    names = [t.name for t in targets() if wanted(t.name)]
    examples = {t.name: max(1, int(t.examples * args.scale)) for t in targets()}
    if names:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(run_named, n, examples[n], seed_value, args.driver): n for n in names}
            tallies = {futures[f]: f.result()
                       for f in as_completed(futures)}
        total = Tally("all targets")
        for name in names:
            tally = tallies[name]
            print(tally.line(), flush=True)
            for sample in tally.samples:
                print("   ", sample)
            bad += tally.crashes + tally.wrong
            for key in ("examples", "accepted", "refused", "crashes", "wrong"):
                setattr(total, key, getattr(total, key) + getattr(tally, key))
        total.seconds = time.perf_counter() - started
        print(total.line().replace("/s)", "/s wall)"), flush=True)
    with tempfile.TemporaryDirectory(prefix="faults-fuzz-") as tmp:
        if wanted("api"):
            api = fuzz_api(max(1, int(args.api_examples * args.scale)) if args.scale < 1
                           else args.api_examples, seed_value, Path(tmp))
            print(api.text(), flush=True)
            for sample in api.samples[:20]:
                print("   ", sample)
            bad += api.server_errors + api.crashes + api.check_failures
        if wanted("ingest"):
            count = max(50, int(args.ingest * min(args.scale, 1.0)))
            ingest = fuzz_ingest(count, seed_value, Path(tmp))
            print(ingest.text(), flush=True)
            for sample in ingest.samples[:10]:
                print("   ", sample)
            missing = ingest.published - sum(ingest.rejected.values())
            bad += ingest.stored_garbage + int(ingest.crashed) + max(0, missing)
            bad += sum(s.startswith("decoded as valid") for s in ingest.samples)
            if ingest.rejected != ingest.expected:
                print(f"    expected rejections {dict(sorted(ingest.expected.items()))}")
                bad += 1
    print(f"total {time.perf_counter() - started:.0f} s: "
          f"{'PASS' if bad == 0 else f'FAIL ({bad})'}")
    return 0 if bad == 0 else 1
