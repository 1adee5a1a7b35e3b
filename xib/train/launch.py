"""Start alignment training as a subprocess (torchrun or the deepspeed launcher), stream its log.

The parent writes the resolved config to `artifacts/align/<m>/run_config.yaml`, opens the MLflow run
and hands its id to the workers through the environment; the workers print `@@xib {...}` progress
lines (rank 0 only), which become a progress bar here; every other line is echoed as it comes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xib.errors import XibError
from xib.net import free_port
from xib.train.config import LAUNCHERS
from xib.train.determinism import pinned_env
from xib.train.lifeline import child_dies_with_me

if TYPE_CHECKING:
    from xib.config import XibConfig

REPO = Path(__file__).resolve().parents[2]


def write_run_config(cfg: XibConfig, modality: str) -> Path:
    from dataclasses import replace

    from xib.io import atomic_path
    from xib.scrub import scrubbed_yaml

    cfg = replace(cfg, modality=replace(cfg.modality, name=modality))
    path = Path(cfg.paths.artifacts) / "align" / modality / "run_config.yaml"
    with atomic_path(path) as tmp:
        tmp.write_text(scrubbed_yaml(cfg))  # URL credentials reach the workers through the environment
    return path


def worker_env(cfg: XibConfig, run_id: str = "", llm_fp: str = "") -> dict[str, str]:
    from xib.train.lifeline import LAUNCHER_ENV, identity

    env = dict(os.environ)
    env[LAUNCHER_ENV] = identity()  # the workers follow this process and die with it
    threads = str(max(cfg.train.threads_per_proc, 1))
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"})
    env.update({k: env.get(k, v) for k, v in pinned_env(cfg).items()})
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("HF_HUB_OFFLINE", "1")
    if cfg.train.backend == "gloo":
        env.setdefault("DS_ACCELERATOR", "cpu")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    from xib.train.tracking import LLM_FINGERPRINT_ENV, RUN_ID_ENV

    if run_id:
        env[RUN_ID_ENV] = run_id
    if llm_fp:
        env[LLM_FINGERPRINT_ENV] = llm_fp
    else:
        env.pop(LLM_FINGERPRINT_ENV, None)
    return env


def command_line(cfg: XibConfig, config_path: Path, port: int | None = None) -> list[str]:
    """The launcher command. Multi-node: see docs/TRAINING.md (torchrun env / deepspeed hostfile)."""
    tc = cfg.train
    worker = ["-m", "xib.train.worker", "--config", str(config_path)]
    master_port = str(port or tc.master_port or free_port())
    if tc.launcher == "torchrun":
        nnodes = os.environ.get("XIB_NNODES", "1")
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(tc.procs),
            "--nnodes",
            nnodes,
        ]
        if nnodes != "1":  # multi-node: a rendezvous every node joins (XIB_RDZV_ENDPOINT=host:port)
            endpoint = os.environ.get("XIB_RDZV_ENDPOINT")
            if not endpoint:
                raise XibError(
                    "XIB_NNODES > 1 needs XIB_RDZV_ENDPOINT=host:port (the rendezvous of all nodes)"
                )
            cmd += [
                "--rdzv_backend",
                "c10d",
                "--rdzv_endpoint",
                endpoint,
                "--rdzv_id",
                os.environ.get("XIB_RDZV_ID", "xib"),
            ]
        else:
            cmd += ["--master_addr", "127.0.0.1", "--master_port", master_port]
        return cmd + worker
    if tc.launcher == "deepspeed":
        runner = shutil.which("deepspeed", path=str(Path(sys.executable).parent)) or shutil.which("deepspeed")
        if runner is None:
            raise XibError(
                "train.launcher=deepspeed: the `deepspeed` launcher is not installed in this environment"
            )
        cmd = [runner, "--master_port", master_port]
        if tc.hostfile:
            cmd += ["--hostfile", tc.hostfile]
        else:
            cmd += ["--num_nodes", "1", "--num_accelerators", str(tc.procs)]
        return cmd + ["--module", "xib.train.worker", "--config", str(config_path)]
    raise XibError(f"train.launcher={tc.launcher!r}: expected one of {', '.join(LAUNCHERS)}")


class ProgressView:
    """Turns the workers' `@@xib` lines into a tqdm bar and readable messages."""

    def __init__(self, modality: str, quiet: bool = False) -> None:
        self.modality, self.quiet, self.bar = modality, quiet, None
        self.events: list[dict[str, Any]] = []

    def _write(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def line(self, text: str) -> None:
        from xib.train.loop import PROGRESS_PREFIX

        if not text.startswith(PROGRESS_PREFIX):
            self._write(text.rstrip("\n"))
            return
        try:
            event = json.loads(text[len(PROGRESS_PREFIX) :])
        except json.JSONDecodeError:
            self._write(text.rstrip("\n"))
            return
        self.events.append(event)
        kind = event.get("event")
        if kind == "start" and not self.quiet:
            from tqdm import tqdm

            self.bar = tqdm(
                total=event["steps"], initial=event["step"], desc=f"align {self.modality}", unit="step"
            )
            self._write(
                f"align {self.modality}: {event['trainable']:,} trainable / {event['frozen']:,} frozen parameters, "
                f"{event['world_size']} processes, ZeRO-{event['zero_stage']}"
            )
        elif kind == "step" and self.bar is not None:
            self.bar.n = event["step"]
            self.bar.set_postfix(loss=f"{event['loss']:.4f}", lr=f"{event['train/lr']:.2e}")
        elif kind == "eval":
            self._write(f"step {event['step']}: val loss {event['val_loss']:.4f}")
            for sample in event.get("samples", [])[:3]:
                self._write(
                    f"  {sample.get('instruction', '')!r} -> {sample.get('generated', '')!r} "
                    f"(ref {sample.get('answer', '')!r})"
                )
        elif kind in ("resumed", "skipped_checkpoint", "checkpoint", "done"):
            self._write(f"{kind}: " + ", ".join(f"{k}={v}" for k, v in event.items() if k != "event"))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_alignment(cfg: XibConfig, modality: str, quiet: bool = False, track: bool = True) -> int:
    """Train `modality`'s projection; returns the launcher's exit status (0 = success)."""
    from xib.config import MODALITIES

    if modality not in MODALITIES:
        raise XibError(f"modality={modality!r}: expected one of {', '.join(MODALITIES)}")
    if cfg.train.launcher not in LAUNCHERS:
        raise XibError(f"train.launcher={cfg.train.launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    from xib.train import checkpointing, run_record, tracking

    config_path = write_run_config(cfg, modality)
    llm_fp = tracking.weights_fingerprint(cfg.model.llm.path)
    index_path = Path(cfg.paths.artifacts) / "features" / modality / "train" / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    expect = workers_expectations(config_path, str(index.get("key", "")), llm_fp)
    ckpt_dir = Path(cfg.paths.artifacts) / "align" / modality / "ds"
    # the checkpoint the workers will resume from, verified here first: a tampered one stops the
    # launch with one line before any worker starts
    found = checkpointing.find_latest(ckpt_dir, expect if expect is not None else {})
    resume_tag = found.tag if expect is not None else None
    run_id = ""
    if track:
        tags = tracking.provenance_tags(cfg, modality, index.get("encoder_fingerprint", ""), llm_fp)
        run_id, continued = run_record.open_or_continue(cfg, modality, tags, ckpt_dir, resume_tag)
        if continued and not quiet:
            print(
                f"align {modality}: continuing MLflow run {run_id} from its checkpoint {resume_tag}",
                flush=True,
            )
    status, final = 1, "FAILED"
    try:
        if cfg.train.launcher == "none":
            status = _run_in_process(config_path, run_id, llm_fp)
        else:
            status = _run_subprocess(cfg, modality, config_path, run_id, quiet, llm_fp)
        final = "FINISHED" if status == 0 else "FAILED"
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the workers are gone, the run was stopped
        final = "KILLED"
        raise
    finally:
        if run_id:
            tracking.close_run(cfg, run_id, final)
    return status


def planned_world_size(cfg: XibConfig) -> int | None:
    """How many ranks the launch will start (None where only the launcher finds out)."""
    tc = cfg.train
    if tc.launcher == "none":
        return 1
    if tc.launcher == "torchrun":
        return tc.procs * int(os.environ.get("XIB_NNODES", "1"))
    if not tc.hostfile:
        return tc.procs
    slots = [
        int(word.split("=", 1)[1])
        for line in Path(tc.hostfile).read_text().splitlines()
        for word in line.split()[1:]
        if word.startswith("slots=")
    ]
    return sum(slots) or None


def workers_expectations(config_path: Path, features_key: str, llm_fp: str) -> dict[str, Any] | None:
    """What the workers will require of a checkpoint to resume it: computed from the very config
    file they read, so the launcher and the workers agree on which checkpoint continues."""
    from xib.train import checkpointing
    from xib.train.worker import load_worker_config

    worker_cfg = load_worker_config(str(config_path), [])
    world = planned_world_size(worker_cfg)
    if world is None:
        return None
    return checkpointing.expectations(worker_cfg, world, features_key, llm_fp)


def _run_in_process(config_path: Path, run_id: str, llm_fp: str) -> int:
    from xib.train import tracking, worker

    handed = {tracking.RUN_ID_ENV: run_id, tracking.LLM_FINGERPRINT_ENV: llm_fp}
    previous = {name: os.environ.get(name) for name in handed}
    os.environ.update(handed)
    try:
        return worker.main(["--config", str(config_path)])
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_subprocess(
    cfg: XibConfig, modality: str, config_path: Path, run_id: str, quiet: bool, llm_fp: str
) -> int:
    port = cfg.train.master_port or free_port()
    cmd = command_line(cfg, config_path, port)
    view = ProgressView(modality, quiet)
    proc = subprocess.Popen(
        cmd,
        env=worker_env(cfg, run_id, llm_fp),
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,  # Ctrl-C reaches the launcher alone, which then stops the group
        preexec_fn=child_dies_with_me(),  # noqa: PLW1509 - one prctl call, resolved beforehand
    )
    previous = _sigterm_interrupts()
    try:
        assert proc.stdout is not None
        for text in proc.stdout:
            view.line(text)
        return proc.wait()
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        view.close()
        remove_shm_buffers(port)


def _sigterm_interrupts() -> Any:
    """SIGTERM (a scheduler cancelling the run) stops the training like Ctrl-C does; returns the
    handler it replaced (None off the main thread, where signals cannot be handled)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, interrupt)


def remove_shm_buffers(port: int) -> None:
    """DeepSpeed's CPU shared-memory allreduce leaves /dev/shm/deepspeed_allreduce_buffer_<uid>_<addr>_<port>_<rank>."""
    shm = Path("/dev/shm")
    if shm.is_dir():
        for leftover in shm.glob(f"deepspeed_allreduce_buffer_{os.getuid()}_*_{port}_*"):
            leftover.unlink(missing_ok=True)
