"""Command line: python -m snds_synth --n 2000 --seed 42 --years 2019-2021 --out DIR [--profile NAME] [--variants a,b]"""

from __future__ import annotations

import argparse
import re
import sys

from .generate import GeneratorError, generate
from .variants import PROFILES, VARIANTS


def _years(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d{4})\s*(?:-\s*(\d{4}))?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected YYYY-YYYY or YYYY, got {text!r}")
    y1 = int(m.group(1))
    y2 = int(m.group(2) or y1)
    if not (2008 <= y1 <= y2 <= 2030):
        raise argparse.ArgumentTypeError(f"years must lie in 2008-2030 with start <= end, got {text!r}")
    return y1, y2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m snds_synth",
                                description="Write a synthetic SNDS delivery (CSV as CNAM delivers) with its ground truth in OUT/_truth/.")
    p.add_argument("--n", type=int, default=2000, help="number of beneficiaries (default 2000)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument("--years", type=_years, default=(2019, 2021), help="care years, inclusive, e.g. 2019-2021 (2008-2030)")
    p.add_argument("--out", required=True, help="output directory (wiped; refused if non-empty and not a previous output)")
    p.add_argument("--dcir-dates", choices=["dmy", "iso"], default="dmy",
                   help="layout of plain dates in DCIR, IR_* and KI_* files: dd/MM/yyyy (default) or yyyy-MM-dd")
    p.add_argument("--encoding", choices=["utf-8", "latin-1", "cp1252"], default="utf-8",
                   help="file encoding (latin-1: the variant latin1, cp1252: the variant cp1252)")
    p.add_argument("--id-column", choices=["BEN_NIR_PSA", "NUM_ENQ"], default="BEN_NIR_PSA",
                   help="name of the patient column (NUM_ENQ: CNAM study extracts; the variant num_enq)")
    p.add_argument("--profile", default=None,
                   help="delivery profile, a preset list of variants: " + "; ".join(
                       f"{k} = {', '.join(v) or 'no variant'}" for k, v in PROFILES.items()))
    p.add_argument("--variants", default=None, metavar="A,B,...",
                   help="delivery variants, comma-separated (added to the profile's): " + ", ".join(VARIANTS))
    p.add_argument("--list-variants", action="store_true", help="list the variants and profiles, and exit")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    if argv is None:
        argv = sys.argv[1:]
    if "--list-variants" in argv:
        for k, v in VARIANTS.items():
            print(f"{k:<24} {v}")
        for k, v in PROFILES.items():
            print(f"profile {k:<16} {', '.join(v) or '(no variant: the native delivery)'}")
        return 0
    a = p.parse_args(argv)
    try:
        generate(a.out, n=a.n, seed=a.seed, years=a.years, dcir_dates=a.dcir_dates, encoding=a.encoding,
                 id_column=a.id_column, quiet=a.quiet, variants=a.variants, profile=a.profile)
    except GeneratorError as exc:
        print(f"snds_synth: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
