"""infra/ agrees with the code: env var names, ports, pools, entrypoints and modules it names."""

import importlib
import json
import re
from pathlib import Path

import yaml

from xib.config import load_config

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"


def _compose():
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


def _env_names_read_by_cluster_conf() -> set[str]:
    text = (REPO / "conf/infra/cluster.yaml").read_text()
    return set(re.findall(r"oc\.env:([A-Z0-9_]+)", text))


def test_compose_sets_every_env_var_the_cluster_config_reads(monkeypatch):
    worker_env = _compose()["services"]["worker"]["environment"]
    missing = _env_names_read_by_cluster_conf() - set(worker_env)
    assert not missing, f"compose worker lacks {missing}"
    # and the cluster config resolves to the compose services with that environment
    for name, value in worker_env.items():
        if isinstance(value, str) and "${" not in value:
            monkeypatch.setenv(name, value)
    cfg = load_config(["infra=cluster"])
    assert cfg.infra.mlflow_tracking_uri == "http://mlflow:5000"
    assert cfg.infra.prefect_api_url == "http://prefect-server:4200/api"
    assert cfg.infra.s3_endpoint_url == "http://minio:9000"


def test_ports_in_urls_match_the_services_that_serve_them():
    services = _compose()["services"]
    env = services["worker"]["environment"]
    published = {name: {int(p.split(":")[1]) for p in svc.get("ports", [])} for name, svc in services.items()}
    for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL"):
        host, port = re.match(r"http://([\w-]+):(\d+)", env[key]).groups()
        assert host in services, f"{key} names unknown service {host}"
        assert int(port) in published[host], f"{key} port {port} not served by {host}"
    assert "--port 4200" in services["prefect-server"]["command"]
    assert services["mlflow"]["environment"]["MLFLOW_PORT"] == "5000"


def test_no_secret_is_committed_in_infra():
    for path in INFRA.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for key in ("PASSWORD", "SECRET_ACCESS_KEY", "SECRET_KEY"):
                for match in re.finditer(rf"{key}[\"']?\s*[:=]\s*[\"']?([^\s\"'}}]+)", text):
                    value = match.group(1)
                    assert value.startswith(("$", "?")), f"{path}: literal {key}: {value}"


def test_mlflow_server_has_authentication_and_postgres_and_s3():
    script = (INFRA / "mlflow-serve.sh").read_text()
    assert "--app-name basic-auth" in script
    assert "postgresql://" in script and "s3://" in script
    assert (
        "prefect"
        in _compose()["services"]["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    )


def test_prefect_yaml_deployments_point_at_real_flows_and_pools():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    names = {d["name"] for d in spec["deployments"]}
    assert {"nightly-data", "weekly-retrain"} <= names
    for deployment in spec["deployments"]:
        module_path, func = deployment["entrypoint"].split(":")
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        assert hasattr(getattr(module, func), "fn"), f"{func} is not a Prefect flow"
        assert deployment["schedules"][0]["cron"].count(" ") == 4
    pools = {d["work_pool"]["name"] for d in spec["deployments"]}
    assert "xib-process" in pools
    worker = yaml.safe_load_all((INFRA / "k8s/worker.yaml").read_text())
    args = next(doc for doc in worker if doc["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert "xib-k8s" in args["containers"][0]["command"] and "xib-k8s" in pools


def test_gpu_job_template_requests_gpus_and_reads_secrets():
    template = json.loads((INFRA / "k8s/gpu-job-template.json").read_text())
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" in container["resources"]["limits"]
    assert container["envFrom"][0]["secretRef"]["name"] == "xib-secrets"
    assert "gpus" in template["variables"]["properties"]


def test_multinode_job_runs_a_module_that_exists():
    docs = list(yaml.safe_load_all((INFRA / "k8s/deepspeed-multinode.yaml").read_text()))
    job = next(d for d in docs if d["kind"] == "Job")
    command = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    module = re.search(r"-m ([\w.]+)", command).group(1)
    assert importlib.util.find_spec(module) is not None, module
