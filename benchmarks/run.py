"""`make bench`: generator, ingest, pseudonymisation and pipeline throughput, per size and engine, against an I/O floor.

For each size (default 10,000 and 50,000 beneficiaries over 3 years) it generates a synthetic delivery,
then, on the same files and in the same run:
- the I/O floor: DuckDB's plain CSV -> Parquet conversion of every file (type sniffing, no validation,
  no quarantine, no pseudonymisation), i.e. the least work any ingest must do;
- a first ingest on DuckDB with an empty vault (every identifier new; cheap argon2 parameters, so
  that this run measures the collect/hash/join machinery rather than argon2 itself);
- ingest on DuckDB (`python -m spark_jobs.ingest --engine duckdb`) and on Spark (`spark-submit
  --master local[N] spark_jobs/ingest.py --engine spark`) with that vault: the steady state of a new
  release whose patients are known, where every identifier is looked up and none is hashed.
After each warm ingest, the rest of the release pipeline runs on the same engine, each step its own
process as in the DAG (clean_dcir, clean_pmsi, gate_clean, merge, model, gate_model with the
row-for-row comparison against the generator's truth, feasibility_report): per-step time and rows/s
per core, and the whole pipeline (argon2 excluded) as input rows/s per core and as a ratio to the I/O
floor. The model step's report gives the medico-economic (cost) tables' share of it. (Publish, a
pointer switch and a catalog refresh in the Airflow worker, is not a step job.) On DuckDB the run's
model is then published and the example study's cohort (config/studies/t2d_treated.yaml) is built
over it as `make cohort` does, timed on its own (not part of the pipeline total).
Then the cost of hashing itself, with the production argon2 parameters (t=2, 19 MiB): a cold ingest
of a 2,000-beneficiary delivery on each engine, reported as new identifiers per second per core.
Each is a separate process; wall time and peak RSS (largest process of its tree) are recorded.
Results go to a JSON file and a table is printed. This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from spark_jobs.cohort import TABLES as COHORT_TABLES  # noqa: E402
from spark_jobs.keys import LocalKeyFile  # noqa: E402
from spark_jobs.model import COST_TABLES  # noqa: E402
from spark_jobs.spark_conf import SPARK_QUIET_CONF, SPARK_SQL_CONF  # noqa: E402

FAST_ARGON2 = ["--argon2-time-cost", "1", "--argon2-memory-kib", "64", "--argon2-parallelism", "1"]
PY = sys.executable
SPARK_SUBMIT = str(Path(PY).parent / "spark-submit")

# Runs a command and prints the peak RSS (KiB) of its process tree: RUSAGE_CHILDREN of this
# wrapper covers the command and every descendant it waited for (spark-submit -> JVM).
_MEASURE = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(r.returncode)"
)

_FLOOR = """
import sys, time, duckdb
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
con = duckdb.connect()
con.execute("SET threads = %s" % sys.argv[3])
for f in sorted(src.glob("*.csv")):
    con.execute(f"COPY (SELECT * FROM read_csv('{f}', delim=';', header=true, strict_mode=false, "
                f"ignore_errors=true, null_padding=true)) TO '{dst / (f.stem + '.parquet')}' (FORMAT parquet, COMPRESSION zstd)")
