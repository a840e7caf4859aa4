"""Archive speed: the established shell pipeline and a raw pipeline (the floor: parallel GETs,
the same compressor, a parallel multipart upload; no checks, no Prefect; bench.raw_pipeline)
against archive_plates, on the same plate.

    python -m bench.archive_bench [--mib 434] [--runs 3] [--modes staged,streaming]
        [--parallel 1,2,4] [--baseline ../shared/bench/baseline_archive.sh]
        [--small-objects 20000 --raw-get-threads 160]

Seeds one synthetic plate of about ``--mib`` MiB into a loopback endpoint running in its own
process, then runs the baseline and archive_plates alternately ``--runs`` times each, and
prints medians, the ratio, peak RSS (process tree) and peak scratch bytes. ``--small-objects
N`` adds N objects of 16 KiB (synthetic image data) to the plate's images; each tool's GETs
per second from its first to its last, as a share of the model's read ceiling, says whether
requests or compression bound it (the raw pipeline's ``tar_gzip`` stage is the compressor
alone). ``--raw-get-threads`` tunes the raw pipeline's GETs in flight to the model (about
ceiling × latency). ``--parallel`` adds a curve of several plates archived with
max_parallel_plates = 1, 2, 4. Each archive_plates call runs in a fresh process with the
deployments' environment, against a Prefect server in a process of its own (the production
shape: a worker starts one process per flow run); its wall time is the call's, and peak RSS
is that process's whole life, imports included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import yaml

from bench.common import (
    add_model_arguments,
    admitted,
    bulk_put,
    ceiling,
    empty_prefix,
    endpoint_process,
    median,
    metered,
    model_of,
    prefect_server_process,
    save,
    span,
)

PROJECT, BATCH = "bench_project", "bench_batch"
LIVE, COLD = "bench-live", "bench-cold"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = ROOT.parent / "shared" / "bench" / "baseline_archive.sh"
#: What prefect.yaml gives every flow run's process.
DEPLOYMENT_ENV = yaml.safe_load((ROOT / "prefect.yaml").read_text())["definitions"]["work_pool"][
    "job_variables"
]["env"]
MIB = 1024 * 1024


def tree_rss(pid: int, descendants: bool = True) -> int:
    """Resident bytes of a process and (by default) all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            continue
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        if descendants:
            stack.extend(children.get(p, []))
    return total


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


