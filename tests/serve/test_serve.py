"""Given a real expert server on loopback, when programs and clients call it, then results equal the
in-process run and every bad request gets the status and message that names the problem."""

from __future__ import annotations

import json

import httpx
import pytest

import vistrace
from tests.conftest import shared
from tests.serve.conftest import TOKEN, live
from vistrace.errors import BackendUnavailable, InputError, ToolArgumentError
from vistrace.serve import RemoteTools
from vistrace.serve.app import ServeLimits, check_bind, create_app
from vistrace.values import Image

PROGRAM = """cats = detect(image, 'cat')
text = ocr(crop(image, cats.best()))
result = (cats.count, [round(b.cx) for b in cats], spatial(cats[0], cats[1], 'left of') or spatial(cats[1], cats[0], 'left of'))
"""


@pytest.fixture(scope="module")
def coco():
    return Image.open(shared("coco_fixture/000000039769.png"))


def _h():
    return {"Authorization": f"Bearer {TOKEN}"}


def test_a_program_runs_unchanged_remotely_with_the_same_result(server, coco):
    # given the same program, run in-process and against the server
    local = vistrace.run(PROGRAM, cache=False, image=coco)
    remote = vistrace.run(PROGRAM, registry=RemoteTools(server.url, TOKEN).registry(), cache=False, image=coco)
    # then the results are equal and the trace says the experts answered remotely
    assert local.ok and remote.ok, (local.error, remote.error)
    assert remote.value == local.value
    step = remote.trace.steps[0]
    assert step.backend == "remote:centernet" and f"remote expert at {server.url}" in step.reason
    assert remote.trace.steps[1].tool == "crop" and remote.trace.steps[1].backend == "builtin"


def test_vpeval_modules_call_the_remote_detector(server):
    dogs = Image.open(shared("vpeval/examples/dogs.jpg"))
    reg = RemoteTools(server.url, TOKEN).registry()
    run = vistrace.run("objectEval(image, 'dog');countEval(objDet(image, 'dog'), '==10')", registry=reg,
                       cache=False, image=dogs)
    assert run.value["score"] == 0.5
    assert "remote:centernet" in run.trace.steps[0].backend


def test_each_image_is_uploaded_once(server, coco):
    client = RemoteTools(server.url, TOKEN)
    client.call("detect", {"image": coco, "query": "cat"})
    client.call("detect", {"image": coco, "query": "remote"})
    assert len(client._uploaded) == 1
    metrics = httpx.get(f"{server.url}/metrics", headers=_h()).text
    assert "vistrace_image_uploads_total" in metrics and 'vistrace_requests_total{status="200",tool="detect"}' in metrics


def test_missing_or_wrong_token_is_401(server):
    assert httpx.get(f"{server.url}/v1/tools").status_code == 401
    assert httpx.get(f"{server.url}/v1/tools", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.get(f"{server.url}/healthz").json()["ok"] is True


def test_unknown_tool_is_404_with_the_list(server):
    r = httpx.post(f"{server.url}/v1/tools/objDetect", headers=_h(), json={"args": {}})
    assert r.status_code == 404
    assert "detect" in r.json()["error"]["tools"]


def test_invalid_arguments_are_422_naming_the_argument(server, coco):
    client = RemoteTools(server.url, TOKEN)
    with pytest.raises(ToolArgumentError, match="threshold"):
        client.call("detect", {"image": coco, "query": "cat", "threshold": "high"})
    r = httpx.post(f"{server.url}/v1/tools/count", headers=_h(),
                   json={"args": {"tree": {"$dict": [["objects", 3]]}, "blobs": {}}})
    assert r.status_code == 422 and "objects" in r.json()["error"]["message"]


def test_a_backend_that_is_missing_here_is_424_with_the_fix(server, coco):
    client = RemoteTools(server.url, TOKEN)
    with pytest.raises(BackendUnavailable, match="depth"):
        client.call("depth", {"image": coco})


@pytest.mark.parametrize("data, status, kind", [
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 400, "CorruptImage"),
    (b"GIF89a not an image we take", 400, "CorruptImage"),
])
def test_corrupt_images_are_400(server, data, status, kind):
    r = httpx.post(f"{server.url}/v1/images", headers=_h(), content=data)
    assert r.status_code == status and r.json()["error"]["type"] == kind


