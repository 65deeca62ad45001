#!/usr/bin/env python
"""Execute the book's chapters with papermill, in the order of ``_toc.yml``.

``_toc.yml`` is the single list of chapters: a notebook it does not list is
never run, and a file it lists that does not exist is an error.  Executed
copies go to ``BUILD/executed/<same path>.ipynb`` (never over the sources) and
are what ``scripts/build_html.py`` renders.

    python scripts/run_chapters.py --profile smoke              # all chapters, CI size
    python scripts/run_chapters.py --profile book --only 06     # one chapter
    python scripts/run_chapters.py --profile gpu-dry            # the gpu code path, a few steps (CI)
    python scripts/run_chapters.py --only 01_gan_game -p SEED 3  # extra parameters
    python scripts/run_chapters.py --list                       # chapters + parameters

Why not plain ``papermill``: papermill only *warns* about a parameter the
notebook does not define and then silently runs the full-size defaults, so a
misspelt ``-p PROFLE smoke`` would cost an hour.  This runner refuses it,
stops on the first failing cell (printing that cell and its traceback), hides
papermill's injected-parameters cell (tag ``remove-cell``) when it only
repeats the defaults, stamps each executed copy with its profile, run time and
source hash (``metadata.ganbook``; build_html.py refuses stale or failed
copies) and records the wall times in ``BUILD/executed/timings.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import difflib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILES = ("smoke", "book", "gpu", "gpu-dry")
KERNEL_NAME = "ganbook"
# gpu-dry runs the gpu-size networks on the CPU: ch11's training cell (its width-128 PixelCNN priors,
# 2 s a step on one CPU thread) took 654 s in CI, so 900 s left too little margin for a slower machine
DEFAULT_CELL_TIMEOUT = {"smoke": 300, "book": 1200, "gpu": None, "gpu-dry": 1800}
# glibc malloc settings the kernels inherit (read at process start): keep freed memory in the process
# instead of handing it back to the OS (munmap / trim) and faulting it in again on the next step. On a
# VM that reports freed pages to its host, that round trip was a third of a chapter's time: ch02 took
# 42 s with 17 s of system time, and 26 s with 0.9 s with these set. Memory then stays at its peak.
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": "4000000000", "MALLOC_TRIM_THRESHOLD_": "4000000000"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _ganlib_cpus():
    """``ganlib/_cpus.py`` loaded by its path: ganlib.book's rule for the cores a chapter may use,
    without importing ganlib (and torch) into this script."""
    import importlib.util

    here = Path(__file__).resolve().parents[1]  # this checkout's ganlib, whichever book REPO names
    spec = importlib.util.spec_from_file_location("_ganlib_cpus", here / "ganlib" / "_cpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ToolingError(Exception):
    """A problem the user can fix; main() prints it without a Python traceback."""


class ParameterError(ToolingError, ValueError):
    """A parameter the chapter's ``parameters`` cell does not define."""


# --------------------------------------------------------------------------- toc
@dataclass(frozen=True)
class TocEntry:
    """One file listed in ``_toc.yml``: ``name`` as written there (no suffix)."""

    name: str
    path: Path | None  # the existing file (.ipynb or .md); None if missing
    part: str | None

    @property
    def is_notebook(self) -> bool:
        return self.path is not None and self.path.suffix == ".ipynb"

    @property
    def html(self) -> str:
        """Path of the page in the built HTML, relative to the html root."""
        return self.name + ".html"


def _resolve(root: Path, name: str) -> Path | None:
    p = root / name
    if p.suffix in (".ipynb", ".md"):
        return p if p.is_file() else None
    for suffix in (".ipynb", ".md"):
        if p.with_suffix(suffix).is_file():
            return p.with_suffix(suffix)
    return None


def read_toc(root: Path = REPO) -> list[TocEntry]:
    """Every file of ``root/_toc.yml`` in reading order, root page first."""
    import yaml

    toc_path = root / "_toc.yml"
    if not toc_path.is_file():
        raise ToolingError(f"{toc_path} not found: the book's chapters are listed there")
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    if not isinstance(toc, dict) or "root" not in toc:
        raise ToolingError(f"{toc_path}: expected a jb-book toc with a 'root:' entry")
    entries: list[TocEntry] = []

    def strip(name: str) -> str:
        return re.sub(r"\.(ipynb|md)$", "", str(name))

    def walk(items, part):
        for item in items or []:
            if "file" in item:
                name = strip(item["file"])
                entries.append(TocEntry(name, _resolve(root, name), part))
            walk(item.get("sections"), part)

    entries.append(TocEntry(strip(toc["root"]), _resolve(root, strip(toc["root"])), None))
    for part in toc.get("parts", []):
        walk(part.get("chapters"), part.get("caption"))
    walk(toc.get("chapters"), None)
    walk(toc.get("sections"), None)
    return entries


