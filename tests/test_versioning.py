"""DVC versioning: same seed -> same DVC hashes; push/pull round trips to a local and an S3 remote."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import file_digests

from xib.config import load_config
from xib.data.generate import generate_world
from xib.data.versioning import DvcError, pull, push, recorded_hashes, track
from xib.errors import XibError

SMALL = [
    "data.world.items_per_modality=40",
    "data.world.entities_per_kind=3",
    "data.world.shard_items=20",
    "data.world.points=256",
    "data.world.audio_seconds=0.25",
    "data.world.workers=1",
]


def _git_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    for args in (
        ["init", "-q"],
        ["config", "user.name", "xib test"],
        ["config", "user.email", "xib@example.invalid"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True)
    return path


def _cfg(root: Path, *extra: str):
    return load_config([*SMALL, f"paths.root={root}", *extra])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def twin_repos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """Two git repos, each with a world generated from the same seed and tracked by DVC."""
    base = tmp_path_factory.mktemp("dvc")
    first, second = _git_repo(base / "first"), _git_repo(base / "second")
    hashes = []
    for repo in (first, second):
        cfg = _cfg(repo)
        generate_world(cfg, progress=False, corpus=False)
        hashes.append(track(cfg, ["world"]))
    assert hashes[0] == hashes[1], "same seed and parameters must give the same DVC hash"
    return first, second, hashes[0]


def test_same_seed_same_dvc_hash(twin_repos):
    first, second, hashes = twin_repos
    assert hashes["world"].endswith(".dir") and len(hashes["world"]) == 36
    assert recorded_hashes(_cfg(first)) == hashes == recorded_hashes(_cfg(second))
    assert (first / "data" / "world.dvc").is_file()
    assert (
        f"site_cache_dir = {first / '.cache' / 'dvc-site'}" in (first / ".dvc" / "config.local").read_text()
    )
    assert "/world" in (first / "data" / ".gitignore").read_text()  # the data stays out of git


def test_track_names_what_is_missing(tmp_path: Path):
    repo = _git_repo(tmp_path / "empty")
    with pytest.raises(XibError, match="instruct"):
        track(_cfg(repo), ["instruct"])


def _round_trip(pusher: Path, puller: Path, *remote: str, cli: bool = False) -> None:
    from xib.cli import main

    expected = file_digests(pusher / "data" / "world")
    if cli:
        assert main(["data-push", "world", f"paths.root={pusher}", *remote]) == 0
    else:
        push(_cfg(pusher, *remote))
    # the puller has the same .dvc file but neither the data nor a cache
    shutil.rmtree(puller / "data" / "world")
    shutil.rmtree(puller / ".dvc" / "cache", ignore_errors=True)
    if cli:
        assert main(["data-pull", f"paths.root={puller}", *remote]) == 0
    else:
        pull(_cfg(puller, *remote))
    assert file_digests(puller / "data" / "world") == expected


def test_push_pull_local_remote(twin_repos, tmp_path: Path):
    first, second, _ = twin_repos
    remote = f"infra.dvc_remote_url={tmp_path / 'remote'}"
    _round_trip(first, second, remote, cli=True)
    assert any((tmp_path / "remote").rglob("*")), "the local remote holds the pushed objects"


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch):
    """An S3 API on loopback (moto), started and stopped by the test; yields its endpoint."""
    server = Path(sys.executable).with_name("moto_server")
    assert server.exists(), "moto_server missing: the dev extra installs moto[server]"
    port = _free_port()
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        endpoint = f"http://127.0.0.1:{port}"
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="xib-data")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_push_pull_s3_remote(twin_repos, moto_s3: str):
    first, second, _ = twin_repos
    remote = [
        "infra.dvc_remote=s3",
        "infra.dvc_remote_url=s3://xib-data/dvc",
        f"infra.s3_endpoint_url={moto_s3}",
    ]
    _round_trip(first, second, *remote)
    import boto3

    listed = boto3.client("s3", endpoint_url=moto_s3).list_objects_v2(Bucket="xib-data", Prefix="dvc/")
    assert listed.get("KeyCount", 0) > 0
    # a remote that does not exist fails with DVC's reason, not silently
    with pytest.raises(DvcError, match="dvc push failed.*bucket"):
        push(_cfg(first, "infra.dvc_remote=s3", "infra.dvc_remote_url=s3://no-such-bucket/x",
                  f"infra.s3_endpoint_url={moto_s3}"))  # fmt: skip


def test_pipeline_output_is_committed_to_dvc_lock(twin_repos, tmp_path: Path):
    """Where dvc.yaml makes a data set, tracking commits that stage instead of `dvc add`."""
    first, _, hashes = twin_repos
    repo = _git_repo(tmp_path / "pipeline")
    shutil.copytree(first / "data" / "world", repo / "data" / "world")
    (repo / "dvc.yaml").write_text("stages:\n  world:\n    cmd: xib world\n    outs: [data/world]\n")
    assert track(_cfg(repo), ["world"]) == hashes
    assert not (repo / "data" / "world.dvc").exists() and (repo / "dvc.lock").is_file()
    assert recorded_hashes(_cfg(repo)) == hashes
