"""Given ``vistrace serve --ray`` (a local Ray instance, one CPU replica per backend), when programs call
it over HTTP, then they answer as the in-process tools do; and ``eval --ray`` equals a single process.

The Ray settings (replicas, CPUs, GPU fraction per backend) come from ``[serve.ray]`` of the settings
file; their parsing is tested without Ray.
"""

from __future__ import annotations

import json

import pytest

import vistrace
from tests.conftest import shared
from tests.serve.conftest import TOKEN, live
from vistrace.errors import InputError, ToolArgumentError
from vistrace.serve import RemoteTools
from vistrace.serve.ray_serve import DeploymentOptions, RayConfig
from vistrace.values import Image

PROGRAM = "cats = detect(image, 'cat')\nresult = (cats.count, [round(b.cx) for b in cats])\n"


def _settings(tmp_path, monkeypatch, text: str) -> None:
    path = tmp_path / "vistrace.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("VISTRACE_CONFIG", str(path))


# settings ---------------------------------------------------------------------------------------------

def test_ray_settings_give_each_backend_its_replicas_and_gpu_fraction(tmp_path, monkeypatch):
    # given a settings file with defaults and one backend of its own
    _settings(tmp_path, monkeypatch, """
[serve.ray]
address = "auto"
[serve.ray.default]
num_cpus = 2
[serve.ray.backends.yolo]
replicas = 3
num_gpus = 0.5
""")
    # when read
    config = RayConfig.from_settings()
    # then the backend's table is laid over the defaults, and other backends get the defaults
    assert config.address == "auto"
    assert config.options_for("yolo") == DeploymentOptions(replicas=3, num_cpus=2.0, num_gpus=0.5)
    assert config.options_for("centernet") == DeploymentOptions(num_cpus=2.0)
    assert RayConfig.from_settings("ray://head:10001").address == "ray://head:10001"


def test_no_settings_file_means_a_local_instance_with_one_cpu_replica_each(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISTRACE_HOME", str(tmp_path))
    monkeypatch.delenv("VISTRACE_CONFIG", raising=False)
    config = RayConfig.from_settings()
    assert config.address is None and config.options_for("anything") == DeploymentOptions()


@pytest.mark.parametrize("text, message", [
    ("[serve.ray.backends.yolo]\nreplica = 2\n", "unknown key"),
    ("[serve.ray.backends.yolo]\nreplicas = 0\n", "at least 1"),
    ("[serve.ray.default]\nnum_gpus = 'half'\n", "expects a number"),
    ("[serve.ray]\nadress = 'auto'\n", "unknown key"),
    ("[serve]\nray = 3\n", "must be a table"),
])
def test_invalid_ray_settings_are_named(tmp_path, monkeypatch, text, message):
    _settings(tmp_path, monkeypatch, text)
    with pytest.raises(InputError, match=message):
        RayConfig.from_settings()


# a local Ray instance ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_server():
    """The detector's available backend deployed on a local Ray instance (one replica, one CPU)."""
    ray = pytest.importorskip("ray")
    from vistrace.serve.app import create_app
    from vistrace.serve.ray_serve import RayCluster

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024 * 1024)
    cluster = RayCluster(RayConfig())
    try:
        with live(create_app(token=TOKEN, cache=False, tools=["detect"], ray=cluster)) as s:
            yield s
    finally:
        cluster.shutdown()
        ray.shutdown()


@pytest.mark.slow
def test_a_program_runs_through_a_ray_replica_with_the_in_process_result(ray_server):
    # given the same program, in-process and against the Ray-backed server
    coco = Image.open(shared("coco_fixture/000000039769.png"))
    local = vistrace.run(PROGRAM, cache=False, image=coco)
    remote = vistrace.run(PROGRAM, registry=RemoteTools(ray_server.url, TOKEN).registry(), cache=False, image=coco)
    # then the results are equal and the step says the Ray deployment answered
    assert local.ok and remote.ok, (local.error, remote.error)
    assert remote.value == local.value
    step = remote.trace.steps[0]
    assert step.backend == "remote:centernet" and "ray deployment vistrace-detect-centernet" in step.reason


@pytest.mark.slow
def test_the_ray_server_reports_its_deployments_and_keeps_error_classes(ray_server):
    import httpx

    health = httpx.get(f"{ray_server.url}/healthz").json()
    assert health["ray"] == ["vistrace-detect-centernet"]
    tools = httpx.get(f"{ray_server.url}/v1/tools", headers={"Authorization": f"Bearer {TOKEN}"}).json()["tools"]
    backends = {b["backend"]: b for t in tools if t["name"] == "detect" for b in t["backends"]}
    assert backends["centernet"]["ray"] == {"application": "vistrace-detect-centernet"}
    coco = Image.open(shared("coco_fixture/000000039769.png"))
    with pytest.raises(ToolArgumentError, match="threshold"):
        RemoteTools(ray_server.url, TOKEN).call("detect", {"image": coco, "query": "cat", "threshold": "high"})


@pytest.mark.slow
def test_replicas_the_cluster_cannot_place_are_refused_before_deploying(ray_server):
    # given a cluster of 4 CPUs and a backend asking for 8
    from vistrace.serve.app import create_app
    from vistrace.serve.ray_serve import RayCluster

    greedy = RayCluster(RayConfig(default=DeploymentOptions(num_cpus=8)))
    # when the server is made, then it refuses, naming what is short and the fix
    with pytest.raises(InputError, match=r"need 8 CPU \(the cluster has 4\)") as err:
        create_app(token=TOKEN, cache=False, tools=["detect"], ray=greedy)
    assert "num_cpus" in err.value.hint and greedy.apps == []


@pytest.mark.slow
def test_eval_on_ray_actors_equals_one_process(tmp_path):
    import functools

    pytest.importorskip("ray")
    from vistrace.cli_eval import build_vpeval
    from vistrace.evaluate import run_eval

    kwargs = {"prompts": None, "images": str(shared("t2i_compbench/samples")), "judge": "vpeval", "vqa": False,
              "llm": None, "experts": None}
    one = run_eval(build_vpeval(**kwargs), tmp_path / "one", progress=False)
    two = run_eval(build_vpeval(**kwargs), tmp_path / "two", progress=False, workers=2, ray=True,
                   factory=functools.partial(build_vpeval, **kwargs))
    assert two.metrics == one.metrics and two.items == one.items == 4 and two.errors == 0
    for f in (tmp_path / "one" / "items").glob("*/result.json"):
        mine = json.loads(f.read_text())
        theirs = json.loads((tmp_path / "two" / "items" / f.parent.name / "result.json").read_text())
        assert [m["passed"] for m in mine["modules"]] == [m["passed"] for m in theirs["modules"]]