def test_a_reference_to_an_image_never_uploaded_is_400(server):
    body = {"args": {"tree": {"$dict": [["image", {"$value": {"type": "Image", "png": "b0.png", "source": "",
                                                               "offset": [0, 0], "scale": [1, 1], "root_size": [4, 4]}}],
                                        ["query", "cat"]]},
                     "blobs": {"b0.png": {"sha256": "0" * 64}}}}
    r = httpx.post(f"{server.url}/v1/tools/detect", headers=_h(), json=body)
    assert r.status_code == 400 and "was not uploaded" in r.json()["error"]["message"]


def test_oversize_bodies_and_images_are_413():
    from PIL import Image as PILImage
    import io

    app = create_app(token=None, cache=False, limits=ServeLimits(max_body_bytes=50_000, max_pixels=10_000))
    with live(app) as s:
        r = httpx.post(f"{s.url}/v1/images", content=b"\x89PNG\r\n\x1a\n" + b"0" * 60_000)
        assert r.status_code == 413 and r.json()["error"]["type"] == "BodyTooLarge"
        buf = io.BytesIO()
        PILImage.new("RGB", (200, 200)).save(buf, format="PNG")
        r = httpx.post(f"{s.url}/v1/images", content=buf.getvalue())
        assert r.status_code == 413 and "200x200" in r.json()["error"]["message"]


def test_a_slow_tool_is_504_after_the_timeout(coco):
    from vistrace.tools import Availability, Backend, Registry
    from vistrace.tools.builtin import register_builtin

    class Slow(Backend):
        tool, name, model, version = "caption", "slow-test-double", "sleep", "test"

        def availability(self):
            return Availability(True, "test double")

        def run(self, image, **_):
            import time

            time.sleep(2)
            return "late"

    reg = Registry()
    register_builtin(reg)
    reg.add_backend(Slow())
    with live(create_app(reg, cache=False, limits=ServeLimits(timeout_s=0.3))) as s:
        from vistrace.serve.client import RemoteError

        with pytest.raises(RemoteError, match="504.*0.3 s"):
            RemoteTools(s.url).call("caption", {"image": coco})


def test_too_many_requests_in_flight_are_429_and_the_client_retries(coco):
    import threading

    from vistrace.tools import Availability, Backend, Registry
    from vistrace.tools.builtin import register_builtin

    gate = threading.Event()

    class Held(Backend):
        tool, name, model, version = "caption", "held-test-double", "gate", "test"

        def availability(self):
            return Availability(True, "test double")

        def run(self, image, **_):
            gate.wait(5)
            return "done"

    reg = Registry()
    register_builtin(reg)
    reg.add_backend(Held())
    with live(create_app(reg, cache=False, limits=ServeLimits(max_inflight=1))) as s:
        client = RemoteTools(s.url)
        client.upload  # the image upload happens in the first call
        first = threading.Thread(target=lambda: client.call("caption", {"image": coco}))
        first.start()
        import time

        deadline = time.monotonic() + 5
        while "vistrace_inflight_requests 1.0" not in httpx.get(f"{s.url}/metrics").text:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        payload_client = RemoteTools(s.url, retries=0)
        payload_client._uploaded = set(client._uploaded)
        from vistrace.serve.wire import pack

        payload, _ = pack({"image": coco}, payload_client._uploaded)
        r = httpx.post(f"{s.url}/v1/tools/caption", json={"args": payload})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        gate.set()
        first.join(10)
        # with retries the client waits for Retry-After and gets its answer
        assert RemoteTools(s.url, retries=3).call("caption", {"image": coco})[0] == "done"