"""


def measured(cmd: list[str], env: dict | None = None, log: Path | None = None) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [PY, "-c", _MEASURE, *cmd], env={**os.environ, **(env or {})}, cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seconds = time.perf_counter() - t0
    if log:
        log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    peak = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB")]
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak[-1] / 1024, 1) if peak else None}


def count_rows(delivery: Path) -> int:
    n = 0
    for f in delivery.glob("*.csv"):
        with open(f, "rb") as fh:
            n += sum(1 for line in fh if line.strip()) - 1
    return n


def bench_size(n: int, years: str, work: Path, cores: int, engines: list[str]) -> dict:
    delivery = work / f"delivery-n{n}"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if delivery.exists():
        shutil.rmtree(delivery)
    print(f"[n={n}] generating ...", flush=True)
    gen = measured([PY, "-m", "snds_synth", "--n", str(n), "--seed", "1", "--years", years, "--out", str(delivery),
                    "--quiet"], log=logs / f"synth-n{n}.log")
    rows = count_rows(delivery)
    size_mb = sum(f.stat().st_size for f in delivery.glob("*.csv")) / 2**20
    result = {"beneficiaries": n, "years": years, "input_rows": rows, "input_mb": round(size_mb, 1),
              "generator": gen, "engines": {}}
    print(f"[n={n}] {rows:,} rows, {size_mb:.0f} MB, generated in {gen['seconds']} s", flush=True)

    print(f"[n={n}] I/O floor (DuckDB CSV -> Parquet) ...", flush=True)
    floor = measured([PY, "-c", _FLOOR, str(delivery), str(work / f"floor-n{n}"), str(cores)],
                     log=logs / f"floor-n{n}.log")
    result["io_floor"] = floor
    secure = work / f"secure-n{n}"
    shutil.rmtree(secure, ignore_errors=True)
    key = LocalKeyFile.create(secure / "region.key").path
    runs = [("duckdb", "first run, empty vault")] + [(e, "vault warm") for e in engines]
    for engine, label in runs:
        out = work / f"lake-n{n}-{engine}"
        report, m = run_ingest(engine, delivery, out, secure / "vault", key, cores, FAST_ARGON2,
                               logs / f"ingest-n{n}-{engine}-{label.split()[0]}.log", f"bench-{n}")
        assert report["totals"]["rows_read"] == rows, (report["totals"], rows)
        ps = report["pseudonymisation"]
        m["rows_per_s_per_core"] = round(rows / m["seconds"] / cores)
        m["ratio_to_io_floor"] = round(m["seconds"] / floor["seconds"], 2)
        m["quarantined"] = report["totals"]["quarantined"]
        m["identifiers"], m["hashed"] = ps["identifiers"], ps["hashed"]
        m["pseudonymise_seconds"] = round(ps["collect_seconds"] + ps["hash_seconds"], 2)
        result["engines"][engine if label == "vault warm" else f"{engine} (empty vault)"] = m
        print(f"[n={n}]   {m['seconds']} s, {ps['identifiers']:,} identifiers, {ps['hashed']:,} hashed", flush=True)
        if label == "vault warm":
            # The whole pipeline, argon2 excluded (the vault knows every identifier): ingest + the rest.
            m["steps"] = run_after_ingest(engine, out, cores, logs, f"bench-{n}", delivery)
            total = m["seconds"] + sum(step["seconds"] for name, step in m["steps"].items() if name != "cohort")
            m["pipeline"] = {"seconds": round(total, 2), "rows_per_s_per_core": round(rows / total / cores),
                             "ratio_to_io_floor": round(total / floor["seconds"], 2),
                             "peak_rss_mb": max(x["peak_rss_mb"] or 0 for x in [m, *m["steps"].values()])}
            m["pipeline"]["excludes"] = "cohort"
        shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work / f"floor-n{n}", ignore_errors=True)
    shutil.rmtree(secure, ignore_errors=True)
    return result




def run_step(engine: str, step: str, args: list[str], cores: int, log: Path) -> dict:
    """One step entry point as the DAG runs it: `python -m spark_jobs.<step>` on DuckDB, spark-submit
    --master local[cores] on Spark. Returns wall time and peak RSS."""
    args = ["--engine", engine, *args]
    if engine == "duckdb":
        cmd = [PY, "-m", f"spark_jobs.{step}", *args, "--duckdb-threads", str(cores)]
    else:
        conf = {**SPARK_QUIET_CONF, **SPARK_SQL_CONF, "spark.sql.shuffle.partitions": str(4 * cores)}
        confs = [a for k, v in conf.items() for a in ("--conf", f"{k}={v}")]
        cmd = [SPARK_SUBMIT, "--master", f"local[{cores}]", "--driver-memory", "6g", *confs,
               str(PROJECT_ROOT / "spark_jobs" / f"{step}.py"), *args]
    return measured(cmd, env={"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": PY}, log=log)


def run_ingest(engine: str, delivery: Path, out: Path, vault: Path, key: Path, cores: int, argon2: list[str],
               log: Path, release: str) -> tuple[dict, dict]:
    args = ["--input", str(delivery), "--output", str(out / "ingest"), "--quarantine", str(out / "quarantine"),
            "--truth", str(out / "truth"), "--report", str(_report(out, "ingest")),
            "--release", release, "--run-id", f"bench-{engine}", "--vault", str(vault), "--key-file", str(key), *argon2]
    print(f"[{release}] ingest on {engine} ...", flush=True)
    m = run_step(engine, "ingest", args, cores, log)
    return json.loads(_report(out, "ingest").read_text()), m


def _report(out: Path, step: str) -> Path:
    """Where a step's report goes: the run directory's steps/, where the gates read them."""
    return out / "run" / "steps" / f"{step}.json"


def _written(*steps: str):
    """rows in of a step that reads what `steps` wrote."""
    return lambda reports: sum(reports[s]["totals"]["rows_written"] for s in steps)


#: The steps after ingest, in DAG order: (step module, report name, arguments from the run's lake,
#: rows the step reads, from the reports so far).
AFTER_INGEST = (
    ("clean", "clean_dcir", lambda o: ["--source", "dcir", "--input", str(o / "ingest"), "--output", str(o / "clean" / "dcir")],
     lambda r: r["clean_dcir"]["totals"]["rows_read"]),
    ("clean", "clean_pmsi", lambda o: ["--source", "pmsi", "--input", str(o / "ingest"), "--output", str(o / "clean" / "pmsi")],
     lambda r: r["clean_pmsi"]["totals"]["rows_read"]),
    ("quality", "gate_clean", lambda o: ["--stage", "clean", "--run-dir", str(o / "run"), "--ingest", str(o / "ingest"),
                                         "--quarantine", str(o / "quarantine"), "--clean", str(o / "clean")],
     _written("ingest", "clean_dcir", "clean_pmsi")),
    ("merge", "merge", lambda o: ["--input", str(o / "clean"), "--output", str(o / "merge")],
     lambda r: r["merge"]["totals"]["rows_read"]),
    ("model", "model", lambda o: ["--input", str(o / "merge"), "--ingest", str(o / "ingest"), "--clean", str(o / "clean"),
                                  "--output", str(o / "model")],
     lambda r: r["model"]["totals"]["rows_read"]),
    ("quality", "gate_model", lambda o: ["--stage", "model", "--run-dir", str(o / "run"), "--clean", str(o / "clean"),
                                         "--merge", str(o / "merge"), "--model", str(o / "model"),
                                         "--truth", str(o / "truth")],
     _written("model")),
    ("feasibility", "feasibility_report", lambda o: ["--model", str(o / "model"), "--run-dir", str(o / "run"),
                                                     "--output", str(o / "run" / "feasibility.html")],
     _written("model")),
)


def run_after_ingest(engine: str, out: Path, cores: int, logs: Path, release: str, delivery: Path) -> dict:
    """clean (DCIR, PMSI), the clean gate, merge, model, the model gate and the feasibility report on an
    ingest zone, each timed; rows in per step from the reports."""
    steps, reports = {}, {"ingest": json.loads(_report(out, "ingest").read_text())}
    for module, name, step_args, rows_in in AFTER_INGEST:
        print(f"[{release}] {name} on {engine} ...", flush=True)
        extra = ["--delivery", str(delivery)] if module == "quality" else []
        m = run_step(engine, module, [*step_args(out), *extra, "--report", str(_report(out, name)), "--release", release,
                                      "--run-id", f"bench-{engine}"], cores, logs / f"{release}-{name}-{engine}.log")
        reports[name] = json.loads(_report(out, name).read_text())
        m["rows_in"] = rows_in(reports)
        m["rows_per_s_per_core"] = round(m["rows_in"] / m["seconds"] / cores)
        if module == "quality":
            m["checks"] = reports[name]["totals"]
        if name == "model":  # the medico-economic tables' share of the model step, from its report
            m["medico_economic_seconds"] = reports[name]["medico_economic_seconds"]
            m["cost_rows"] = {t: reports[name]["tables"][t]["rows"] for t in COST_TABLES}
        steps[name] = m
    if engine == "duckdb":
        steps["cohort"] = run_cohort(out, release, cores, logs / f"{release}-cohort.log")
    return steps


def run_cohort(out: Path, release: str, cores: int, log: Path) -> dict:
    """Publish the run's model (untimed: pointer and catalog writes), then time the example study's
    cohort build over it as `make cohort` runs it (spark_jobs.cohort, DuckDB over the published model)."""
    from spark_jobs.publish import publish

    publish(out, region="bench", release=release, run_id="bench-duckdb", run_dir=out / "run", model_zone=out / "model")
    study = PROJECT_ROOT / "config" / "studies" / "t2d_treated.yaml"
    print(f"[{release}] cohort {study.stem} ...", flush=True)
    m = measured([PY, "-m", "spark_jobs.cohort", "--lake", str(out), "--region", "bench", "--release", release,
                  "--study", str(study), "--duckdb-threads", str(cores)], log=log)
    built = json.loads((out / "cohorts" / study.stem / f"release={release}" / "latest.json").read_text())
    report = json.loads((Path(built["location"]) / "cohort.json").read_text())
    model_rows = sum(json.loads(_report(out, "model").read_text())["tables"][t]["rows"] for t in COHORT_TABLES)
    m.update(rows_in=model_rows, rows_per_s_per_core=round(model_rows / m["seconds"] / cores),
             patients=report["totals"]["patients"], candidates=report["totals"]["candidates"])
    return m


def bench_hashing(n: int, years: str, work: Path, cores: int, engines: list[str]) -> dict:
    """New identifiers per second per core with the production argon2 parameters (cold vault)."""
    delivery = work / f"delivery-hash-n{n}"
    shutil.rmtree(delivery, ignore_errors=True)
    subprocess.run([PY, "-m", "snds_synth", "--n", str(n), "--seed", "2", "--years", years, "--out", str(delivery),
                    "--quiet"], check=True, cwd=PROJECT_ROOT, capture_output=True)
    result = {"beneficiaries": n, "argon2": {"time_cost": 2, "memory_cost_kib": 19456, "parallelism": 1}, "engines": {}}
    for engine in engines:
        secure = work / f"secure-hash-{engine}"
        shutil.rmtree(secure, ignore_errors=True)
        key = LocalKeyFile.create(secure / "region.key").path
        out = work / f"lake-hash-{engine}"
        report, m = run_ingest(engine, delivery, out, secure / "vault", key, cores, [],
                               work / "logs" / f"hash-{engine}.log", f"hash-{n}")
        ps = report["pseudonymisation"]
        result["engines"][engine] = {
            "identifiers_hashed": ps["hashed"], "hash_seconds": ps["hash_seconds"], "ingest_seconds": m["seconds"],
            "identifiers_per_s_per_core": round(ps["hashed"] / ps["hash_seconds"] / cores, 1),
        }
        print(f"[hash] {engine}: {ps['hashed']:,} identifiers hashed in {ps['hash_seconds']} s", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(secure, ignore_errors=True)
    shutil.rmtree(delivery, ignore_errors=True)
    return result


def print_table(results: list[dict], cores: int) -> None:
    print()
    print(f"{'size':>8} {'rows':>11} {'generator':>10} {'I/O floor':>10} {'engine':>7} {'ingest':>9} "
          f"{'rows/s/core':>12} {'x floor':>8} {'peak RSS':>9}")
    for r in results:
        for engine, m in r["engines"].items():
            print(f"{r['beneficiaries']:>8,} {r['input_rows']:>11,} {r['generator']['seconds']:>9.1f}s "
                  f"{r['io_floor']['seconds']:>9.1f}s {engine:>7} {m['seconds']:>8.1f}s "
                  f"{m['rows_per_s_per_core']:>12,} {m['ratio_to_io_floor']:>8.2f} {m['peak_rss_mb']:>7.0f}MB")
    print(f"({cores} cores; rows/s per core = input rows / ingest seconds / cores)")
    print()
    print(f"{'size':>8} {'engine':>7} {'step':>18} {'seconds':>8} {'rows in':>11} {'rows/s/core':>12} {'peak RSS':>9}")
    for r in results:
        for engine, m in r["engines"].items():
            if "steps" not in m:
                continue
            for name, step in m["steps"].items():
                print(f"{r['beneficiaries']:>8,} {engine:>7} {name:>18} {step['seconds']:>7.1f}s {step['rows_in']:>11,} "
                      f"{step['rows_per_s_per_core']:>12,} {step['peak_rss_mb']:>7.0f}MB"
                      + (f"  (medico-economic tables: {step['medico_economic_seconds']:.1f} s, "
                         f"{sum(step['cost_rows'].values()):,} rows)" if name == "model" else "")
                      + (f"  ({step['patients']:,} of {step['candidates']:,} candidates)" if name == "cohort" else ""))
            pl = m["pipeline"]  # the cohort is built after publication: not a pipeline step
            print(f"{r['beneficiaries']:>8,} {engine:>7} {'pipeline':>18} {pl['seconds']:>7.1f}s {r['input_rows']:>11,} "
                  f"{pl['rows_per_s_per_core']:>12,} {pl['peak_rss_mb']:>7.0f}MB  = {pl['ratio_to_io_floor']:.2f} x I/O floor")
    print("(pipeline = ingest with a warm vault + clean_dcir + clean_pmsi + gate_clean + merge + model + gate_model + "
          "feasibility_report, each its own process; "
          "its rows/s per core counts the delivery's input rows)")


def print_hashing(h: dict, cores: int) -> None:
    print()
    print(f"argon2id t=2, 19 MiB, cold vault, {h['beneficiaries']:,} beneficiaries:")
    for engine, m in h["engines"].items():
        print(f"  {engine:>7}: {m['identifiers_hashed']:,} new identifiers hashed in {m['hash_seconds']:.1f} s "
              f"= {m['identifiers_per_s_per_core']} identifiers/s/core (whole ingest {m['ingest_seconds']:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,50000")
    p.add_argument("--years", default="2019-2021")
    p.add_argument("--engines", default="duckdb,spark")
    p.add_argument("--hash-size", type=int, default=2000, help="beneficiaries of the hashing benchmark (0: skip)")
    p.add_argument("--work", default=str(PROJECT_ROOT / "var" / "bench"))
    p.add_argument("--out", default=str(PROJECT_ROOT / "var" / "bench" / "results.json"))
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = [bench_size(int(n), args.years, work, cores, args.engines.split(",")) for n in args.sizes.split(",")]
    hashing = bench_hashing(args.hash_size, args.years, work, cores, args.engines.split(",")) if args.hash_size else None
    payload = {
        "machine": {"cores": cores, "platform": platform.platform(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
        "hashing": hashing,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print_table(results, cores)
    if hashing:
        print_hashing(hashing, cores)
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
