"""Operations against real services on loopback: an MLflow tracking server whose backend store is a
fresh PostgreSQL database (one per module), a gateway in front of it that fails on demand, Prefect
flows running stages as child processes, promoters in separate processes.

- a stage whose tracking server is down is retried `infra.retry.stage_retries` times, each attempt
  bounded by MLflow's own budget, then fails with one line naming the service, the URL without its
  credentials and what was tried; it succeeds when the server comes back between attempts; a
  permanent error is not retried;
- an unreachable registry is never read as "no champion"; `xib gate` exits 3 on refuse;
- a fault between any two promotion or rollback writes leaves the registry as before or as after;
- two promoters sharing nothing but the database (separate lock files, separate roots) cannot both win;
- a URL credential appears nowhere in the saved configs, artifacts, params, tags or logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ops_services import Gateway, fresh_database, mlflow_server

from xib.config import load_config
from xib.errors import TransientError
from xib.registry import registry as reg

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SECRET = "opspass-7f3a"  # the password in every URL below; it must never be written anywhere


@pytest.fixture(autouse=True)
def _own_environment(monkeypatch: pytest.MonkeyPatch):
    """Budgets and credentials the code under test puts in os.environ stay in this test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory):
    """(tracking server URL, database URI): one MLflow server on a fresh PostgreSQL database."""
    tmp = tmp_path_factory.mktemp("mlflow-pg")
    with fresh_database() as db, mlflow_server(db, tmp / "artifacts") as url:
        yield url, db


def _overrides(tracking: str, db: str, model: str, *extra: str) -> list[str]:
    return [
        f"infra.mlflow_tracking_uri={tracking}",
        f"gate.lock_uri={db}",
        f"gate.model_name={model}",
        "infra.retry.tracking_max_retries=1",
        "infra.retry.tracking_backoff_factor=0",
        "infra.retry.tracking_timeout_s=10",
        *extra,
    ]


def _with_password(url: str) -> str:
    return url.replace("http://", f"http://opsuser:{SECRET}@")


# --- a gate-ready project: a projection checkpoint, its evaluation and the candidate file ----------


def _gate_project(root: Path, metrics: dict[str, float]) -> None:
    align = root / "artifacts/align/image"
    align.mkdir(parents=True, exist_ok=True)
    weights = align / "projection.safetensors"
    if not weights.is_file():  # else a projection trained by the test itself
        weights.write_bytes(os.urandom(256))
        (align / "projection.json").write_text(json.dumps({"modality": "image", "provenance": {}}))
    out = root / "artifacts/eval"
    out.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    (out / "metrics.json").write_text(json.dumps(metrics))
    candidate = {"checkpoints": {"image": sha}, "fingerprints": {"image": ""}, "data": {}, "metrics": metrics}
    (out / "candidate.json").write_text(json.dumps(candidate))


GATE = ["eval.modalities=[image]", "gate.bundle_frozen=false"]
FLOW = textwrap.dedent(
    """
    import json, sys
    from flows.gate import gate_flow
    for name, overrides in json.loads(sys.argv[1]).items():
        try:
            decision = gate_flow(overrides)
            print("RESULT", json.dumps({"name": name, "ok": True, "decision": decision["decision"]}))
        except Exception as err:
            print("RESULT", json.dumps({"name": name, "ok": False, "error": str(err), "type": type(err).__name__}))
    """
)


