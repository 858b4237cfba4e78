"""The command line in a hostile environment, through the real entry point in subprocesses.

What ``test_cli_fuzz`` cannot do in-process: stdout closed (``>&-``), on a full device
(``/dev/full``) or read by a reader that stops early (``| head -c 1``); stderr closed; odd
terminals and locales (``COLUMNS=0``, ``TERM=dumb``, ``LANG=C`` with non-ASCII names,
``PYTHONIOENCODING=ascii``); files and directories the user may not read or write (as root,
the subprocess runs without the capabilities that bypass permissions); a read-only catalog;
and an output directory on a file system that is full (a small tmpfs in a user and mount
namespace; skipped, with the reason, where ``unshare`` cannot make one). A hypothesis
fuzzer draws commands, environments and stdout dispositions; the rest are the exact cases.

Every run must exit 0 with its output, or 1 (2 for a usage error) with one
``activezarr: error:`` line that names the file or option; never a traceback, an exit status
of 120 (Python's failed flush at exit), or output claimed written that was dropped.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli_run import COMMAND, cli_env
from tests.generate import write_variable
from tests.test_cli_fuzz import assert_consistent, check_outcome

NAMES = ["sp ace.nc", "new\nline.nc", "tâs ünï.nc", "-dash.nc", "x\x1b[31m.nc"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Data with odd names, their indexes, a large result (to break a pipe), and files and
    directories nobody may read or write."""
    from activezarr.catalog.indexing import index_many

    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    data.mkdir()
    values = np.arange(60, dtype="f4").reshape(3, 4, 5)
    write_variable(data / "v.nc", values, fill_value=np.float32(-1), chunks=(2, 2, 5))
    big = np.random.default_rng(0).random((2, 120, 200)).astype("f4")
    write_variable(data / "big.nc", big, fill_value=np.float32(-1), chunks=(1, 120, 200))
    for name in NAMES:
        shutil.copyfile(data / "v.nc", root / name)
    index_many([str(data / "v.nc"), str(data / "big.nc")], root / "indexes", progress=False)
    index_many([str(root / n) for n in NAMES], root / "odd", progress=False)
    shutil.copytree(root / "indexes", root / "rocat")
    for name in ("noread.json", "noread.nc"):
        shutil.copyfile(root / ("indexes/v.json" if name.endswith("json") else "data/v.nc"),
                        root / name)  # fmt: skip
        os.chmod(root / name, 0)
    (root / "noread.txt").write_text(f"{data / 'v.nc'}\n")
    os.chmod(root / "noread.txt", 0)
    (root / "rodir").mkdir()
    for path in [root / "rocat", *(root / "rocat").rglob("*")]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    os.chmod(root / "rodir", 0o555)
    with contextlib.suppress(ImportError):
        import h5py

        with h5py.File(root / "plain.h5", "w") as f:  # HDF5, but not netCDF
            f["x"] = np.arange(10.0)
    yield root
    for path in [root / "rocat", *(root / "rocat").rglob("*"), root / "rodir"]:
        os.chmod(path, 0o755)  # so that pytest can remove the directory