def test_binding_beyond_loopback_needs_a_token():
    check_bind("127.0.0.1", None)
    with pytest.raises(InputError, match="needs a token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "t")


def test_tools_listing_has_the_schemas(server):
    tools = RemoteTools(server.url, TOKEN).tools()
    detect = next(t for t in tools if t["name"] == "detect")
    assert detect["expert"] and detect["schema"]["parameters"]["properties"]["query"]
    json.dumps(tools)


def test_cli_run_with_experts_url(server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vistrace.cli import app

    monkeypatch.setenv("VISTRACE_EXPERTS_TOKEN", TOKEN)
    prog = tmp_path / "p.vp"
    prog.write_text("result = detect(image, 'cat').count\n")
    res = CliRunner().invoke(app, ["run", str(prog), "--image", str(shared("coco_fixture/000000039769.png")),
                                   "--experts", server.url, "--out", str(tmp_path / "r"), "--no-cache"])
    assert res.exit_code == 0, res.output
    trace = json.loads((tmp_path / "r" / "trace.json").read_text())
    assert trace["result"] == 2 and trace["steps"][0]["backend"] == "remote:centernet"


def test_bad_experts_url_is_rejected():
    with pytest.raises(InputError, match="http"):
        RemoteTools("gpu-box:8765")


def test_cli_eval_with_experts_url(server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vistrace.cli import app

    monkeypatch.setenv("VISTRACE_EXPERTS_TOKEN", TOKEN)
    prompts = tmp_path / "dogs.json"
    prompts.write_text(json.dumps([{"id": "dogs", "prompt": "an image of ten dogs", "image": "dogs.jpg"}]))
    res = CliRunner().invoke(app, ["eval", "vpeval", "--prompts", str(prompts), "--images",
                                   str(shared("vpeval/examples/dogs.jpg").parent), "--out", str(tmp_path / "out"),
                                   "--experts", server.url, "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["metrics"]["score"] == 0.5
    trace = json.loads((tmp_path / "out" / "items" / "dogs" / "trace" / "trace.json").read_text())
    assert trace["steps"][0]["backend"].startswith("remote:")


def test_the_serve_command_starts_and_answers(tmp_path):
    import subprocess
    import sys
    import time

    from tests.serve.conftest import _free_port

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vistrace", "serve", "--port", str(port), "--tools", "detect",
                             "--tools", "ocr"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "vistrace serve did not start"
                time.sleep(0.2)
        assert health["ok"] and health["tools"] == 2
        assert [t["name"] for t in RemoteTools(f"http://127.0.0.1:{port}").tools()] == ["detect", "ocr"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_serve_command_refuses_a_public_address_without_a_token():
    from typer.testing import CliRunner

    from vistrace.cli import app

    res = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert res.exit_code == 2 and "needs a token" in res.output


def test_a_small_inline_image_declaring_huge_dimensions_is_413():
    import base64
    import io
    import zlib

    from PIL import Image as PILImage

    # a tiny PNG whose header says 20000 x 20000 (a decompression bomb), sent inline
    buf = io.BytesIO()
    PILImage.new("1", (20000, 20000)).save(buf, format="PNG", optimize=True)
    data = buf.getvalue()
    assert len(data) < 100_000 and zlib  # small on the wire
    app = create_app(token=None, cache=False, limits=ServeLimits(max_pixels=1_000_000))
    body = {"args": {"tree": {"$dict": [["image", {"$value": {"type": "Image", "png": "b0.png", "source": "",
                                                               "offset": [0, 0], "scale": [1, 1],
                                                               "root_size": [20000, 20000]}}], ["query", "cat"]]},
                     "blobs": {"b0.png": {"b64": base64.b64encode(data).decode()}}}}
    with live(app) as s:
        r = httpx.post(f"{s.url}/v1/tools/detect", json=body)
        assert r.status_code == 413 and r.json()["error"]["type"] == "ImageTooLarge"


def test_the_client_uploads_again_after_a_server_restart(coco):
    app1 = create_app(token=None, cache=False)
    with live(app1) as s:
        client = RemoteTools(s.url)
        client.call("detect", {"image": coco, "query": "cat"})
        url = s.url
    # a new server on another port knows none of the uploads; point the client at it
    with live(create_app(token=None, cache=False)) as s2:
        client.url = s2.url
        client.close()
        value, _ = client.call("detect", {"image": coco, "query": "cat"})
        assert len(value) == 2 and url != s2.url


def test_an_image_whose_pixels_are_not_png_is_400(server):
    # given an Image value whose pixel blob is a GIF sent inline (the codec only ever writes PNG)
    import base64
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("P", (64, 64)).save(buf, format="GIF")
    body = {"args": {"tree": {"$dict": [["image", {"$value": {"type": "Image", "png": "b0.png", "source": "",
                                                               "offset": [0, 0], "scale": [1, 1], "root_size": [64, 64]}}],
                                        ["query", "cat"]]},
                     "blobs": {"b0.png": {"b64": base64.b64encode(buf.getvalue()).decode()}}}}
    # when it is sent, then it is refused before any decoder but PNG's sees it
    r = httpx.post(f"{server.url}/v1/tools/detect", headers=_h(), json=body)
    assert r.status_code == 400 and "must be a PNG blob" in r.json()["error"]["message"]
