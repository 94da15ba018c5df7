"""The job code bundle: what a cluster runs (Spark standalone, EMR Serverless, EMR on EC2).

    <code_root>/<version>/snds_jobs.zip       spark_jobs/ + sql/ + config/ (no region files)
    <code_root>/<version>/steps/<step>.py     one entry script per step (spark-submit's application)

The zip goes to spark-submit as `--py-files`: the driver and the executors import `spark_jobs` from it,
and the driver reads the step's SQL and configuration from it (extracted once per process into a
temporary directory), so nothing depends on a checkout on the cluster's machines. The version is the
zip's SHA-256: the same code gives the same version and the same bytes (fixed timestamps, sorted
entries), so re-uploading is a no-op.

    python -m spark_jobs.bundle build OUT_DIR      # prints the version and the files written
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parent.parent
STEP_MODULES = ("ingest", "clean", "quality", "merge", "model", "feasibility")
ZIP_NAME = "snds_jobs.zip"
_ENTRY = '''"""Entry point of step {step} (spark-submit application). The code comes from {zip} (--py-files)."""
import runpy

runpy.run_module("spark_jobs.{step}", run_name="__main__", alter_sys=True)
'''
_extracted: Path | None = None


def _bundle_zip() -> Path | None:
    """The zip this package was imported from, if any (spark-submit --py-files)."""
    for parent in Path(__file__).parents:
        if parent.is_file() and zipfile.is_zipfile(parent):
            return parent
        if parent.is_dir():
            return None
    return None


def project_dir() -> Path:
    """Where `sql/` and `config/` are: the checkout, or the bundle's resources extracted once."""
    global _extracted
    zip_path = _bundle_zip()
    if zip_path is None:
        return _SOURCE_ROOT
    if _extracted is None:
        digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()[:16]
        target = Path(tempfile.gettempdir()) / f"snds-bundle-{digest}"
        if not target.is_dir():
            staging = Path(tempfile.mkdtemp(prefix=f".snds-bundle-{digest}-", dir=target.parent))
            with zipfile.ZipFile(zip_path) as zf:
                zf.extractall(staging, [n for n in zf.namelist() if n.startswith(("sql/", "config/"))])
            try:
                os.rename(staging, target)
            except OSError:  # another process of the same job extracted it first
                pass
        _extracted = target
    return _extracted


def resource(path: str | Path) -> Path:
    """A configuration or SQL path: absolute as given, relative to the code bundle otherwise."""
    path = Path(path)
    return path if path.is_absolute() else project_dir() / path


def code_origin() -> str:
    """Where `spark_jobs` was imported from (the step report records it)."""
    zip_path = _bundle_zip()
    return str(zip_path) if zip_path else str(_SOURCE_ROOT)


def _bundle_files() -> list[tuple[str, Path]]:
    files = []
    for top, pattern in (("spark_jobs", "*.py"), ("sql", "*"), ("config", "*")):
        for path in sorted((_SOURCE_ROOT / top).rglob(pattern)):
            rel = path.relative_to(_SOURCE_ROOT).as_posix()
            if not path.is_file() or "__pycache__" in rel or rel.startswith("config/regions/"):
                continue
            files.append((rel, path))
    return files


def build_zip() -> bytes:
    """The bundle zip, byte-identical for the same sources."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, path in _bundle_files():
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return buf.getvalue()


def build(out_dir: str | Path) -> dict:
    """Write the bundle under `out_dir/<version>/`; returns {version, files: {relative name: path}}."""
    data = build_zip()
    version = hashlib.sha256(data).hexdigest()[:16]
    target = Path(out_dir) / version
    files = {ZIP_NAME: data}
    files.update({f"steps/{s}.py": _ENTRY.format(step=s, zip=ZIP_NAME).encode() for s in STEP_MODULES})
    written = {}
    for name, content in files.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != content:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(content)
            os.replace(tmp, path)
        written[name] = str(path)
    return {"version": version, "files": written}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="spark_jobs.bundle", description="Build the job code bundle.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("out_dir")
    args = p.parse_args(argv)
    print(json.dumps(build(args.out_dir), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
