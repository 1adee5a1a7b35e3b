"""`xib serve`: the registered model behind an OpenAI-compatible API and a chat page."""

from __future__ import annotations

import argparse
import logging
import sys

from xib.commands import command
from xib.config import load_config


def _split(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra overrides (key=value) apart from the command's own arguments."""
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    return [a for a in args if a not in overrides], overrides


@command("serve")
def serve_command(args: list[str]) -> int:
    """Serve a registered model: xib serve [--model champion|challenger|previous|N] [--host H] [--port P]."""
    own, overrides = _split(args)
    parser = argparse.ArgumentParser(prog="xib serve", description=serve_command.__doc__)
    parser.add_argument("--model", default=None, help="alias or version (default: serve.model, champion)")
    parser.add_argument("--host", default=None, help="address to listen on (default: serve.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: serve.port; 0: any free port)")
    opts = parser.parse_args(own)

    import uvicorn

    from xib.registry.versions import resolve
    from xib.runtime.project import project_config
    from xib.serve.app import bearer_token, create_app
    from xib.serve.host import ModelHost

    cfg, where = project_config(load_config, overrides)
    scfg = cfg.serve
    ref = str(opts.model or scfg.model)
    resolve(cfg, ref)  # a registry without that model or alias fails now, in one line
    if int(scfg.threads) > 0:
        import torch

        torch.set_num_threads(int(scfg.threads))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = bearer_token(cfg)
    app = create_app(cfg, ModelHost(cfg, ref), token)
    host, port = str(opts.host or scfg.host), int(scfg.port if opts.port is None else opts.port)
    print(
        f"xib serve: {cfg.gate.model_name}@{ref}, {where}; auth {'on' if token else 'off'}", file=sys.stderr
    )
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    server.run()
    return 0
