"""Run unchanged Ray Core programs on plait, and optionally compare them with real Ray.

Usage:  python examples/run_as_ray.py PROGRAM.py [PROGRAM.py ...] [--compare] [--timeout S]

Each program runs in a fresh interpreter whose ``import ray`` resolves to plait: a
temporary directory first on PYTHONPATH holds a two-line ``ray`` module that puts plait
(and ``plait.exceptions`` as ``ray.exceptions``) in ``sys.modules``. The shim adds no
behaviour; whatever a program needs beyond those names must exist in plait itself, so a
missing API fails here exactly as it would for a user. With ``--compare`` the same program
also runs under the real Ray (without the shim) and the two runs are compared.

Outputs are compared after a small normalisation, because some of what programs print
differs run to run on any system: numbers with three or more decimals (timings, estimates)
become ``<float>``, ``0x...`` addresses become ``0x<addr>``, ``ObjectRef(...)`` becomes
``ObjectRef(<id>)``, ``pid=``/``ip=`` values are blanked, and Ray's additions to lines
printed by workers (the ``(task pid=...)`` prefix, colour codes, ``[repeated Nx across
cluster]`` notes) are removed, as are the ``(raylet) ...`` lines in which Ray's log monitor
reports worker deaths and retries. Both runs get PYTHONUNBUFFERED=1, as on a terminal, so that
lines printed by workers are not lost in a pipe buffer when a worker exits.
"""

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SHIM = '''"""`import ray` resolves to plait (written by examples/run_as_ray.py)."""
import sys, plait, plait.exceptions
sys.modules["ray"], sys.modules["ray.exceptions"] = plait, plait.exceptions
'''

NORMALISE = [  # (pattern, replacement), applied in order to every line
    (re.compile(r"\x1b\[[0-9;]*m"), ""),                       # terminal colours
    (re.compile(r"^\(\S+ pid=\d+(?:, ip=[\d.]+)?\) "), ""),   # Ray's worker-line prefix
    (re.compile(r"\s*\[repeated \d+x across cluster\]"), ""),  # Ray's dedup note
    (re.compile(r"ObjectRef\([^)]*\)"), "ObjectRef(<id>)"),
    (re.compile(r"0x[0-9a-fA-F]+"), "0x<addr>"),
    (re.compile(r"\bpid=\d+"), "pid=<pid>"),
    (re.compile(r"\bip=[\d.]+"), "ip=<ip>"),
    (re.compile(r"-?\d+\.\d{3,}(?:e-?\d+)?"), "<float>"),
]
DROP = re.compile(r"^\(raylet\) ")  # Ray's own log lines (worker deaths, retries)


@dataclass
class Run:
    """One program's run: what it printed, how it ended, how long it took."""

    stdout: str
    stderr: str
    code: int
    seconds: float


def write_shim(directory: Path) -> None:
    """Put the ``ray`` alias module where the child's PYTHONPATH finds it first."""
    (directory / "ray.py").write_text(SHIM)


def run(program: Path, shim_dir: Path | None, timeout: float) -> Run:
    """Run one program in a fresh interpreter, from its own directory, as a user would."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if shim_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim_dir),
                                                          env.get("PYTHONPATH")]))
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, program.name], cwd=program.parent, env=env,
                              capture_output=True, text=True, timeout=timeout)
        out, err, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        out, err, code = _text(expired.stdout), _text(expired.stderr) + "\nTIMEOUT", -9
    return Run(out, err, code, time.perf_counter() - start)


def _text(data: bytes | str | None) -> str:
    """TimeoutExpired carries bytes even in text mode; decode what was captured."""
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def normalise(stdout: str) -> list[str]:
    """The lines a run printed, with run-to-run noise (see the module docstring) removed."""
    lines = []
    for line in stdout.splitlines():
        for pattern, replacement in NORMALISE:
            line = pattern.sub(replacement, line)
        if not DROP.match(line):
            lines.append(line)
    return lines


def verdict(plait_run: Run, ray_run: Run) -> tuple[str, str]:
    """'yes', 'order' (same lines, other order) or 'no', with a diff when not 'yes'."""
    mine, theirs = normalise(plait_run.stdout), normalise(ray_run.stdout)
    if plait_run.code != ray_run.code:
        exits = f"exit code: plait {plait_run.code}, ray {ray_run.code}\n"
    else:
        exits = ""
    if mine == theirs and not exits:
        return "yes", ""
    diff = "\n".join(difflib.unified_diff(theirs, mine, "ray", "plait", lineterm=""))
    same_lines = sorted(mine) == sorted(theirs) and not exits
    return ("order" if same_lines else "no"), exits + diff


def tail(text: str, lines: int = 12) -> str:
    """The end of stderr: where a Python traceback says what went wrong."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def report(program: Path, plait_run: Run, ray_run: Run | None) -> str:
    """One program's result line, then (indented) whatever explains a difference."""
    line = f"{program.name:45} plait {plait_run.seconds:7.2f}s exit {plait_run.code:3}"
    details = []
    if ray_run is not None:
        same, diff = verdict(plait_run, ray_run)
        ratio = plait_run.seconds / ray_run.seconds
        line += f"  ray {ray_run.seconds:7.2f}s  ratio {ratio:5.2f}  same output: {same}"
        if diff:
            details.append(diff)
    if plait_run.code != 0:
        details.append("plait stderr:\n" + tail(plait_run.stderr))
    if ray_run is not None and ray_run.code != 0:
        details.append("ray stderr:\n" + tail(ray_run.stderr))
    return "\n".join([line] + ["    " + d.replace("\n", "\n    ") for d in details])


def main() -> int:
    """Run every program given, one at a time (each starts a cluster), and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("programs", nargs="+", type=Path)
    parser.add_argument("--compare", action="store_true", help="also run under real Ray")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    args = parser.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory(prefix="run-as-ray-") as shim_dir:
        write_shim(Path(shim_dir))
        for program in (p.resolve() for p in args.programs):
            plait_run = run(program, Path(shim_dir), args.timeout)
            ray_run = run(program, None, args.timeout) if args.compare else None
            print(report(program, plait_run, ray_run), flush=True)
            if ray_run is None:
                print(plait_run.stdout, end="")
            failures += plait_run.code != 0 or (
                ray_run is not None and verdict(plait_run, ray_run)[0] != "yes")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
