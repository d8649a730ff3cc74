"""Generate the embedded synthetic breast-ultrasound video dataset (two-shot labelled).

Writes ``images/<vid>.nii.gz``, ``labels/<vid>.nii.gz`` and a decathlon ``datalist.json`` under
``--out``; optionally a contact-sheet PNG of a few videos with the lesion outlined::

    python scripts/make_synthetic_data.py --out data/synthetic --videos 32 --frames 100 --size 128 \\
        --seed 0 --preview /tmp/synthetic_preview.png

With ``--stills N`` it writes N still images with lesion masks in the BUSI layout instead
(``<out>/{benign,malignant,normal}/still_<i>.png`` + ``still_<i>_mask.png``), for the stage-0
pretraining on static images::

    python scripts/make_synthetic_data.py --out data/synthetic_stills --stills 200 --size 128

Bad arguments end with one ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn, Sequence

from stbv_monai.data.synthetic import make_dataset
from stbv_monai.data.synthetic_preview import save_preview
from stbv_monai.data.synthetic_stills import make_stills
from stbv_monai.errors import InputError


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like the project's other errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = _OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="dataset folder to write (datalist paths are relative to it)")
    p.add_argument("--videos", type=int, default=32, help="number of videos (split ~60/15/25%%)")
    p.add_argument("--frames", type=int, default=100, help="frames per video (2 are labelled)")
    p.add_argument("--size", type=int, default=128, help="frame height and width in pixels")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (same seed, same files)")
    p.add_argument("--exit-prob", type=float, default=0.5,
                   help="probability that a video's lesion is out of view at its start or end")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--preview", default=None, help="also write a contact-sheet PNG here (videos only)")
    p.add_argument("--stills", type=int, default=None, metavar="N",
                   help="write N still images with lesion masks in the BUSI layout instead of videos")
    args = p.parse_args(argv)
    if args.stills is not None and args.preview:
        p.error("--preview draws videos; it cannot be combined with --stills")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the generator; return the exit status."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.stills is not None:
            make_stills(args.out, args.stills, args.size, args.seed, workers=args.workers)
            return 0
        datalist = make_dataset(args.out, args.videos, args.frames, args.size, args.seed,
                                exit_prob=args.exit_prob, workers=args.workers)
        if args.preview:
            save_preview(datalist, args.preview)
    except InputError as exc:  # the user's mistake: one line, no stack trace
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
