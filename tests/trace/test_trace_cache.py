from __future__ import annotations

import os
import threading

from PIL import Image as PILImage

from vistrace.trace import ResultCache
from vistrace.values import Box, Detections, Image


def test_given_detections_when_put_then_get_returns_an_equal_value(tmp_path, photo):
    cache = ResultCache(tmp_path)
    key = cache.key("detect", "owlvit", "rev-abc", {"image": photo, "object": "face"})
    dets = Detections([Box(1, 2, 30, 40, "face", 0.9)], "face", photo.size)
    assert cache.get(key) == (False, None)
    assert cache.put(key, dets)
    hit, value = cache.get(key)
    assert hit and value == dets and value.image_size == photo.size and value.query == "face"
    assert (tmp_path / key[:2] / key).is_file()


def test_given_an_image_when_put_then_pixels_and_provenance_survive(tmp_path, photo):
    cache = ResultCache(tmp_path)
    crop = photo.crop(Box(100, 100, 300, 260), out_size=(400, 320))
    key = cache.key("crop", "pil", "1", {"image": photo, "box": Box(100, 100, 300, 260)})
    assert cache.put(key, crop)
    hit, value = ResultCache(tmp_path).get(key)               # a fresh cache object: read from disk
    assert hit and value == crop
    assert value.sha256 == crop.sha256 and value.offset == crop.offset and value.scale == crop.scale
    assert value.pil.tobytes() == crop.pil.tobytes()


def test_given_same_args_with_another_image_when_keyed_then_keys_differ(photo):
    flipped = Image(photo.pil.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT), source=photo.source)
    args = {"object": "face"}
    k1 = ResultCache.key("detect", "owlvit", "v1", {**args, "image": photo})
    k2 = ResultCache.key("detect", "owlvit", "v1", {**args, "image": flipped})
    assert k1 != k2
    # the same pixels from another file name hash the same; arg order does not matter
    same = Image(photo.pil.copy(), source="elsewhere.png")
    assert k1 == ResultCache.key("detect", "owlvit", "v1", {"image": same, "object": "face"})
    # backend, version and tool all matter
    assert k1 != ResultCache.key("detect", "yolo", "v1", {**args, "image": photo})
    assert k1 != ResultCache.key("detect", "owlvit", "v2", {**args, "image": photo})
    assert k1 != ResultCache.key("segment", "owlvit", "v1", {**args, "image": photo})
    # a crop differs from its root (provenance is part of the key)
    assert k1 != ResultCache.key("detect", "owlvit", "v1", {**args, "image": photo.crop(Box(0, 0, 600, 500))})


def test_given_a_corrupt_entry_when_read_then_it_misses_and_is_removed(tmp_path):
    cache = ResultCache(tmp_path)
    key = cache.key("count", "python", "1", {"n": 3})
    assert cache.put(key, [1, 2, 3])
    path = cache.path(key)
    path.write_bytes(path.read_bytes()[:20])                  # truncated
    assert cache.get(key) == (False, None)
    assert not path.exists()
    path.write_bytes(b"not a zip at all")
    assert cache.get(key) == (False, None)
    assert cache.put(key, [1, 2, 3]) and cache.get(key) == (True, [1, 2, 3])


def test_given_a_value_the_codec_cannot_encode_when_put_then_nothing_is_stored(tmp_path):
    cache = ResultCache(tmp_path)
    key = cache.key("odd", "x", "1", {})
    assert cache.put(key, object()) is False
    assert cache.get(key) == (False, None)
    assert cache.entries() == []


def test_given_concurrent_writers_when_putting_then_temp_names_are_unique_and_nothing_is_left(tmp_path, monkeypatch):
    cache = ResultCache(tmp_path)
    key = cache.key("detect", "owlvit", "1", {"object": "dog"})
    sources: list[str] = []
    real_replace = os.replace

    def spy(src, dst):
        sources.append(str(src))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    values = [Detections([Box(i, i, i + 10, i + 10, "dog", 0.5)], "dog") for i in range(16)]
    barrier = threading.Barrier(len(values))

    def write(v):
        barrier.wait()
        assert cache.put(key, v)

    threads = [threading.Thread(target=write, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sources) == len(values) == len(set(sources))
    assert all(os.path.dirname(s) == str(cache.path(key).parent) for s in sources)
    assert sorted(p.name for p in cache.path(key).parent.iterdir()) == [key]   # no temp files left
    hit, value = cache.get(key)
    assert hit and value in values


def test_given_a_bad_key_when_used_then_it_is_refused(tmp_path):
    import pytest

    with pytest.raises(ValueError):
        ResultCache(tmp_path).get("../../etc/passwd")


def test_given_entries_when_cleared_then_the_cache_is_empty(tmp_path):
    cache = ResultCache(tmp_path)
    for i in range(3):
        cache.put(cache.key("t", "b", "1", {"i": i}), i)
    assert len(cache.entries()) == 3 and cache.size_bytes() > 0
    assert cache.clear() == 3 and cache.entries() == []


def test_given_vistrace_home_when_no_root_then_the_default_folder_is_used_lazily(tmp_path, monkeypatch):
    monkeypatch.setenv("VISTRACE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VISTRACE_CACHE_DIR", raising=False)
    cache = ResultCache()
    assert cache.root == tmp_path / "home" / "cache" / "results"
    assert not (tmp_path / "home").exists()                   # created on first write only
    cache.put(cache.key("t", "b", "1", {}), "x")
    assert cache.root.is_dir()