def _run_flows(cases: dict[str, list[str]], prefect_env: dict) -> tuple[dict[str, dict], str]:
    """Each case's gate flow, one after the other in one process; returns each one's outcome and the log."""
    env = dict(prefect_env, PREFECT_LOGGING_LEVEL="WARNING")
    done = subprocess.run(
        [sys.executable, "-c", FLOW, json.dumps(cases)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
    )  # fmt: skip
    results = [
        json.loads(ln[len("RESULT ") :]) for ln in done.stdout.splitlines() if ln.startswith("RESULT ")
    ]
    assert len(results) == len(cases), done.stdout[-3000:]
    return {r["name"]: r for r in results}, done.stdout


def test_flows_retry_transient_stage_failures_only(services, prefect_server, tmp_path: Path) -> None:
    url, db = services
    retry = ["infra.retry.stage_retries=2", "infra.retry.stage_retry_delays_s=[0.5,1.0]"]
    roots = {name: tmp_path / name for name in ("down", "back", "denied")}
    for root in roots.values():
        _gate_project(root, {"discrn/image_pc": 0.9})
    with (
        Gateway(url, mode="503") as down,
        Gateway(url, mode="503", forward_after=2) as back,  # 503 for the first attempt's 2 requests, then up
        Gateway(url, mode="403") as denied,
    ):
        cases = {
            name: [*_overrides(_with_password(gw.url), db, f"xib-flow-{name}", *GATE, "~gate.floors"),
                   *retry, f"paths.root={roots[name]}"]
            for name, gw in (("down", down), ("back", back), ("denied", denied))
        }  # fmt: skip
        outcomes, log = _run_flows(cases, prefect_server)

    # down: 3 attempts (1 + stage_retries), each 2 requests (1 + tracking_max_retries), then one line
    failed = outcomes["down"]
    assert not failed["ok"] and failed["type"] == "TransientError", log[-3000:]
    assert down.statuses() == [503] * 6
    message = failed["error"]
    assert "\n" not in message and message.startswith("stage gate: xib gate: MLflow registry at ")
    assert f"{down.url} is unavailable" in message and "tried 2 requests per call" in message
    assert SECRET not in log and "opsuser" not in message

    # back: the first attempt fails on 503s, the retry finds the server up and registers the candidate
    assert outcomes["back"]["ok"] and outcomes["back"]["decision"] == "promote", log[-3000:]
    assert back.statuses()[:2] == [503, 503]
    assert set(back.statuses()[2:]) <= {200, 404}  # 404: "no champion alias yet", an answer, not a failure
    assert reg.alias_version(load_config(_overrides(url, db, "xib-flow-back")), reg.CHALLENGER) == "1"

    # denied: a permanent error (403) fails the flow at once: one request, no retry
    assert not outcomes["denied"]["ok"] and denied.statuses() == [403], log[-3000:]
    assert "exit status 1" in outcomes["denied"]["error"]


def test_unreachable_registry_is_never_no_champion() -> None:
    from conftest import free_port

    dead = f"http://opsuser:{SECRET}@127.0.0.1:{free_port()}"
    cfg = load_config([f"infra.mlflow_tracking_uri={dead}", "infra.retry.tracking_max_retries=0"])
    for read in (lambda: reg.alias_version(cfg, reg.CHAMPION), lambda: reg.champion_state(cfg)):
        with pytest.raises(TransientError) as caught:
            read()
        message = str(caught.value)
        assert message.startswith("MLflow registry at http://127.0.0.1:") and "is unavailable" in message
        assert "\n" not in message and SECRET not in message and "tried 1 requests per call" in message


# --- promotion: one consistent step ----------------------------------------------------------------

WRITES = {
    "set_registered_model_tag",
    "delete_registered_model_tag",
    "set_registered_model_alias",
    "delete_registered_model_alias",
    "set_model_version_tag",
}


class Crash(RuntimeError):
    pass


class FaultyClient:
    """Passes every call to the real client; the `fail_at`-th write raises instead (a crash before it)."""

    def __init__(self, real, fail_at: int) -> None:
        self.real, self.fail_at, self.writes = real, fail_at, 0

    def __getattr__(self, name: str):
        attr = getattr(self.real, name)
        if name not in WRITES:
            return attr

        def write(*args, **kwargs):
            self.writes += 1
            if self.writes == self.fail_at:
                raise Crash(f"injected before write {self.writes} ({name})")
            return attr(*args, **kwargs)

        return write


def _versions(cfg, n: int) -> list[str]:
    mc = reg.client(cfg)
    name = str(cfg.gate.model_name)
    mc.create_registered_model(name)
    out = []
    for i in range(n):  # promotion never reads the artifacts: a remote source the server accepts as is
        out.append(str(mc.create_model_version(name, f"s3://xib-test/{name}/{i}").version))
    return out


def _raw(cfg) -> tuple[str | None, str | None, list[str], bool]:
    """(champion alias, previous alias, history tag, intent pending) exactly as stored."""
    mc = reg.client(cfg)
    tags = mc.get_registered_model(str(cfg.gate.model_name)).tags
    history = [v for v in tags.get(reg.HISTORY_TAG, "").split(",") if v]
    return (
        reg.alias_version(cfg, reg.CHAMPION),
        reg.alias_version(cfg, reg.PREVIOUS),
        history,
        reg.INTENT_TAG in tags,
    )


@pytest.mark.parametrize("op", ["promote", "rollback"])
def test_a_fault_between_any_two_writes_leaves_before_or_after(services, monkeypatch, op) -> None:
    url, db = services
    real_client = reg.client
    cfg = load_config(_overrides(url, db, f"xib-fault-{op}"))
    first, *versions = _versions(cfg, 10)
    reg.promote(cfg, first, expected_champion=None)
    seen_after, crashes = 0, 0
    for fail_at, version in enumerate(versions, start=1):
        reg.promote(cfg, version)  # a clean promotion: the rollback scenario's starting point
        before = reg.champion_state(cfg)
        if op == "promote":
            target = str(
                reg.client(cfg).create_model_version(cfg.gate.model_name, f"s3://xib-test/p{fail_at}").version
            )
            after = {"champion": target, "previous": version, "history": [*before["history"], target]}
        else:
            after = {
                "champion": before["previous"],
                "previous": before["history"][-3] if len(before["history"]) > 2 else None,
                "history": before["history"][:-1],
            }
        monkeypatch.setattr(reg, "client", lambda c, n=fail_at: FaultyClient(real_client(c), n))
        try:
            if op == "promote":
                reg.promote(cfg, target, expected_champion=version, note="judged against the champion")
            else:
                reg.rollback(cfg, expected_champion=version)
            crashed = False
        except Crash:
            crashed, crashes = True, crashes + 1
        monkeypatch.setattr(reg, "client", real_client)
        state = reg.champion_state(cfg)  # what every reader sees, before any repair
        assert state in (before, after), (fail_at, state)
        assert state["champion"] != state["previous"]
        seen_after += state == after
        # the next call finishes or drops the half-written move without changing what readers saw
        assert reg.repair(cfg) == state
        if state == before:
            reg.promote(cfg, target, expected_champion=version) if op == "promote" else reg.rollback(
                cfg, expected_champion=version
            )
        assert reg.champion_state(cfg) == after
        assert _raw(cfg) == (after["champion"], after["previous"], after["history"], False)
        if not crashed:
            break
    assert crashes >= 6 and not crashed and seen_after >= 1  # each write interrupted once, then a clean run
    with pytest.raises(reg.PromotionConflict):  # rollback takes the expected champion too
        reg.rollback(cfg, expected_champion="99")


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from xib.config import load_config
    from xib.registry import registry as reg
    overrides, version, expected, go = sys.argv[4:], sys.argv[1], sys.argv[2], Path(sys.argv[3])
    cfg = load_config(overrides)
    real_move = reg._move
    def slow_move(*args, **kwargs):  # widen the window between the check and the commit
        time.sleep(1.0)
        return real_move(*args, **kwargs)
    reg._move = slow_move
    reg.alias_version(cfg, reg.CHAMPION)  # connected before the start signal
    (go.parent / f"ready-{version}").touch()
    while not go.exists():
        time.sleep(0.01)
    try:
        reg.promote(cfg, version, expected_champion=expected)
        print("won")
    except reg.PromotionConflict as err:
        print("lost:", err)
    except Exception as err:  # without a shared lock, two writers can also collide inside MLflow
        print("error:", type(err).__name__)
    """
)


def _start_racers(overrides: list[str], versions: list[str], expected: str, tmp: Path) -> list:
    procs = []
    for v in versions:
        host = tmp / f"host-{v}"  # each "host" has its own root and lock file: they share only the database
        host.mkdir()
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    RACER,
                    v,
                    expected,
                    str(tmp / "go"),
                    *overrides,
                    f"gate.lock_file={host / 'promote.lock'}",
                ],
                cwd=REPO,
                env=dict(os.environ, XIB_ROOT=str(host)),
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    return procs


def test_two_hosts_cannot_both_win(services, tmp_path: Path) -> None:
    """Two promoters judged against the same champion, started together, separate roots and lock files:
    with the advisory lock in the registry's database exactly one wins; the control race, with only
    the (unshared) lock files, lets both pass the compare-and-set."""
    url, db = services
    races = {}
    for lock, name in ((db, "xib-race-db"), ("", "xib-race-files")):
        overrides = [
            *_overrides(url, db, name)[2:],
            f"infra.mlflow_tracking_uri={url}",
            f"gate.lock_uri={lock}",
        ]
        cfg = load_config(overrides)
        v1, v2, v3 = _versions(cfg, 3)
        reg.promote(cfg, v1, expected_champion=None)
        (tmp_path / name).mkdir()
        races[name] = (cfg, (v1, v2, v3), _start_racers(overrides, [v2, v3], v1, tmp_path / name))
    deadline = time.monotonic() + 240
    ready = [tmp_path / n / f"ready-{v}" for n, (_, vs, _) in races.items() for v in vs[1:]]
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    for name in races:
        (tmp_path / name / "go").touch()
    outs = {n: [p.communicate(timeout=240)[0].strip() for p in procs] for n, (_, _, procs) in races.items()}
    cfg, (v1, v2, v3), _ = races["xib-race-db"]
    winners = [v for v, out in zip((v2, v3), outs["xib-race-db"]) if out == "won"]
    assert len(winners) == 1 and sum(o.startswith("lost:") for o in outs["xib-race-db"]) == 1, outs
    assert reg.champion_state(cfg) == {"champion": winners[0], "previous": v1, "history": [v1, winners[0]]}
    assert not any(o.startswith("lost:") for o in outs["xib-race-files"]), outs  # both passed the check


# --- no credentials anywhere they can be read back ------------------------------------------------


def test_gate_run_refuses_below_floors_and_writes_no_credentials(services, xib_root: Path, capfd) -> None:
    """`xib gate` with a password in every URL, on a first candidate below the default floors: exit 3,
    failing checks first, no champion, the next command said; the password is nowhere on disk, in
    the database's params and tags, or in the logs, while `num_key_value_heads` is not masked."""
    import psycopg2
    from test_train_fixtures import make_world

    from xib.registry.outcome import settle
    from xib.train.launch import run_alignment

    url, db = services
    overrides = [
        *_overrides(_with_password(url), db, "xib-scrub"),
        "infra.mlflow_experiment=xib-scrub",
        f"infra.s3_endpoint_url=http://s3user:{SECRET}@127.0.0.1:9",
        f"infra.dvc_remote_url=https://dvcuser:{SECRET}@dvc.example/remote",
        f"infra.prefect_api_url=http://pf:{SECRET}@127.0.0.1:9/api",
        *GATE,
    ]
    # a tiny real alignment run (in-process launcher, 2 steps) tracked on the server
    train = ["train.launcher=none", "train.steps=2", "+train.steps_by_modality={image: 2}",
             "train.checkpoint_every=2", "train.eval_every=2"]  # fmt: skip
    cfg = load_config([*make_world(xib_root), *overrides, *train])
    assert run_alignment(cfg, "image", quiet=True) == 0
    run_config = xib_root / "artifacts/align/image/run_config.yaml"
    run_id = json.loads((xib_root / "artifacts/align/image/projection.json").read_text())["provenance"][
        "mlflow_run_id"
    ]
    _gate_project(xib_root, {"discrn/image_pc": 0.55, "caption/image/exact_match": 0.99})
    done = subprocess.run(
        [sys.executable, "-m", "xib.cli", "gate", *overrides], cwd=REPO,
        env=dict(os.environ, XIB_ROOT=str(xib_root)), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr[-3000:]
    reasons = [ln.strip()[2:] for ln in done.stdout.splitlines() if ln.strip().startswith("- ")]
    failing = [r for r in reasons if "below the floor" in r or "missing" in r]
    assert failing and reasons[: len(failing)] == failing  # failing checks first
    assert "discrn/image_pc: 0.55 is below the floor 0.75" in failing
    assert "caption/image/exact_match: 0.99 meets the floor 0.6" in reasons[len(failing) :]
    assert reg.alias_version(cfg, reg.CHAMPION) is None  # a first candidate is judged too
    decision = json.loads((xib_root / "artifacts/gate/decision.json").read_text())
    lines = settle(cfg, decision)
    assert lines[0].startswith("no champion: version 1 was refused by the gate (")
    assert lines[-1].startswith("next: xib promote --version 1 --force")

    logs = done.stdout + done.stderr + "".join(capfd.readouterr())
    written = [p for p in xib_root.rglob("*") if p.is_file()]
    assert run_config in written and any(p.name == "config.yaml" for p in xib_root.rglob("mlruns/**/*"))
    leaks = [str(p) for p in written if SECRET.encode() in p.read_bytes()]
    assert not leaks and SECRET not in logs
    conn = psycopg2.connect(db)
    with conn.cursor() as cur:
        cur.execute("SELECT key, value FROM params WHERE run_uuid = %s", (run_id,))
        params = dict(cur.fetchall())
        cur.execute("SELECT value FROM tags UNION ALL SELECT value FROM registered_model_tags "
                    "UNION ALL SELECT value FROM model_version_tags")  # fmt: skip
        tag_values = [r[0] for r in cur.fetchall()]
    conn.close()
    assert not [k for k, v in params.items() if SECRET in v] and not [
        v for v in tag_values if SECRET in str(v)
    ]
    assert params["infra.s3_endpoint_url"] == "http://127.0.0.1:9"
    assert params["bootstrap.llm.arch.num_key_value_heads"] == "4"
    assert run_config.read_text().count("mlflow_tracking_uri: http://127.0.0.1:") == 1
