"""Synthetic SNDS delivery generator with ground truth.

    python -m snds_synth --n 2000 --seed 42 --years 2019-2021 --out DIR [--profile NAME] [--variants a,b]

or, from Python, `snds_synth.generate(out_dir, n, seed, years=(2019, 2021), profile=None, variants=None)`,
which returns the truth manifest. Delivery variants and profiles: snds_synth.variants. See
docs/synthetic-data.md.
"""

__version__ = "1.2.0"

from .generate import GeneratorError, generate  # noqa: E402
from .variants import PROFILES, VARIANTS  # noqa: E402

__all__ = ["generate", "GeneratorError", "PROFILES", "VARIANTS", "__version__"]