def _drop_permission_override() -> None:
    """In the child, as root: lose CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (dropped from
    the bounding set, they are gone after exec), so file permissions apply as to a user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture(scope="module")
def as_user(ws):
    """A ``preexec_fn`` under which file permissions apply (None when not root)."""
    if os.geteuid() != 0:
        return None
    try:
        probe = subprocess.run(
            [sys.executable, "-c", f"open({str(ws / 'noread.txt')!r}).read()"],
            preexec_fn=_drop_permission_override,
            capture_output=True,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:  # no CAP_SETPCAP, no prctl
        pytest.skip(f"root here cannot drop the capability to read every file ({exc})")
    if probe.returncode == 0:
        pytest.skip("root here cannot lose the capability to read every file (prctl)")
    return _drop_permission_override


def run(ws, argv, env=None, stdout=subprocess.PIPE, preexec_fn=None, cwd=None):
    """``python -m activezarr ARGV`` in ``ws``; returns (exit status, stdout, stderr)."""
    environment = {"HOME": None, "CI": "true", "ACTIVEZARR_INDEX_DIR": str(ws / "cache")}
    proc = subprocess.run(
        [*COMMAND, *map(str, argv)],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=cwd or ws,
        env=cli_env({**environment, **(env or {})}),
        preexec_fn=preexec_fn,
        timeout=300,
        check=False,
    )
    out = proc.stdout.decode("utf-8", "replace") if proc.stdout is not None else ""
    return proc.returncode, out, proc.stderr.decode("utf-8", "replace")


def _close_stdout() -> None:
    os.close(1)


def _close_stderr() -> None:
    os.close(2)


def broken_pipe(ws, argv, env=None):
    """Run with stdout read by a reader that takes one byte and goes away."""
    environment = {"CI": "true", "ACTIVEZARR_INDEX_DIR": str(ws / "cache"), **(env or {})}
    proc = subprocess.Popen(
        [*COMMAND, *map(str, argv)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ws,
        env=cli_env(environment),
    )
    proc.stdout.read(1)
    proc.stdout.close()
    err = proc.stderr.read().decode("utf-8", "replace")
    return proc.wait(timeout=300), err


COMMANDS = [
    ["reduce", "indexes/v.json", "v", "--op", "mean"],
    ["reduce", "indexes/big.json", "v", "--op", "max", "--axis", "0", "--json"],
    ["reduce", "indexes/v.json", "nosuch", "--op", "mean", "--json"],
    ["reduce", "sp ace.nc", "v", "--op", "count", "--select", "-1:"],
    ["reduce", "new\nline.nc", "v", "--op", "sum", "--json"],
    ["reduce", "tâs ünï.nc", "v", "--op", "min"],
    ["reduce", "x\x1b[31m.nc", "nosuch", "--op", "min"],
    ["reduce", "--op", "mean", "--", "-dash.nc", "v"],
    ["reduce", "plain.h5", "x", "--op", "mean", "--json"],
    ["reduce", "indexes/v.json", "v", "--op", "mean", "--select", "0:2,::-1,7"],
    ["reduce", "indexes/v.json", "v", "--op", "mean", "--select", "--1"],
    ["info", "indexes/big.json"],
    ["info", "tâs ünï.nc", "v"],
    ["catalog", "ls", "--catalog", "odd"],
    ["catalog", "ls", "--catalog", "odd", "--json"],
    ["catalog", "search", "--catalog", "odd", "--path", "*ü*"],
    ["catalog", "reduce", "--var", "v", "--op", "mean", "--path", "data/v.nc", "--json"],
    ["catalog", "show", "--catalog", "odd", "new\nline.nc"],
    ["catalog", "verify", "--catalog", "odd", "--json"],
    ["index", "data/v.nc", "--out", "indexes", "--json"],
    ["index", "data/v.nc", "--out", "indexes", "-q"],
    ["index", "nothing.nc", "new\nline.nc", "--out", "indexes"],
    ["versions"],
    ["--help"],
    ["catalog", "reduce", "-h"],
    [],
]
ENVIRONMENTS = [
    {},
    {"NO_COLOR": "1", "TERM": "dumb"},
    {"COLUMNS": "0"},
    {"COLUMNS": "1", "LINES": "1"},
    {"COLUMNS": "99999999"},
    {"COLUMNS": "abc"},
    {"LANG": "C", "LC_ALL": "C"},
    {"PYTHONIOENCODING": "ascii"},
    {"PYTHONIOENCODING": "latin-1", "LANG": "C"},
]
DISPOSITIONS = ["pipe", "closed", "full", "broken", "no stderr"]


def _prints(ws, argv, env) -> tuple[int, str, str]:
    return run(ws, argv, env)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    argv=st.sampled_from(COMMANDS),
    env=st.sampled_from(ENVIRONMENTS),
    disposition=st.sampled_from(DISPOSITIONS),
)
def test_any_command_any_terminal_any_stdout(ws, argv, env, disposition):
    code, out, err = run(ws, argv, env)  # the reference: stdout a pipe
    check_outcome(argv, code, out, err)
    assert code != 120 and "Exception ignored" not in err, err
    if env.get("PYTHONIOENCODING") == "ascii" or env.get("LC_ALL") == "C":
        assert "not UTF-8 text" not in err, err  # the terminal's encoding is not the file's
    if disposition == "pipe":
        return
    if disposition == "broken":  # the reader took what it wanted: a quiet end
        got, err2 = broken_pipe(ws, argv, env)
        assert got in (0, code) and "Traceback" not in err2 and "Exception" not in err2, err2
        return
    if disposition == "no stderr":  # nothing can be said, but the status still tells
        got, out2, _ = run(ws, argv, env, preexec_fn=_close_stderr)
        assert got == code, (got, code)
        if "--json" in argv:
            assert json.loads(out2) == json.loads(out) or code, out2
        return
    target = subprocess.DEVNULL if disposition == "closed" else open("/dev/full", "wb")  # noqa: SIM115
    with contextlib.closing(target) if disposition == "full" else contextlib.nullcontext():
        hook = _close_stdout if disposition == "closed" else None
        got, _, err2 = run(ws, argv, env, stdout=target, preexec_fn=hook)
    assert "Traceback" not in err2 and got != 120, err2
    if code == 0 and out:  # there was output, and it could not be written: not a success
        assert got == 1, f"{argv}: exit {got} with stdout {disposition}\n{err2}"
        lines = err2.strip().splitlines()
        assert lines[-1].startswith("activezarr: error: standard output"), err2
        assert "closed" in lines[-1] or "No space left" in lines[-1], err2
    else:
        assert got == code, (got, code, err2)


# -- permissions --------------------------------------------------------------------------------

RO_REDUCE = ["catalog", "reduce", "--catalog", "rocat", "--var", "v", "--op", "count"]
PERMISSION_CASES = [
    (["reduce", "noread.json", "v", "--op", "mean", "--json"], 1, "noread.json cannot be read"),
    (["info", "noread.nc"], 1, "noread.nc cannot be read (Permission denied)"),
    (["index", "noread.nc", "--out", "out_p"], 1, "noread.nc: permission denied"),
    (["index", "--from-list", "noread.txt", "--out", "out_p"], 1, "--from-list noread.txt"),
    (["index", "data/v.nc", "--out", "rodir"], 1, "--out rodir is not writable"),
    (["index", "data/v.nc", "--out", "rodir/new"], 1, "--out rodir/new: rodir is not writable"),
    (["demo", "--out", "out_p", "--data", "rodir/d"], 1, "--data rodir/d: rodir is not"),
    (["catalog", "export", "--intake-esm", "rodir/x"], 1, "--intake-esm rodir/x: rodir is not"),
    (["combine", "--catalog", "rocat", "--var", "v"], 1, "give --out FILE"),
    # a read-only catalog is read
    (["catalog", "ls", "--catalog", "rocat"], 0, "2 entries in rocat"),
    (["catalog", "verify", "--catalog", "rocat", "--json"], 0, ""),
    ([*RO_REDUCE, "--path", "*/v.nc"], 0, ""),
]


@pytest.mark.parametrize(("argv", "code", "message"), PERMISSION_CASES)
def test_what_the_user_may_not_read_or_write(ws, as_user, argv, code, message):
    got, out, err = run(ws, argv, preexec_fn=as_user)
    check_outcome(argv, got, out, err)
    assert got == code, err
    assert message in err, err
    if code:
        assert len(err.strip().splitlines()) == 1, err
    assert not (ws / "out_p").exists(), "a failed run left its new directory behind"


# -- a full file system -------------------------------------------------------------------------

FULL_SCRIPT = """
set -e
mount -t tmpfs -o size="$SIZE" tmpfs "$MNT"
set +e
[ -z "$FILL" ] || head -c 64M /dev/zero > "$MNT/.filler" 2>/dev/null  # not a byte left
if [ -n "$STDOUT_ON_FULL" ]; then
  "$PY" -m activezarr "$@" > "$MNT/out.txt" 2> "$ERR"
