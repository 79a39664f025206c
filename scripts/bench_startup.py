"""Start-up time of attnlab's commands against `python -c "import lightning.pytorch"`.

Every console script of the attnlab distribution (attnlab-train, -eval, -generate, ...) is run
with `--help`, attnlab-train with `--cfg job` and with a refused value (`model.pos=rotary`,
checked before torch is imported: issue 31), each in a fresh interpreter, launch to exit;
the reference is a fresh interpreter that imports Lightning. The commands run round-robin, one
of each per round, so a load that changes during the run (other jobs on the machine) reaches
them alike; the median of `--repeats` rounds is reported, with its ratio to the reference.
Target (issue 22): `attnlab-train --help` and `--cfg job` at most a third of the reference.

    python scripts/bench_startup.py                  # 5 rounds
    python scripts/bench_startup.py --repeats 11 --json startup.json
    python scripts/bench_startup.py --smoke          # 1 round (tests/test_scripts.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import distribution
from pathlib import Path

REFERENCE = "import lightning.pytorch"
TARGET = 1 / 3  # of the reference, for attnlab-train --help and --cfg job
TARGETED = ("attnlab-train --help", "attnlab-train --cfg job")
REFUSED = "model.pos=rotary"  # a refusal that needs no torch: one line, exit 2


def commands() -> dict[str, list[str]]:
    """Label -> argv: the reference, then every console script of attnlab (`--help`), then
    attnlab-train --cfg job. Run through the interpreter as the console script's wrapper would."""
    scripts = sorted(
        (ep for ep in distribution("attnlab").entry_points if ep.group == "console_scripts"),
        key=lambda ep: ep.name,
    )
    out = {REFERENCE: [sys.executable, "-c", REFERENCE]}
    for ep in scripts:
        module, _, function = ep.value.partition(":")
        wrapper = (
            f"import sys; sys.argv[0] = {ep.name!r}; from {module} import {function} as f; f()"
        )
        out[f"{ep.name} --help"] = [sys.executable, "-c", wrapper, "--help"]
        if ep.name == "attnlab-train":
            out["attnlab-train --cfg job"] = [sys.executable, "-c", wrapper, "--cfg", "job"]
            out[f"attnlab-train {REFUSED} (exit 2)"] = [sys.executable, "-c", wrapper, REFUSED]
    return out


def time_once(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode not in (0, 2) or (REFUSED in argv) != (done.returncode == 2):
        raise RuntimeError(f"{argv[-1]}: exit {done.returncode}: {done.stderr.decode()[-500:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds (median reported)")
    parser.add_argument("--smoke", action="store_true", help="one round: checks that all run")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    repeats = 1 if args.smoke else args.repeats
    argvs = commands()
    times: dict[str, list[float]] = {label: [] for label in argvs}
    with tempfile.TemporaryDirectory() as tmp:  # Hydra's --help writes nothing, but be safe
        for _ in range(repeats):
            for label, argv in argvs.items():
                times[label].append(time_once(argv, Path(tmp)))
    medians = {label: statistics.median(t) for label, t in times.items()}
    reference = medians[REFERENCE]
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; median of {repeats} round(s)"
    )
    print("| command | median s | of `import lightning.pytorch` |")
    print("| --- | --- | --- |")
    for label, median in medians.items():
        mark = " (target ≤ 0.33)" if label in TARGETED else ""
        print(f"| `{label}` | {median:.2f} | {median / reference:.2f}{mark} |")
    met = all(medians[label] <= TARGET * reference for label in TARGETED)
    print(f"target met: {'yes' if met else 'no'}")
    if args.json:
        result = {
            "repeats": repeats,
            "times_s": times,
            "median_s": medians,
            "ratio": {label: m / reference for label, m in medians.items()},
            "target_met": met,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