class Sampler:
    """Peak RSS of a process tree and peak bytes under a folder while a run goes on."""

    def __init__(
        self, pid: Callable[[], int | None], folder: Path, descendants: bool = True
    ) -> None:
        self.pid, self.folder, self.descendants = pid, folder, descendants
        self.rss = self.scratch = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pid = self.pid()
            if pid:
                self.rss = max(self.rss, tree_rss(pid, self.descendants))
            self.scratch = max(self.scratch, dir_bytes(self.folder))
            self._stop.wait(0.1)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def seed_plate(url: str, plates: list[tuple[str, str]], mib: float) -> int:
    """Seed plates in a child process (its memory is not the benchmark's)."""
    code = (
        "import sys, boto3; from loopback.seed import PlateShape, seed_plates; "
        f"c = boto3.client('s3'); n, b = seed_plates(c, {LIVE!r}, {PROJECT!r}, {BATCH!r}, "
        f"{plates!r}, PlateShape.of_size({mib})); print(b)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout
    return int(out.strip().splitlines()[-1])


def empty_cold(s3) -> None:
    empty_prefix(s3, COLD)
    empty_prefix(s3, LIVE, f"projects/{PROJECT}/workspace/backup/")


def run_baseline(script: Path, url: str, plate: tuple[str, str], scratch: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    proc_holder: dict[str, subprocess.Popen] = {}
    with Sampler(lambda: proc_holder["p"].pid if "p" in proc_holder else None, scratch) as sampler:
        t = time.monotonic()
        proc_holder["p"] = subprocess.Popen(
            ["bash", str(script), url, LIVE, COLD, PROJECT, BATCH, *plate, str(scratch)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        if proc_holder["p"].wait() != 0:
            raise RuntimeError("baseline failed")
        seconds = time.monotonic() - t
    return {"seconds": seconds, "rss": sampler.rss, "scratch": sampler.scratch}


def run_coldflow(csv: Path, scratch: Path, streaming: bool, parallel: int = 1) -> dict:
    """archive_plates in a fresh process with the deployments' environment (prefect.yaml),
    as a worker runs it; the endpoint and Prefect's server are processes of their own."""
    env = dict(os.environ, **DEPLOYMENT_ENV)
    args = [sys.executable, "-m", "bench.archive_run", str(csv), str(scratch)]
    args += ["--parallel", str(parallel)] + (["--streaming"] if streaming else [])
    holder: dict[str, subprocess.Popen] = {}
    with Sampler(lambda: holder["p"].pid if "p" in holder else None, scratch) as sampler:
        holder["p"] = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        out, _ = holder["p"].communicate()
    if holder["p"].returncode != 0:
        raise RuntimeError(f"archive_plates failed ({holder['p'].returncode})")
    row = json.loads(out.strip().splitlines()[-1])
    assert all(s == "archived" for s in row["statuses"]), row
    print(f"    archive_plates steps (seconds, summed over bundles): {row['steps']}", flush=True)
    return {"seconds": row["seconds"], "rss": sampler.rss, "scratch": sampler.scratch}


def run_raw(scratch: Path, get_threads: int = 16) -> dict:
    """The raw pipeline (bench.raw_pipeline) in a fresh process: the floor to compare with."""
    args = [sys.executable, "-m", "bench.raw_pipeline", LIVE, f"projects/{PROJECT}/", COLD]
    args += ["raw/plate.tar.gz", "--get-threads", str(get_threads)]
    holder: dict[str, subprocess.Popen] = {}
    with Sampler(lambda: holder["p"].pid if "p" in holder else None, scratch) as sampler:
        holder["p"] = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        out, _ = holder["p"].communicate()
    if holder["p"].returncode != 0:
        raise RuntimeError(f"raw pipeline failed ({holder['p'].returncode})")
    row = json.loads(out.strip().splitlines()[-1])
    print(f"    raw stages: {row['stages']}, tarball {row['tarball_mib']} MiB", flush=True)
    return {"seconds": row["seconds"], "rss": sampler.rss, "scratch": sampler.scratch}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=float, default=434)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", default="staged,streaming")
    ap.add_argument("--parallel", default="1,2,4", help='several plates in parallel; "" skips')
    ap.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    ap.add_argument(
        "--no-baseline", action="store_true", help="skip the shell baseline (hours on 20,000 tiles)"
    )
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "cf-bench")
    ap.add_argument("--small-objects", type=int, default=0)
    ap.add_argument("--raw-get-threads", type=int, default=16)
    add_model_arguments(ap, "read")
    args = ap.parse_args(argv)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    modes = [m for m in args.modes.split(",") if m]
    # no space in the name: the baseline's awk parsing cuts keys at the first space
    plate = ("BENCH0001", "BENCH0001__2026-11-21T00_00_00-Measurement1")
    report: dict = {"plate_mib": args.mib, "runs": args.runs, "results": {}}
    with (
        tempfile.TemporaryDirectory() as tmp,
        endpoint_process(**model_of(args)) as url,
        prefect_server_process(Path(tmp) / "prefect"),
    ):
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=COLD)
        nbytes = seed_plate(url, [plate], args.mib)
        if args.small_objects:
            tiles = f"projects/{PROJECT}/{BATCH}/images/{plate[1]}/Images/tiles/t"
            bulk_put(url, LIVE, tiles, args.small_objects, "STANDARD", size=16 * 1024)
            nbytes += args.small_objects * 16 * 1024
        report["plate_bytes"] = nbytes
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=LIVE)
        objects = sum(len(page.get("Contents", [])) for page in pages)
        report["plate_objects"] = objects
        csv = Path(tmp) / "plates.csv"
        csv.write_text(f"plate_id,plate_id_full\n{plate[0]},{plate[1]}\n")
        from prefect import flow

        flow(lambda: None, name="warm-up")()  # the server's first flow run, not timed
        runs: dict[str, list[dict]] = {"baseline": [], "raw": [], **{m: [] for m in modes}}
        for i in range(args.runs):
            for name in runs:
                scratch = args.scratch / f"{name}-{i}"
                scratch.mkdir(parents=True, exist_ok=True)
                empty_cold(s3)
                if name == "baseline" and (
                    args.no_baseline or not args.baseline.exists() or not shutil.which("aws")
                ):
                    continue
                with metered(url) as cost:
                    if name == "baseline":
                        row = run_baseline(args.baseline, url, plate, scratch)
                    elif name == "raw":
                        row = run_raw(scratch, args.raw_get_threads)
                    else:
                        row = run_coldflow(csv, scratch, streaming=name == "streaming")
                gets = admitted(cost["seen"], "GetObject") / span(url, "GetObject")
                row |= {
                    "gets_per_s": gets,
                    "client_cpu_ms_per_object": cost["client_cpu_s"] * 1000 / objects,
                    "requests_per_object": cost["requests"] / objects,
                    "throttled": cost["throttled"],
                }
                shutil.rmtree(scratch, ignore_errors=True)
                runs[name].append(row)
                print(
                    f"run {i + 1} {name:<10} {row['seconds']:7.2f} s  "
                    f"rss {row['rss'] / MIB:7.1f} MiB  scratch {row['scratch'] / MIB:7.1f} MiB",
                    flush=True,
                )
        for name, rows in runs.items():
            if rows:
                report["results"][name] = {
                    "median_seconds": round(median([r["seconds"] for r in rows]), 2),
                    "peak_rss_mib": round(max(r["rss"] for r in rows) / MIB, 1),
                    "peak_scratch_mib": round(max(r["scratch"] for r in rows) / MIB, 1),
                    "runs": [round(r["seconds"], 2) for r in rows],
                    "requests_per_object": round(
                        median([r["requests_per_object"] for r in rows]), 3
                    ),
                    "throttled": max(r["throttled"] for r in rows),
                    "gets_per_s": round(median([r["gets_per_s"] for r in rows]), 1),
                    "client_cpu_ms_per_object": round(
                        median([r["client_cpu_ms_per_object"] for r in rows]), 2
                    ),
                }
                if not args.no_model:  # the same run on S3: latencies and transfers / D
                    res = report["results"][name]
                    res["s3_equivalent_seconds"] = round(res["median_seconds"] / args.dilation, 2)
                    res["gets_share_of_read_ceiling"] = round(
                        res["gets_per_s"] / ceiling("read", args.dilation), 3
                    )
        base = report["results"].get("baseline", {}).get("median_seconds")
        raw = report["results"].get("raw", {}).get("median_seconds")
        for name, res in report["results"].items():
            ratio = f"{base / res['median_seconds']:.2f}x" if base else "n/a"
            res["speedup_vs_baseline"] = ratio
            if raw:
                res["time_vs_raw_pipeline"] = round(res["median_seconds"] / raw, 2)
            print(
                f"{name:<10} median {res['median_seconds']:7.2f} s  {ratio:>7}  "
                f"{res.get('time_vs_raw_pipeline', float('nan')):.2f}x raw  "
                f"peak RSS {res['peak_rss_mib']:7.1f} MiB  "
                f"peak scratch {res['peak_scratch_mib']:7.1f} MiB  "
                f"{res['requests_per_object']:.3f} requests/object  "
                f"throttled {res['throttled']}  "
                f"client CPU {res['client_cpu_ms_per_object']:.2f} ms/object  "
                f"GETs {res['gets_per_s']:.1f}/s"
                + (
                    f" ({res['gets_share_of_read_ceiling']:.2f} of the read ceiling)  "
                    if "gets_share_of_read_ceiling" in res
                    else "  "
                )
                + f"({nbytes / MIB:.0f} MiB plate, {objects} objects)"
            )
        if args.parallel:
            report["parallel"] = parallel_curve(
                s3, url, args, [int(x) for x in args.parallel.split(",")], tmp
            )
    print(f"saved {save('archive', report)}")
    return 0


def parallel_curve(s3, url: str, args, levels: list[int], tmp: str) -> dict:
    """Four plates archived with max_parallel_plates at each level: wall time and MiB/s."""
    plates = [(f"PAR{i:04d}", f"PAR{i:04d}_full") for i in range(4)]
    nbytes = seed_plate(url, plates, args.mib / 4)
    csv = Path(tmp) / "par.csv"
    csv.write_text("plate_id,plate_id_full\n" + "".join(f"{a},{b}\n" for a, b in plates))
    curve = {}
    for level in levels:
        empty_cold(s3)
        scratch = args.scratch / f"par-{level}"
        row = run_coldflow(csv, scratch, streaming=False, parallel=level)
        shutil.rmtree(scratch, ignore_errors=True)
        curve[level] = {
            "seconds": round(row["seconds"], 2),
            "mib_per_s": round(nbytes / MIB / row["seconds"], 1),
        }
        print(
            f"max_parallel_plates={level}: {row['seconds']:.2f} s "
            f"({nbytes / MIB / row['seconds']:.1f} MiB/s, 4 plates of {args.mib / 4:.0f} MiB)",
            flush=True,
        )
    return curve


if __name__ == "__main__":
    raise SystemExit(main())
