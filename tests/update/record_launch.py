"""A stand-in for the update process in the offer tests (``[update] launcher``):

    python record_launch.py REQUEST OUT

appends the daemon's update request (id, version, bundle) and the bundle's SHA-256 to
``OUT`` (JSON lines) and removes the request, as ``smartcity-edge update --request`` does.
"""

import hashlib
import json
import sys
from pathlib import Path

request, out = Path(sys.argv[1]), Path(sys.argv[2])
doc = json.loads(request.read_text())
request.unlink()
doc["sha256_on_disk"] = hashlib.sha256(Path(doc["bundle"]).read_bytes()).hexdigest()
with open(out, "a") as handle:
    handle.write(json.dumps(doc) + "\n")
