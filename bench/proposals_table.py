"""Selective search's modes on the coco128-voc test photos, beside the paper's VOC 2007 figures.

    python bench/proposals_table.py [--images 20] [--root ../shared/data/coco128-voc/VOC2007] [--json out.json]

Rows (``visiontasks.detection.proposals.table.TABLE_ROWS``): ``paper`` (Uijlings et al.'s fast
mode, ranked their way), OpenCV's ``fast`` and ``quality`` presets, all at R-CNN's 500 px width
with no minimum box side, and ``paper`` with R-CNN's 20 px filter at that width. Columns: boxes
per image, recall at IoU 0.5 and 0.7, average recall (0.5:0.95), MABO, proposer seconds per
image (one process, the machine's threads). Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from visiontasks.detection.proposals.table import TABLE_ROWS, format_proposal_table, proposal_table  # noqa: E402

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "coco128-voc" / "VOC2007"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="VOC-layout folder (default: %(default)s)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--images", type=int, default=None, help="the first N images of the split (default: all)")
    parser.add_argument("--rows", default=None,
                        help=f"comma-separated labels of the rows to run (default: all of {[r[0] for r in TABLE_ROWS]})")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if not Path(args.root).is_dir():
        print(f"skipped: {args.root} is not there (the coco128-voc reference data)", file=sys.stderr)
        return 0
    rows = TABLE_ROWS
    if args.rows:
        wanted = [w.strip() for w in args.rows.split(",")]
        unknown = sorted(set(wanted) - {r[0] for r in TABLE_ROWS})
        if unknown:
            raise SystemExit(f"--rows: unknown {unknown}; valid: {[r[0] for r in TABLE_ROWS]}")
        rows = tuple(r for r in TABLE_ROWS if r[0] in wanted)
    results = proposal_table(args.root, args.split, args.images, rows, progress=lambda s: print(s, flush=True))
    n, objects = (results[0]["num_images"], results[0]["num_gt"]) if results else (0, 0)
    title = (f"{Path(args.root).parent.name}/{Path(args.root).name} {args.split}: {n} images, {objects} objects; "
             f"{platform.machine()}, {os.cpu_count()} CPUs")
    print(format_proposal_table(results, title))
    if args.json:
        keep = [{k: v for k, v in r.items() if k not in ("abo_per_class", "proposals")} for r in results]
        Path(args.json).write_text(json.dumps(keep, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
