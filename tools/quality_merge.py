"""Join the part CSVs of a training suite run with `--shard I/N` into one CSV and meta.

    python tools/quality_merge.py OUT.csv PART.csv [PART.csv ...]

The parts must come from the same suite file and corpus (their metas say so); the merged meta
is the first part's, with `parts` naming every part, `shard` null and `state` complete only when
every part is. Exit 1 (with the reason) when the parts do not belong together.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scfa_bench.results.meta import meta_path_for, read_meta, write_meta
from scfa_bench.results.quality_rows import QualityWriter, read_quality_rows


def merge(out: Path, parts: list[Path]) -> str:
    """'' when merged, else why not."""
    metas = [read_meta(meta_path_for(p)) for p in parts]
    for key in ("suite_sha256", "corpus"):
        if len({json.dumps(m.get(key), sort_keys=True) for m in metas}) > 1:
            return f"the parts differ in {key}: not parts of one run"
    shards = sorted(tuple(m.get("shard") or ()) for m in metas)
    count = shards[0][1] if shards and len(shards[0]) == 2 else 0
    if shards != [(i, count) for i in range(count)]:
        return f"expected parts 0..N-1 of N, got shards {shards}"
    if out.exists():
        out.unlink()
    writer = QualityWriter(out)
    for part in parts:
        for row in read_quality_rows(part):
            writer.write(row)
    meta = dict(metas[0])
    complete = all(m.get("state") == "complete" for m in metas)
    meta.update(parts=[str(p) for p in parts], shard=None)
    meta["state"] = "complete" if complete else "incomplete"
    write_meta(meta_path_for(out), meta)
    return ""


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    problem = merge(Path(argv[0]), [Path(p) for p in argv[1:]])
    if problem:
        print(f"FAIL: {problem}")
        return 1
    print(f"merged {len(argv) - 1} parts into {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
