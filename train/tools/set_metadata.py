"""Set string metadata in a safetensors file without loading the tensors (no torch needed).

    python train/tools/set_metadata.py FILE KEY=VALUE [KEY=VALUE ...]

Rewrites the JSON header (padded with spaces to a multiple of 8 bytes, as safetensors writes it)
and copies the tensor bytes unchanged; the file is replaced atomically.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
from pathlib import Path


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 1
    path = Path(sys.argv[1])
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.setdefault("__metadata__", {})
    for kv in sys.argv[2:]:
        key, sep, value = kv.partition("=")
        if not sep:
            print(f"not KEY=VALUE: {kv}", file=sys.stderr)
            return 1
        meta[key] = value
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + raw[8 + n :])
    os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
