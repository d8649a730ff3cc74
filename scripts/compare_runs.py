"""Compare trainings logged to MLflow: print the paper's Table 1 (mean ± std over seeds per variant).

Reads the parent ``training`` runs of an experiment from one or more tracking stores (repeat
``--tracking-uri`` to merge, e.g. a server and the local SQLite fallback a training used when the
server was down), keeps the latest finished run per (variant, seed), prints the Markdown table and
writes ``table.md``, ``table.csv`` and ``table.png`` into ``--out``::

    python scripts/compare_runs.py [--tracking-uri URI ...] [--experiment stbv-monai] [--preset paper] \
        [--protocol both|labelled|first_frame] [--out outputs/compare]

Two evaluation protocols are tabulated (both by default): ``labelled``, the two labelled frames
as references (``table.*``), and ``first_frame``, DAVIS's first frame where the lesion appears
(``table_first_frame.*``).

The default store is ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<repo>/outputs/train/mlruns.db``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without the editable install
    sys.path.insert(0, str(ROOT))

from stbv_monai.errors import InputError, install_excepthook  # noqa: E402
from stbv_monai.tracking.compare import aggregate, collect_runs, plot, to_csv, to_markdown, write_markdown  # noqa: E402
from stbv_monai.tracking.run_tree import PROTOCOL_PREFIXES  # noqa: E402

DEFAULT_URI = f"sqlite:///{ROOT / 'outputs' / 'train' / 'mlruns.db'}"

logger = logging.getLogger("compare_runs")
TITLES = {"labelled": "Test, two labelled frames as references:",
          "first_frame": "Test, first frame where the lesion appears (DAVIS):"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", action="append", dest="tracking_uris", metavar="URI",
                        help="MLflow tracking URI; repeat to merge stores (default: $MLFLOW_TRACKING_URI, "
                             f"else {DEFAULT_URI})")
    parser.add_argument("--experiment", default="stbv-monai", help="MLflow experiment name (default: %(default)s)")
    parser.add_argument("--preset", default=None, help="only runs with this preset tag (default: all, one row "
                                                       "per preset and variant when they differ)")
    parser.add_argument("--protocol", choices=("both", *PROTOCOL_PREFIXES), default="both",
                        help="which test protocol to tabulate (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "compare",
                        help="folder for table.md, table.csv, table.png (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.tracking_uris:
        args.tracking_uris = [os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI]
    return args


def main(argv: list[str] | None = None) -> None:
    install_excepthook()
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    runs = collect_runs(args.tracking_uris, args.experiment)
    protocols = list(PROTOCOL_PREFIXES) if args.protocol == "both" else [args.protocol]
    for protocol in protocols:
        rows = aggregate(runs, preset=args.preset, protocol=protocol)
        if not rows:
            where = ", ".join(args.tracking_uris)
            preset = f" with preset '{args.preset}'" if args.preset else ""
            raise InputError(where, f"no finished training runs with test_JF{preset} in experiment '{args.experiment}'")
        stem = "table" if protocol == "labelled" else f"table_{protocol}"
        write_markdown(rows, args.out / f"{stem}.md")
        to_csv(rows, args.out / f"{stem}.csv")
        plot(rows, args.out / f"{stem}.png")
        if len(protocols) > 1:
            print(f"\n{TITLES[protocol]}\n")
        print(to_markdown(rows), end="")
        logger.info("wrote %s.md, %s.csv, %s.png to %s", stem, stem, stem, args.out)


if __name__ == "__main__":
    main()
