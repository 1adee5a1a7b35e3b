"""`xib eval` writes one unit: on a read-only or full output disk it writes nothing and says so in one line.

The disks are real: tmpfs mounts (one remounted read-only, two too small) inside a private mount
namespace (`unshare -m`), so the host sees none of them; `xib eval` runs there as a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xib.config import load_config
from xib.eval.testing import make_tiny_project

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
OVERRIDES = [
    "eval.modalities=[image]",
    "eval.discrn.pairs=[]",
    "eval.tasks=[caption]",
    "eval.threads=1",
    "eval.plots=true",
]


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "tmpfs", "/mnt"], capture_output=True)
    return probe.returncode == 0


def test_eval_on_a_read_only_or_full_disk_writes_nothing(tmp_path: Path) -> None:
    if not _can_mount():
        pytest.skip("needs `unshare -m` and tmpfs mounts (root in a private mount namespace)")
    root = tmp_path / "project"
    make_tiny_project(load_config([f"paths.root={root}", *OVERRIDES]), modalities=("image",), items=4)
    disks = {"readonly": "1m", "small": "64k", "full": "24k"}
    for name in disks:
        (tmp_path / name).mkdir()
    old = json.dumps({"caption/image/cider": 1.0})  # a previous evaluation's metrics, on each disk
    mounts = "\n".join(
        f"mount -t tmpfs -o size={size} tmpfs {tmp_path / name} && mkdir {tmp_path / name}/eval "
        f"&& echo '{old}' > {tmp_path / name}/eval/metrics.json"
        for name, size in disks.items()
    )
    out = tmp_path / "out"
    out.mkdir()
    runs = "\n".join(
        f"{sys.executable} -m xib.cli eval eval.output={tmp_path / name}/eval {' '.join(OVERRIDES)} {extra} "
        f"> /dev/null 2> {out / name}.err; echo $? > {out / name}.rc; "
        f"find {tmp_path / name} | sort > {out / name}.files; cat {tmp_path / name}/eval/metrics.json > {out / name}.json"
        for name, extra in (("readonly", ""), ("small", ""), ("full", "eval.min_free_mb=0"))
    )
    script = f"set -e\n{mounts}\nmount -o remount,ro {tmp_path / 'readonly'}\nset +e\n{runs}\n"
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], cwd=REPO, env=dict(os.environ, XIB_ROOT=str(root), PYTHONWARNINGS="ignore"),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    expected = {
        "readonly": "not writable (read-only file system); nothing evaluated, nothing written",
        "small": "MB free, eval.min_free_mb asks for 50; nothing evaluated, nothing written",
        "full": "writing the evaluation failed, no space left on the device; nothing written",
    }
    for name, words in expected.items():
        stderr = (out / f"{name}.err").read_text()  # progress bars, then the error
        errors = [ln for ln in stderr.splitlines() if ln.startswith("xib eval: ")]
        assert (out / f"{name}.rc").read_text().strip() == "1", (name, stderr[-2000:])
        assert len(errors) == 1 and words in errors[0] and "Traceback" not in stderr, (name, stderr[-2000:])
        assert stderr.rstrip().endswith(errors[0])
        # only the previous evaluation remains, unchanged: no staging folder, no plot, no half file
        disk = tmp_path / name
        assert (out / f"{name}.files").read_text().split() == [
            str(disk),
            f"{disk}/eval",
            f"{disk}/eval/metrics.json",
        ]
        assert (out / f"{name}.json").read_text().strip() == old
