"""Given a backend that can run batches, when concurrent requests reach the server, then they are
answered by few run_batch calls, each request gets its own result, and a failed batch fails them all."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.serve.conftest import live
from vistrace.serve import RemoteTools
from vistrace.serve.app import create_app
from vistrace.serve.batching import BatchConfig, BatchingBackend
from vistrace.tools import Availability, Backend, Registry
from vistrace.tools.builtin import register_builtin
from vistrace.values import Box, Detections, Image


class Sizes(Backend):
    """TEST DOUBLE for ``detect``: one box as wide as the image; records each run_batch size."""

    tool, name, model, version = "detect", "sizes-test-double", "width box", "test"

    def __init__(self, fail: bool = False):
        self.batches: list[int] = []
        self.fail = fail

    def availability(self):
        return Availability(True, "test double")

    def _one(self, image, labels):
        return Detections([Box(0, 0, image.width, 1, label=labels[0], score=0.9)], query=labels[0])

    def run(self, image, labels, threshold=0.0, **_):
        self.batches.append(1)
        return self._one(image, labels)

    def run_batch(self, images, labels, threshold=0.0, **_):
        self.batches.append(len(images))
        if self.fail:
            raise RuntimeError("the batch broke")
        return [self._one(im, labels) for im in images]


def _images(n):
    from PIL import Image as PILImage

    return [Image(PILImage.new("RGB", (64 + 8 * i, 32), (i * 20, 0, 0))) for i in range(n)]


def _concurrently(url, images, query="cat"):
    results, errors = [None] * len(images), []

    def go(i):
        try:
            results[i] = RemoteTools(url).call("detect", {"image": images[i], "query": query})[0]
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results, errors


def _app(backend, **kw):
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(backend)
    return create_app(reg, cache=False, **kw)


def test_concurrent_requests_are_answered_in_batches_with_their_own_results():
    backend = Sizes()
    with live(_app(backend, batching=BatchConfig(max_batch=8, max_wait_ms=300))) as s:
        images = _images(8)
        results, errors = _concurrently(s.url, images)
        assert not errors
        # then each request got the answer for its own image
        assert [r[0].width for r in results] == [im.width for im in images]
        # and fewer backend calls than requests were made
        assert sum(backend.batches) == 8 and len(backend.batches) < 8 and max(backend.batches) > 1
        metrics = httpx.get(f"{s.url}/metrics").text
        assert 'vistrace_batch_size_count{backend="sizes-test-double"}' in metrics


def test_without_batching_every_request_is_one_call():
    backend = Sizes()
    with live(_app(backend)) as s:
        results, errors = _concurrently(s.url, _images(4))
        assert not errors and backend.batches == [1, 1, 1, 1]


def test_a_failed_batch_fails_every_request_in_it():
    with live(_app(Sizes(fail=True), batching=BatchConfig(max_batch=4, max_wait_ms=300))) as s:
        results, errors = _concurrently(s.url, _images(4))
        assert errors and all("the batch broke" in str(e) for e in errors)


def test_requests_with_different_arguments_are_not_batched_together():
    backend = Sizes()
    wrapped = BatchingBackend(backend, BatchConfig(max_batch=2, max_wait_ms=50))
    a, b = _images(2)
    out = {}
    t1 = threading.Thread(target=lambda: out.setdefault("a", wrapped.run(image=a, labels=["cat"])))
    t2 = threading.Thread(target=lambda: out.setdefault("b", wrapped.run(image=b, labels=["dog"])))
    t1.start(), t2.start(), t1.join(5), t2.join(5)
    assert out["a"][0].label == "cat" and out["b"][0].label == "dog"
    assert backend.batches == [1, 1]


@pytest.mark.parametrize("cfg", [BatchConfig(max_batch=1, max_wait_ms=0), BatchConfig(max_batch=4, max_wait_ms=1)])
def test_a_lone_request_is_not_held_back(cfg):
    backend = Sizes()
    wrapped = BatchingBackend(backend, cfg)
    assert wrapped.run(image=_images(1)[0], labels=["cat"])[0].label == "cat"