else
  "$PY" -m activezarr "$@" > "$OUT" 2> "$ERR"
fi
echo $? > "$RC"
cp -a "$MNT/." "$COPY/" 2>/dev/null
exit 0
"""


@pytest.fixture(scope="module")
def full_fs(ws, tmp_path_factory):
    """Run a command with a small tmpfs mounted at ``ws/full`` (in its own namespaces)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare (util-linux) to mount a small tmpfs")
    (ws / "full").mkdir(exist_ok=True)
    probe = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "sh", "-c",
         f"mount -t tmpfs -o size=8k tmpfs {ws / 'full'}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({probe.stderr.strip()})")

    def run_full(argv, size: str, stdout_on_full: bool = False, fill: bool = False):
        tmp = tmp_path_factory.mktemp("full")
        (tmp / "copy").mkdir()
        env = cli_env({
            "CI": "true", "ACTIVEZARR_INDEX_DIR": str(ws / "cache"), "SIZE": size,
            "MNT": str(ws / "full"), "PY": sys.executable, "OUT": str(tmp / "out"),
            "ERR": str(tmp / "err"), "RC": str(tmp / "rc"), "COPY": str(tmp / "copy"),
            "STDOUT_ON_FULL": "1" if stdout_on_full else "",
            "FILL": "1" if fill or stdout_on_full else "",
        })  # fmt: skip
        subprocess.run(
            [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", FULL_SCRIPT, "sh",
             *map(str, argv)],
            cwd=ws, env=env, check=True, timeout=300, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        code = int((tmp / "rc").read_text())
        out = (tmp / "out").read_text() if (tmp / "out").exists() else ""
        return code, out, (tmp / "err").read_text(), tmp / "copy"

    return run_full


@pytest.mark.parametrize("size", ["4k", "24k", "160k"])
def test_indexing_onto_a_full_file_system(ws, full_fs, size):
    argv = ["index", "data/v.nc", "data/big.nc", "--out", "full/idx", "--json"]
    code, out, err, copy = full_fs(argv, size)
    check_outcome(argv, code, out, err)
    assert code in (0, 1), err
    if code:
        assert "No space left on device" in err or "is full" in err, err
        assert "free some space" in err, err
    if (copy / "idx").is_dir():
        assert_consistent(copy / "idx")


@pytest.mark.parametrize(
    "argv",
    [
        ["reduce", "indexes/big.json", "v", "--op", "mean", "--axis", "0", "--json"],
        ["catalog", "ls", "--json"],
        ["versions"],
    ],
)
def test_stdout_onto_a_full_file_system(ws, full_fs, argv):
    code, _, err, _ = full_fs(argv, "4k", stdout_on_full=True)
    assert code == 1, err
    assert err.strip().splitlines()[-1].startswith("activezarr: error: standard output: No "), err
    assert "Traceback" not in err and "free some space" in err


@pytest.mark.parametrize(
    ("argv", "size", "option"),
    [
        (["catalog", "export", "--intake-esm", "full/esm"], "4k", "--intake-esm full/esm"),
        (["combine", "--var", "v", "--concat-dim", "d0", "--path", "data/v.nc",
          "--out", "full/c.json"], "0", "--out full/c.json"),
        (["demo", "--out", "full/i", "--data", "full/d"], "24k", "--data full/d"),
    ],
)  # fmt: skip
def test_outputs_onto_a_full_file_system(ws, full_fs, argv, size, option):
    """Room for part of the output (size) or none ("0"): one line naming the option, and
    every file there whole (export's JSON parses, demo's sample is not half written)."""
    code, out, err, copy = full_fs(argv, "64k" if size == "0" else size, fill=size == "0")
    check_outcome(argv, code, out, err)
    assert code == 1 and "No space left on device" in err, (argv, err)
    assert f"error: {option}" in err and "free some space" in err, err
    leftovers = [p.name for p in copy.rglob("*") if p.name.startswith(".") and p.name != ".filler"]
    assert not leftovers, (argv, leftovers)
    for made in copy.rglob("*.json"):
        json.loads(made.read_text())
    assert not (copy / "d" / "demo_tas.nc").exists(), "half a sample file"


def test_the_errno_fixes_are_worded():
    from activezarr.cli._common import os_fix

    for number in (errno.EACCES, errno.EROFS, errno.ENOSPC):
        assert os_fix(OSError(number, os.strerror(number))).startswith("; ")
