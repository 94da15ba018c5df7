"""Synthetic SNDS delivery generator with ground truth.

    python -m snds_synth --n 2000 --seed 42 --years 2019-2021 --out DIR

or, from Python, `snds_synth.generate(out_dir, n, seed, years=(2019, 2021))`, which returns the truth
manifest. See docs/synthetic-data.md.
"""

__version__ = "1.1.0"

from .generate import GeneratorError, generate  # noqa: E402

__all__ = ["generate", "GeneratorError", "__version__"]
