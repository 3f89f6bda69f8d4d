#!/usr/bin/env python3
"""Plant one fault each in copies of a sharded model folder, for ``depthvlm check`` to catch.

The copies link to the original shards (no 9 GB copies); only a changed file is written:

* ``wrong-shape``: one tensor's shape in a shard header replaced by its transpose (same bytes);
* ``missing-shard``: the last shard left out;
* ``truncated``: the last shard cut to its first 64 MB;
* ``pickle``: a ``pytorch_model.bin`` beside the weights.

    python scripts/fullsize_faults.py /work/fullsize /work/fullsize_faults
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from depthvlm_ros.core.check import INDEX_FILE

TENSOR = "depth_head.projects.0.weight"


def linked_copy(src: Path, dst: Path, skip: str = "") -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name != skip:
            (dst / f.name).symlink_to(f.resolve())
    return dst


def transpose_in_header(src: Path, dst: Path, tensor: str) -> None:
    """Write ``src`` to ``dst`` with ``tensor``'s shape reversed in the header (same length)."""
    with open(src, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        raw = fh.read(n)
        header = json.loads(raw)
        header[tensor]["shape"] = header[tensor]["shape"][::-1]
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (n - len(text))
        if len(text) != n:
            raise SystemExit("the edited header does not keep its length")
        with open(dst, "wb") as out:
            out.write(n.to_bytes(8, "little"))
            out.write(text)
            shutil.copyfileobj(fh, out, 64 << 20)


def main(argv: list[str]) -> int:
    src, root = Path(argv[0]), Path(argv[1])
    weight_map = json.loads((src / INDEX_FILE).read_text())["weight_map"]
    last = sorted(set(weight_map.values()))[-1]
    shard = weight_map[TENSOR]

    folder = linked_copy(src, root / "wrong-shape", skip=shard)
    transpose_in_header(src / shard, folder / shard, TENSOR)
    linked_copy(src, root / "missing-shard", skip=last)
    folder = linked_copy(src, root / "truncated", skip=last)
    with open(src / last, "rb") as fh, open(folder / last, "wb") as out:
        out.write(fh.read(64 << 20))
    folder = linked_copy(src, root / "pickle")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not a real checkpoint.")
    print(" ".join(str(root / n) for n in ("wrong-shape", "missing-shard", "truncated", "pickle")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
