"""The references bench/eval_speed.py measures the product against.

1. ``voc_eval_reference``: the per-detection port of py-faster-rcnn's ``voc_eval`` loop on
   in-memory arrays. It lives once, in tests/test_eval_voc_reference.py, where the test suite
   checks the product against it; this module only loads it from there.
2. py-faster-rcnn's own ``lib/datasets/voc_eval.py`` (Bharath Hariharan, MIT licence), run from
   the user's copy of that file: ``load_voc_eval(path)`` applies the few mechanical edits Python 3
   needs (print statements → calls, ``cPickle`` → ``pickle`` with binary cache files, ``np.bool`` →
   ``bool``; each edit must apply, or the file is not the one expected) and executes it. Its code
   is not copied here. Run as a script, this module is the evaluation a py-faster-rcnn user runs
   (``pascal_voc._do_python_eval``: ``voc_eval`` per class, one annotation cache, VOC07 metric)::

       python bench/_reference_voc_eval.py --voc-eval py-faster-rcnn/lib/datasets/voc_eval.py \\
           --root VOC2007 --split test --detections DIR --cachedir DIR [--out aps.json] CLASS ...
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "tests" / "test_eval_voc_reference.py"
_spec = importlib.util.spec_from_file_location("_voc_eval_reference", _PATH)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

voc_eval_reference = _module.voc_eval_reference

__all__ = ["voc_eval_reference", "load_voc_eval", "python3_source"]

#: (what to find, what to put instead) — the whole port from Python 2.
_EDITS = (
    ("import cPickle\n", "import pickle as cPickle\n"),
    ("with open(cachefile, 'w') as f:", "with open(cachefile, 'wb') as f:"),
    ("with open(cachefile, 'r') as f:", "with open(cachefile, 'rb') as f:"),
    (".astype(np.bool)", ".astype(bool)"),
    ("print 'Reading annotation for {:d}/{:d}'.format(\n                    i + 1, len(imagenames))",
     "print('Reading annotation for {:d}/{:d}'.format(\n                    i + 1, len(imagenames)))"),
    ("print 'Saving cached annotations to {:s}'.format(cachefile)",
     "print('Saving cached annotations to {:s}'.format(cachefile))"),
)


def python3_source(source: str) -> str:
    """py-faster-rcnn's voc_eval.py source made runnable by Python 3 (see the module docstring)."""
    for old, new in _EDITS:
        if old not in source:
            raise ValueError(f"voc_eval.py does not contain {old!r}: not the expected py-faster-rcnn file")
        source = source.replace(old, new)
    return source


def load_voc_eval(path: str | Path) -> types.ModuleType:
    """Executes py-faster-rcnn's voc_eval.py (after :func:`python3_source`) as a module."""
    module = types.ModuleType("voc_eval")
    module.__file__ = str(path)
    exec(compile(python3_source(Path(path).read_text()), str(path), "exec"), module.__dict__)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voc-eval", required=True, help="py-faster-rcnn's lib/datasets/voc_eval.py")
    parser.add_argument("--root", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--detections", required=True)
    parser.add_argument("--cachedir", required=True)
    parser.add_argument("--out")
    parser.add_argument("classes", nargs="+")
    args = parser.parse_args(argv)
    voc_eval = load_voc_eval(args.voc_eval).voc_eval
    annopath = str(Path(args.root) / "Annotations" / "{:s}.xml")
    imagesetfile = str(Path(args.root) / "ImageSets" / "Main" / f"{args.split}.txt")
    template = str(Path(args.detections) / f"comp4_det_{args.split}_{{:s}}.txt")
    aps = {}
    for cls in args.classes:  # pascal_voc._do_python_eval
        _, _, ap = voc_eval(template.format(cls), annopath, imagesetfile, cls, args.cachedir, ovthresh=0.5,
                            use_07_metric=True)
        aps[cls] = float(ap)
        print(f"AP for {cls} = {ap:.4f}")
    print(f"Mean AP = {sum(aps.values()) / len(aps):.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps(aps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