def toc_chapters(root: Path = REPO, only: list[str] | None = None) -> list[TocEntry]:
    """The toc's notebooks (what the runner executes), narrowed by ``only``.

    A listed file that does not exist is an error once it is selected (so
    ``--only 01`` works while other chapters are still being written).
    """
    candidates = [e for e in read_toc(root) if e.is_notebook or e.path is None]
    picked = select(candidates, only)
    missing = [e.name for e in picked if e.path is None]
    if missing:
        raise ToolingError(
            "listed in _toc.yml but neither .ipynb nor .md exists: " + ", ".join(missing)
            + "\n  create the file, remove it from _toc.yml, or pick chapters with --only"
        )
    return picked


def select(chapters: list[TocEntry], only: list[str] | None) -> list[TocEntry]:
    """Chapters matching ``--only`` (a path, a file stem or a stem prefix such as ``06``)."""
    if not only:
        return chapters
    picked: list[TocEntry] = []
    for wanted in only:
        key = re.sub(r"\.ipynb$", "", wanted.strip().rstrip("/"))
        hits = [
            c for c in chapters
            if key in (c.name, Path(c.name).name) or Path(c.name).name.startswith(key)
        ]
        if len(hits) != 1:
            names = ", ".join(Path(c.name).name for c in chapters)
            why = "matches no chapter" if not hits else "is ambiguous"
            raise ToolingError(f"--only {wanted!r} {why} of _toc.yml; chapters: {names}")
        if hits[0] not in picked:
            picked.append(hits[0])
    return [c for c in chapters if c in picked]  # toc order


# --------------------------------------------------------------------- parameters
def parse_value(text: str):
    """Type a ``-p NAME VALUE`` value the way the papermill CLI does."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def validate_parameters(notebook: Path, parameters: dict) -> dict:
    """Refuse any name the chapter's single ``parameters`` cell does not define.

    Returns papermill's description of the declared parameters.
    Raises ParameterError (a ValueError) naming the closest declared names.
    """
    import nbformat
    import papermill

    nb = nbformat.read(str(notebook), as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ParameterError(
            f"{notebook}: expected exactly one cell tagged 'parameters', found {len(tagged)}"
        )
    declared = papermill.inspect_notebook(str(notebook))
    unknown = [name for name in parameters if name not in declared]
    if unknown:
        lines = []
        for name in unknown:
            close = difflib.get_close_matches(name, list(declared), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"  {name!r}{hint}")
        raise ParameterError(
            f"{notebook.name}: its parameters cell does not define\n" + "\n".join(lines)
            + f"\n  declared parameters: {', '.join(declared) or '(none)'}"
        )
    return declared


# ------------------------------------------------------------------------- kernel
def kernel_for_this_interpreter(build_dir: Path) -> str:
    """Name of a kernelspec that runs ``sys.executable``.

    Uses the ``ganbook`` kernel `make venv` installs when it points at this
    interpreter; otherwise writes a private one under ``build_dir/kernels`` and
    puts it first on JUPYTER_PATH (nothing is installed anywhere else).
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        if os.path.abspath(spec.argv[0]) == os.path.abspath(sys.executable):
            return KERNEL_NAME
    except NoSuchKernel:
        pass
    kdir = build_dir / "kernels" / "kernels" / KERNEL_NAME
    kdir.mkdir(parents=True, exist_ok=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ganbook)",
        "language": "python",
    }, indent=1))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(build_dir / "kernels")] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    )
    return KERNEL_NAME


# ---------------------------------------------------------------------- execution
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inputs_sha256(source: Path, root: Path = REPO) -> str:
    """Hash of what a chapter's outputs depend on: its source, ganlib, the pins."""
    h = hashlib.sha256(source.read_bytes())
    files = sorted(p for p in (root / "ganlib").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts) if (root / "ganlib").is_dir() else []
    for p in files + [root / "requirements.txt"]:
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def fresh_stamp(out: Path, source: Path, parameters: dict) -> dict | None:
    """The run stamp of ``out`` if it is a successful run of the same inputs and parameters."""
    try:
        stamp = json.loads(out.read_text()).get("metadata", {}).get("ganbook", {})
    except (OSError, ValueError):
        return None
    fresh = (stamp.get("status") == "ok" and stamp.get("parameters") == parameters
             and stamp.get("inputs_sha256") == inputs_sha256(source))
    return stamp if fresh else None


