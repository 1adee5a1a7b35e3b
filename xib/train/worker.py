"""One alignment training process (a DeepSpeed rank): `python -m xib.train.worker --config FILE [overrides]`.

Started by `xib.train.launch` under torchrun or the deepspeed launcher (or in-process with
launcher=none). Trains only `cfg.modality.name`'s projection on cached features; the LLM and the
encoders stay frozen and never reach the optimizer. Rank 0 alone prints progress and logs to MLflow.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from xib.errors import XibError
from xib.train import determinism

if TYPE_CHECKING:
    from xib.config import XibConfig


def parse_args(argv: list[str]) -> tuple[str, list[str]]:
    parser = argparse.ArgumentParser(prog="xib.train.worker")
    parser.add_argument("--config", default="", help="resolved config written by the launcher")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None)  # deepspeed launcher
    args, overrides = parser.parse_known_args(argv)
    return args.config, overrides


def load_worker_config(config_path: str, overrides: list[str]) -> Any:
    """The parent's resolved config file plus overrides (or conf/ when none is given), validated."""
    from xib.config import load_config

    return load_config(overrides, config_file=config_path or None)


def setup_distributed(backend: str) -> tuple[int, int, int]:
    import deepspeed

    if "RANK" not in os.environ:  # launcher=none: one process, its own rendezvous
        from xib.net import free_port

        os.environ.update(
            {
                "RANK": "0",
                "WORLD_SIZE": "1",
                "LOCAL_RANK": "0",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(free_port()),
            }
        )
    deepspeed.init_distributed(dist_backend=backend)
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def teardown_distributed() -> None:
    """Destroy the process group `setup_distributed` made, through DeepSpeed: it also drops the groups
    DeepSpeed cached (a clone of the world group among them), which a later in-process run (tests,
    notebooks) would otherwise broadcast over ("Group ... is not registered")."""
    import deepspeed.comm

    deepspeed.comm.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    from xib.train import lifeline, priority

    if lifeline.watch_launcher() is not None:  # a process of its own: it dies with the launcher
        lifeline.die_with_parent()
    priority.inherit_niceness()  # torchrun's own session must not undo `infra.stage_nice`
    config_path, overrides = parse_args(list(sys.argv[1:] if argv is None else argv))
    cfg = load_worker_config(config_path, overrides)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch.distributed as dist

    determinism.apply(cfg, cfg.train.threads_per_proc)
    owns_group = not dist.is_initialized()
    rank, world, local_rank = setup_distributed(cfg.train.backend)
    try:
        return train(cfg, rank, world, local_rank)
    finally:
        if owns_group and dist.is_initialized():
            teardown_distributed()


def train(cfg: XibConfig, rank: int, world: int, local_rank: int) -> int:
    """One rank's whole run, in the steps of xib.train.loop."""
    from xib.train import loop

    job, engine = loop.setup(cfg, rank, world, local_rank)
    progress = loop.resume(job, engine)
    progress = loop.fit(job, engine, progress)
    loop.finish(job, engine, progress)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except XibError as err:
        print(f"xib align: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