def executed_path(build_dir: Path, entry: TocEntry) -> Path:
    return build_dir / "executed" / (entry.name + ".ipynb")


def hardware_summary() -> dict:
    info = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:  # without importing torch (seconds on a loaded machine)
        from importlib.metadata import version

        info["torch"] = version("torch")
    except Exception:
        info["torch"] = None
    info["gpu"] = None
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            info["gpu"] = ", ".join(out.stdout.split("\n")[:1]).strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def _same_as_defaults(parameters: dict, declared: dict) -> bool:
    import ast

    try:
        return all(ast.literal_eval(declared[k]["default"]) == v for k, v in parameters.items())
    except (KeyError, ValueError, SyntaxError):
        return False


def _finish(out: Path, source: Path, profile: str, parameters: dict, seconds: float) -> None:
    """Hide the injected cell, restore the source kernelspec, stamp the run.

    The injected-parameters cell gets ``remove-cell`` when it only repeats the
    defaults shown in the chapter's parameters cell (the ``book`` profile); when
    it changes them (smoke, gpu, ``-p``) it stays visible so that the page
    shows what actually ran.
    """
    import nbformat
    import papermill

    src = nbformat.read(str(source), as_version=4)
    nb = nbformat.read(str(out), as_version=4)
    hide = _same_as_defaults(parameters, papermill.inspect_notebook(str(source)))
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and hide and "remove-cell" not in tags:
            tags.append("remove-cell")
    if "kernelspec" in src.metadata:  # papermill writes the kernel it used; readers need python3
        nb.metadata["kernelspec"] = src.metadata["kernelspec"]
    nb.metadata["ganbook"] = {
        "profile": profile,
        "parameters": parameters,
        "wall_time_s": round(seconds, 2),
        "source_sha256": sha256(source),
        "inputs_sha256": inputs_sha256(source),
        "executed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "status": "ok",
    }
    nbformat.write(nb, str(out))


def run_one(entry: TocEntry, out: Path, parameters: dict, kernel: str,
            cell_timeout: int | None, log_output: bool) -> float:
    """Execute one chapter; returns wall seconds; raises ToolingError on failure."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.resolve() == entry.path.resolve():
        raise ToolingError(f"refusing to write the executed copy over the source {entry.path}")
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(entry.path), str(out), parameters=parameters, kernel_name=kernel,
            cwd=str(out.parent), progress_bar=False, log_output=log_output,
            execution_timeout=cell_timeout,
        )
    except PapermillExecutionError as err:
        raise ToolingError(
            f"{entry.name}: cell {err.cell_index} raised {err.ename}: {_ANSI.sub('', str(err.evalue))}\n"
            f"{'-' * 30} cell source {'-' * 30}\n{err.source}\n"
            f"{'-' * 30} traceback {'-' * 32}\n" + _ANSI.sub("", "\n".join(err.traceback))
            + f"\n(partial output kept in {out})"
        ) from None
    except Exception as err:  # timeouts, dead kernels, missing kernels
        raise ToolingError(f"{entry.name}: execution failed: {type(err).__name__}: {err}") from None
    return time.perf_counter() - t0


def _execute(entry: TocEntry, out: Path, profile: str, parameters: dict, kernel: str,
             cell_timeout: int | None, log_output: bool) -> tuple[float, ToolingError | None]:
    """Run and stamp one chapter; returns (wall seconds, the error or None). With ``--jobs`` it runs
    in a worker process, so it reports the error instead of raising it."""
    t0 = time.perf_counter()
    try:
        seconds = run_one(entry, out, parameters, kernel, cell_timeout, log_output)
        _finish(out, entry.path, profile, parameters, seconds)
        print(f"    {entry.name}: ok in {seconds:.1f} s -> {out}", flush=True)
        return seconds, None
    except ToolingError as err:
        print(f"    {entry.name}: FAILED after {time.perf_counter() - t0:.1f} s", flush=True)
        return time.perf_counter() - t0, err


def chapter_marks(entry: TocEntry) -> dict:
    """What a notebook's metadata tells the scheduler (``"ganlib": {...}``):

    - ``"cores": "all"``: the chapter spreads its independent runs over every core
      (``ganlib.book.map_processes``); with ``--jobs`` it runs alone, after the chapters that share
      the cores, so that each of its workers has a core of its own.
    - ``"book_seconds"``: about how long its ``book`` profile takes on one core (the 2-core EPYC of
      the course page); only a scheduling hint: chapters that share the cores start longest first,
      so that no long one starts last while the other cores idle.
    - ``"book_target_min"``: its ``book`` profile's run-time target, where it is not the usual 5
      minutes (the course page's timings table compares each chapter's time with it).
    """
    import nbformat

    return dict(nbformat.read(str(entry.path), as_version=4).metadata.get("ganlib", {}))


def longest_first(todo: list, marks: dict, timings: dict, profile: str) -> list:
    """``todo`` ([(i, entry, out)]) ordered by expected run time, longest first (LPT scheduling):
    the time this profile took in the build's last run where there is one, else the notebook's
    ``book_seconds`` hint for the ``book`` profile; chapters with neither keep their ``_toc.yml``
    order, after the others."""
    def expected(item):
        name = item[1].name
        last = timings["chapters"].get(name, {})
        if last.get("profile") == profile and last.get("status") == "ok":
            return float(last["wall_time_s"])
        hint = marks[name].get("book_seconds")
        return float(hint) if profile == "book" and hint is not None else -1.0

    return sorted(todo, key=expected, reverse=True)  # sorted is stable: ties keep the toc order


def _load_timings(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) and isinstance(data.get("chapters"), dict) else {"chapters": {}}
    except (OSError, ValueError):
        return {"chapters": {}}


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    head = ("chapter", "profile", "status", "wall time")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    fmt = "  ".join("{:<%d}" % w for w in widths[:3]) + "  {:>%d}" % widths[3]
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=PROFILES, default="book",
                    help="preset passed as PROFILE (default: book)")
    ap.add_argument("--only", action="append", metavar="CHAPTER",
                    help="run only this chapter (path, stem or prefix such as 06); repeatable")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                    metavar=("NAME", "VALUE"), help="extra parameter, typed like papermill -p")
    ap.add_argument("--build-dir", type=Path, default=REPO / "_build",
                    help="where executed/ goes (default: _build)")
    ap.add_argument("--cell-timeout", type=int, default=None,
                    help="seconds per cell (default: smoke 300, book 1200, gpu none, gpu-dry 1800)")
    ap.add_argument("--log-output", action="store_true", help="stream cell outputs to the log")
    ap.add_argument("--force", action="store_true",
                    help="rerun chapters whose executed copy is already fresh (same source, "
                         "ganlib, requirements.txt and parameters)")
    ap.add_argument("-j", "--jobs", type=int, default=1,
                    help="chapters to run at once, each in its own kernel (default 1); every chapter "
                         "pins torch to one CPU thread, so --jobs $(nproc) keeps every core busy")
    ap.add_argument("--list", action="store_true", help="list the chapters and their parameters")
    args = ap.parse_args(argv)

    try:
        chapters = toc_chapters(REPO, args.only)
        if args.list:
            import papermill

            for c in chapters:
                params = papermill.inspect_notebook(str(c.path))
                desc = ", ".join(f"{k}={v['default']}" for k, v in params.items())
                print(f"{c.name:32s} {desc}")
            return 0
        extra = {name: parse_value(value) for name, value in args.parameter}
        if "PROFILE" in extra:
            raise ToolingError("set the profile with --profile, not -p PROFILE")
        parameters = {"PROFILE": args.profile, **extra}
        build_dir = args.build_dir.resolve()
        if build_dir == REPO / "book" or REPO / "book" in build_dir.parents:
            raise ToolingError("--build-dir must not be inside book/ (executed copies never go next to sources)")
        for c in chapters:  # refuse bad names before spending minutes on earlier chapters
            validate_parameters(c.path, parameters)
        cpus = _ganlib_cpus()
        try:  # what ganlib.book.cpu_budget() gives a chapter that runs alone; a bad value stops here
            every_core = cpus.cpu_budget()
        except ValueError as err:
            raise ToolingError(str(err)) from None
        kernel = kernel_for_this_interpreter(build_dir)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        # the kernel inherits it: the live monitor draws one static figure and progress bars stay off,
        # since the executed copies become static pages
        os.environ.setdefault("GANLIB_STATIC", "1")
        for var, value in KEEP_FREED_MEMORY.items():  # a value the caller set wins, as for GANLIB_STATIC
            os.environ.setdefault(var, value)
    except ToolingError as err:
        print(f"run_chapters: error: {err}", file=sys.stderr)
        return 2

    cell_timeout = args.cell_timeout if args.cell_timeout is not None else DEFAULT_CELL_TIMEOUT[args.profile]
    timings_path = build_dir / "executed" / "timings.json"
    timings = _load_timings(timings_path)
    hardware = hardware_summary()
    rows, failed, total, started = [], None, 0.0, time.perf_counter()
    jobs = max(1, min(args.jobs, len(chapters)))
    if jobs > 1:  # the kernels inherit these: beside other chapters, BLAS and OpenMP get one thread each
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    cores_set = os.environ.get(cpus.CPUS_VARIABLE)  # a value the caller set wins
    print(f"Running {len(chapters)} chapter(s) with profile {args.profile!r}, kernel {kernel!r}, "
          f"parameters {parameters}" + (f", {jobs} at a time" if jobs > 1 else ""), flush=True)
    todo = []
    for i, c in enumerate(chapters, 1):
        out = executed_path(build_dir, c)
        stamp = None if args.force else fresh_stamp(out, c.path, parameters)
        if stamp:
            print(f"[{i}/{len(chapters)}] {c.name}: fresh (source, ganlib and pins unchanged since it ran), "
                  "skipped; --force reruns it", flush=True)
            previous = timings["chapters"].get(c.name, {})
            timings["chapters"][c.name] = {
                "profile": args.profile, "parameters": parameters, "status": "ok",
                "wall_time_s": stamp["wall_time_s"], "finished_at": stamp.get("executed_at"),
                "hardware": previous.get("hardware", hardware),
                "parallel_jobs": previous.get("parallel_jobs", 1), "cores": previous.get("cores", 1)}
            rows.append((c.name, args.profile, "fresh", f"{stamp['wall_time_s']:.1f} s"))
        else:
            todo.append((i, c, out))

    marks = {c.name: chapter_marks(c) for _, c, _ in todo}  # each notebook read once
    spreads = {name for name, m in marks.items() if m.get("cores") == "all"}
    alone = [t for t in todo if t[1].name in spreads] if jobs > 1 else []
    todo = [t for t in todo if t not in alone]
    if jobs > 1:
        todo = longest_first(todo, marks, timings, args.profile)

    def record_of(c, seconds, ok, parallel_jobs=jobs):
        record = {"profile": args.profile, "parameters": parameters, "status": "ok" if ok else "failed",
                  "wall_time_s": round(seconds, 2),
                  "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "hardware": hardware, "parallel_jobs": parallel_jobs,
                  "cores": every_core if parallel_jobs == 1 and c.name in spreads else 1}
        timings["chapters"][c.name] = record
        rows.append((c.name, args.profile, record["status"], f"{seconds:.1f} s"))
        return seconds

    work = (args.profile, parameters, kernel, cell_timeout, args.log_output)
    if jobs == 1:
        for i, c, out in todo:
            print(f"[{i}/{len(chapters)}] {c.name} ...", flush=True)
            seconds, failed = _execute(c, out, *work)
            total += record_of(c, seconds, failed is None)
            if failed:
                break
    elif todo:  # one process per chapter: every chapter pins torch to one CPU thread, so N cores run N chapters
        import concurrent.futures as cf
        import multiprocessing

        os.environ[cpus.CPUS_VARIABLE] = cores_set or "1"  # beside other chapters, a chapter has one core
        with cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {}
            for i, c, out in todo:
                print(f"[{i}/{len(chapters)}] {c.name}: queued", flush=True)  # started in this order
                futures[pool.submit(_execute, c, out, *work)] = c
            for future in cf.as_completed(futures):
                c = futures[future]
                if future.cancelled():
                    continue
                seconds, error = future.result()
                total += record_of(c, seconds, error is None)
                if error and not failed:
                    failed = error
                    for other in futures:  # let the running chapters finish, start no new one
                        other.cancel()
    if cores_set is None:
        os.environ.pop(cpus.CPUS_VARIABLE, None)  # alone, a chapter may use every core
    for i, c, out in alone if not failed else []:
        print(f"[{i}/{len(chapters)}] {c.name} (alone: it uses every core) ...", flush=True)
        seconds, failed = _execute(c, out, *work)
        total += record_of(c, seconds, failed is None, parallel_jobs=1)
        if failed:
            break
    timings_path.parent.mkdir(parents=True, exist_ok=True)
    timings_path.write_text(json.dumps(timings, indent=1) + "\n")
    rows.append(("total (this run)", "", "", f"{total:.1f} s"))
    if jobs > 1:
        rows.append((f"wall clock ({jobs} at a time)", "", "", f"{time.perf_counter() - started:.1f} s"))
    print("\n" + _table(rows))
    print(f"timings: {timings_path}")
    if failed:
        print(f"\nrun_chapters: FAILED (stopped at the first error)\n{failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
