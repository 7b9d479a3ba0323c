"""Given ultralytics checkpoints the user saved (here: the real YOLO11n and YOLO11n-seg architectures
built from ultralytics' own yaml files, random weights, COCO class names, written with ``model.save``),
when ``detect`` and ``segment`` run through the registry, then the boxes and masks are what ultralytics'
own ``YOLO(path).predict`` gives for the same input (mapped to root pixels for crops, labelled with the
query word), a batch equals one image at a time in one forward pass, labels outside the checkpoint's
vocabulary are refused with the list it knows, the instance mask that matches a box / point / rough
mask is chosen, and unset, missing or unfit weights are a clear BackendUnavailable. Nothing touches the
network: every test runs with DNS and sockets blocked.

Random-init YOLO activations vanish with depth (eval-mode BatchNorm with unit running variance), so the
fixture recalibrates the BatchNorm statistics on the two example images and gives the head's last
convolutions unit-variance logits; a class bias of -4 then yields tens of boxes at conf 0.3 on
chelsea and its crops, with distinct scores. (The same network saturates on the astronaut, every score
1.0: random nets amplify the images' global differences. So the astronaut only calibrates.)
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import numpy as np
import pytest

from vistrace.errors import BackendUnavailable, ToolError
from vistrace.tools import Registry
from vistrace.tools.adapters import yolo
from vistrace.tools.builtin import register_builtin
from vistrace.tools.experts.centernet import LABELS
from vistrace.values import Box, Image, Mask


pytestmark = pytest.mark.usefixtures("one_thread")

torch = pytest.importorskip("torch")
yolo.ultralytics_offline()  # import ultralytics the backend's way: offline, PIL.Image.open left as PIL's

IMAGES = Path(__file__).resolve().parents[3] / "examples" / "images"
IMGSZ = 320            # smaller than the default 640, for CPU time
CROP = Box(90, 40, 400, 290)
SEG_CONF = 0.3


class NetworkUsed(AssertionError):
    pass


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """DNS and socket connections fail (and are recorded) for the whole module, fixtures included."""
    calls: list[str] = []

    def blocked(kind):
        def fail(*args, **kwargs):
            calls.append(f"{kind} {args[:2]!r}")
            raise OSError(f"network blocked in tests: {kind}")
        return fail

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", blocked("getaddrinfo"))
        mp.setattr(socket.socket, "connect", blocked("connect"))
        mp.setattr(socket.socket, "connect_ex", blocked("connect_ex"))
        yield calls
    assert not calls, f"ultralytics tried the network: {calls}"


@pytest.fixture(scope="module")
def images() -> dict[str, Image]:
    return {n: Image.open(IMAGES / f"{n}.jpg") for n in ("chelsea", "astronaut")}


def random_yolo(cfg: str, class_bias: float, images: dict[str, Image]):
    """A random-weight YOLO from a packaged yaml, conditioned so that it predicts varied boxes."""
    yolo.ultralytics_offline()
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO(cfg)
    net = model.model
    head = net.model[-1]
    last = [seq[-1] for seq in list(head.cv2) + list(head.cv3) + list(getattr(head, "cv4", []))]
    for conv in last:  # the features reaching them have std ~0.15 after recalibration
        torch.nn.init.normal_(conv.weight, 0.0, 6.5 / conv.in_channels ** 0.5)
    for seq in head.cv3:
        torch.nn.init.constant_(seq[-1].bias, class_bias)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
    batch = torch.stack([torch.from_numpy(np.array(im.pil.convert("RGB").resize((IMGSZ, IMGSZ)))).permute(2, 0, 1)
                         for im in images.values()]).float() / 255
    net.train()
    with torch.no_grad():
        net(batch)
    net.eval()
    net.names = dict(enumerate(LABELS))  # the COCO-80 names, in ultralytics' coco.yaml order
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, images) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("yolo")
    paths = {"detect": folder / "yolo11n-random.pt", "segment": folder / "yolo11n-seg-random.pt"}
    random_yolo("yolo11n.yaml", -4.0, images).save(paths["detect"])
    random_yolo("yolo11n-seg.yaml", -4.0, images).save(paths["segment"])
    return paths


@pytest.fixture(scope="module")
def reference(checkpoints):
    """ultralytics on its own: fresh YOLO(path) models, predicting with the backend's settings."""
    from ultralytics import YOLO

    det, seg = YOLO(str(checkpoints["detect"])), YOLO(str(checkpoints["segment"]))
    common = {"imgsz": IMGSZ, "rect": False, "verbose": False, "device": "cpu"}

    def predict(kind: str, image: Image, conf: float, **kw):
        model = det if kind == "detect" else seg
        return model.predict(image.pil.convert("RGB"), conf=conf, **common, **kw)[0]

    return predict


@pytest.fixture
def configured(monkeypatch, tmp_path, checkpoints):
    monkeypatch.chdir(tmp_path)  # no ./vistrace.toml
    monkeypatch.setenv("VISTRACE_HOME", str(tmp_path))
    monkeypatch.delenv("VISTRACE_CONFIG", raising=False)
    for table in ("YOLO", "YOLO_SEG"):
        monkeypatch.setenv(f"VISTRACE_{table}_IMGSZ", str(IMGSZ))
        monkeypatch.setenv(f"VISTRACE_{table}_DEVICE", "cpu")
    monkeypatch.setenv("VISTRACE_YOLO_WEIGHTS", str(checkpoints["detect"]))
    monkeypatch.setenv("VISTRACE_YOLO_SEG_WEIGHTS", str(checkpoints["segment"]))
    monkeypatch.setenv("VISTRACE_YOLO_SEG_CONF", str(SEG_CONF))
    return checkpoints


@pytest.fixture
def registry(configured) -> Registry:
    reg = Registry()
    register_builtin(reg)
    for b in yolo.backends():
        reg.add_backend(b)
    return reg


def boxes_of(res, classes: dict[int, str], offset=(0.0, 0.0)) -> list[tuple]:
    """(label, score, x1, y1, x2, y2) of ultralytics Results boxes of these classes, best first."""
    out = []
    for b, s, c in zip(res.boxes.xyxy.tolist(), res.boxes.conf.tolist(), res.boxes.cls.int().tolist()):
        if c in classes:
            out.append((classes[c], s, b[0] + offset[0], b[1] + offset[1], b[2] + offset[0], b[3] + offset[1]))
    return sorted(out, key=lambda t: -t[1])


def as_tuples(dets) -> list[tuple]:
    return sorted(((b.label, b.score, *b.xyxy) for b in dets), key=lambda t: -t[1])


def assert_same(ours: list[tuple], theirs: list[tuple], tol: float = 1e-3) -> None:
    assert [t[0] for t in ours] == [t[0] for t in theirs]
    np.testing.assert_allclose(np.array([t[1:] for t in ours]), np.array([t[1:] for t in theirs]), atol=tol)


def top_classes(res, k: int = 2) -> list[int]:
    cls, counts = np.unique(res.boxes.cls.int().numpy(), return_counts=True)
    return [int(c) for c in cls[np.argsort(-counts)][:k]]


# detection --------------------------------------------------------------------------------------
def test_detect_equals_ultralytics_results_labelled_with_the_query_words(registry, reference, images):
    """Given the random COCO checkpoint, when detect asks for its two most frequent classes in other
    spellings (upper case; 'the' + plural), then the boxes and scores are ultralytics' own for those
    classes, labelled with the words asked, best first."""
    ref = reference("detect", images["chelsea"], 0.3)
    c0, c1 = top_classes(ref)
    q0, q1 = LABELS[c0].upper(), "the " + LABELS[c1] + ("" if LABELS[c1].endswith("s") else "s")
    dets = registry.get("detect")(registry, image=images["chelsea"], query=f"{q0},{q1}", threshold=0.3)
    assert len(dets) >= 2 and dets.query == f"{q0},{q1}"
    assert [b.score for b in dets] == sorted((b.score for b in dets), reverse=True)
    assert all(0.3 <= b.score <= 1 for b in dets)
    assert_same(as_tuples(dets), boxes_of(ref, {c0: q0, c1: q1}))


def test_detect_on_a_crop_gives_root_pixels(registry, reference, images):
    """Given a non-square crop of chelsea, when detect runs on it, then each box is ultralytics' box
    on the cropped pixels shifted by the crop's offset (root pixels)."""
    crop = images["chelsea"].crop(CROP)
    ref = reference("detect", crop, 0.3)
    c0 = top_classes(ref, 1)[0]
    dets = registry.get("detect")(registry, image=crop, query=LABELS[c0], threshold=0.3)
    assert len(dets) and dets.image_size == images["chelsea"].size
    assert_same(as_tuples(dets), boxes_of(ref, {c0: LABELS[c0]}, offset=crop.offset))


def test_a_threshold_is_the_library_conf(registry, images):
    """Given threshold 0.5 and 0.3, when detect runs, then the 0.5 boxes are exactly the 0.3 boxes
    scoring at least 0.5 (the library's NMS at conf=threshold loses nothing); no threshold means 0.25."""
    detect = registry.get("detect")
    query = ",".join(LABELS)
    low = detect(registry, image=images["chelsea"], query=query, threshold=0.3)
    high = detect(registry, image=images["chelsea"], query=query, threshold=0.5)
    assert len(high) < len(low)
    assert_same(as_tuples(high), [t for t in as_tuples(low) if t[1] >= 0.5])
    default = detect(registry, image=images["chelsea"], query=query)  # threshold 0: the conf setting, 0.25
    assert len(default) > len(low) and min(b.score for b in default) >= 0.25


def test_a_batch_is_one_forward_pass_equal_to_one_at_a_time(configured, images):
    """Given two images of different sizes, when run_batch detects in both, then the model runs once
    on a batch of 2 and each result equals the one-image result."""
    backend = yolo.YoloDetectBackend()
    labels = list(LABELS)
    two = [images["chelsea"], images["chelsea"].crop(Box(100, 0, 451, 200))]
    singles = [backend.run(image=im, labels=labels, threshold=0.3) for im in two]
    shapes: list[tuple] = []
    first_layer = backend.loaded().yolo.predictor.model.model.model[0]  # the predictor's own (fused) copy
    hook = first_layer.register_forward_pre_hook(lambda m, a: shapes.append(tuple(a[0].shape)))
    try:
        batch = backend.run_batch(two, labels=labels, threshold=0.3)
    finally:
        hook.remove()
    assert shapes == [(2, 3, IMGSZ, IMGSZ)]
    for one, both, im in zip(singles, batch, two):
        assert len(one) and both.image_size == im.size
        assert_same(as_tuples(both), as_tuples(one))


@pytest.mark.parametrize("query, missing", [("unicorn", "'unicorn'"), ("cat,spaceship", "'spaceship'"),
                                            ("zebra crossing", "'zebra crossing'")])
def test_labels_outside_the_vocabulary_are_refused_with_the_known_names(registry, images, query, missing):
    """Given labels the COCO checkpoint lacks, when detect runs, then no backend can answer and the
    reason names the label and lists the classes the checkpoint knows."""
    with pytest.raises(BackendUnavailable, match="knows only its 80 classes") as err:
        registry.get("detect")(registry, image=images["chelsea"], query=query)
    assert missing in err.value.message and "person, bicycle, car" in err.value.message


@pytest.mark.parametrize("query, name", [("Cats", "cat"), ("the dogs", "dog"), ("puppies", "dog"), ("sofa", "couch"),
                                         ("Hot-Dog", "hot dog"), ("television", "tv"), ("buses", "bus")])
def test_query_words_fold_to_the_checkpoint_names(configured, query, name):
    """Given query words in other cases, plurals, with articles or COCO synonyms, when the backend
    checks them, then each maps to the checkpoint's class."""
    backend = yolo.YoloDetectBackend()
    ok, why = backend.suits({"labels": [query]})
    index = yolo.class_index(backend.loaded().names)
    assert ok, why
    assert LABELS[yolo.match_class(query, index)] == name


def test_voc_spellings_in_a_checkpoint_answer_coco_words():
    """Given a checkpoint that spells classes the VOC way, when COCO words are asked, then they match."""
    index = yolo.class_index({0: "aeroplane", 1: "tvmonitor", 2: "pottedplant", 3: "Hard_Hat"})
    assert [yolo.match_class(q, index) for q in ("airplanes", "TV", "plant", "hard hats", "car")] == [0, 1, 2, 3, None]


def test_the_trace_names_the_backend_and_the_checkpoint(registry, images):
    """Given the configured backend, when detect is invoked, then the trace info names yolo, the
    weights and their fingerprint, and why it was chosen."""
    _, info = registry.get("detect").invoke({"image": images["chelsea"], "query": "cat", "threshold": 0.9})
    assert info["backend"] == "yolo" and "yolo11n-random.pt" in info["model"]
    assert len(info["version"]) == 12 and "80 classes" in info["reason"]


# segmentation -----------------------------------------------------------------------------------
def test_retina_masks_match_ultralytics_scaled_masks(reference, images):
    """Given the seg checkpoint on a non-square crop, when ultralytics predicts retina masks (what the
    backend uses) and letterbox-grid masks, then the retina masks cover the image grid and agree with
    the letterbox masks of the same boxes scaled back by ultralytics' scale_masks: aligned (no 1-pixel
    shift fits better) and equal up to resampling (measured IoU 0.73-1.0, mean 0.84, on these noisy
    random-weight masks)."""
    from ultralytics.utils import ops

    crop = images["chelsea"].crop(CROP)
    retina = reference("segment", crop, SEG_CONF, retina_masks=True)
    grid = reference("segment", crop, SEG_CONF, retina_masks=False)
    assert len(retina.masks) >= 2 and tuple(retina.masks.data.shape[1:]) == (crop.height, crop.width)
    scaled = ops.scale_masks(grid.masks.data[None].float(), (crop.height, crop.width))[0] > 0.5

    def iou(a, b):
        return float((a & b).sum() / (a | b).sum())

    ious = []
    for k, b in enumerate(retina.boxes.xyxy):
        same = torch.nonzero((grid.boxes.xyxy - b).abs().amax(1) < 1e-3).flatten()
        if len(same) == 1:  # the same detection (the two paths drop different empty masks)
            a, g = retina.masks.data[k].bool(), scaled[int(same[0])]
            if int(a.sum()) > 500:
                shifts = {(dx, dy): iou(a, torch.roll(g, (dy, dx), (0, 1))) for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
                assert max(shifts, key=shifts.get) == (0, 0)
                ious.append(shifts[(0, 0)])
    assert len(ious) >= 5 and min(ious) > 0.7 and sum(ious) / len(ious) > 0.8, ious


def test_segment_by_box_returns_that_instance_over_the_image_grid(registry, reference, images):
    """Given the box of an instance ultralytics finds, when segment runs with it, then the mask is that
    instance's retina mask, over the image's grid, labelled with its class and scored."""
    image = images["chelsea"]
    ref = reference("segment", image, SEG_CONF, retina_masks=True)
    k = 1
    target = Box(*ref.boxes.xyxy[k].tolist())
    mask = registry.get("segment")(registry, image=image, box=target)
    assert isinstance(mask, Mask) and (mask.width, mask.height) == image.size
    assert np.array_equal(mask.array, ref.masks.data[k].bool().numpy())
    assert mask.label == LABELS[int(ref.boxes.cls[k])] and mask.score == pytest.approx(float(ref.boxes.conf[k]), abs=1e-4)


def test_segment_on_a_crop_by_point_and_by_rough_mask(registry, reference, images):
    """Given a crop, when segment gets a root-pixel point inside one instance (and, separately, that
    instance's mask as the rough mask), then the mask is over the crop's grid and holds the point."""
    crop = images["chelsea"].crop(CROP)
    ref = reference("segment", crop, SEG_CONF, retina_masks=True)
    masks = ref.masks.data.bool().numpy()
    only = masks & (masks.sum(0) == 1)  # pixels inside exactly one instance
    k = int(np.argmax(only.reshape(len(masks), -1).sum(1)))
    ys, xs = np.nonzero(only[k])
    x, y = float(xs[len(xs) // 2]) + 0.5, float(ys[len(ys) // 2]) + 0.5
    root_point = [crop.offset[0] + x, crop.offset[1] + y]
    by_point = registry.get("segment")(registry, image=crop, point=root_point)
    assert (by_point.width, by_point.height) == crop.size
    assert np.array_equal(by_point.array, masks[k])
    by_mask = registry.get("segment")(registry, image=crop, mask=Mask(masks[k]))
    assert np.array_equal(by_mask.array, masks[k])


def test_no_instance_under_the_prompt_is_a_tool_error(registry, reference, images):
    """Given a point on no instance, when segment runs, then it fails saying no instance overlaps."""
    image = images["chelsea"]
    ref = reference("segment", image, SEG_CONF, retina_masks=True)
    free = ~ref.masks.data.bool().numpy().any(0)
    ys, xs = np.nonzero(free)
    assert len(xs), "every pixel is under an instance"
    with pytest.raises(ToolError, match="overlaps the point"):
        registry.get("segment")(registry, image=image, point=[float(xs[0]) + 0.5, float(ys[0]) + 0.5])


def test_choose_instance_ranks_box_iou_within_the_point(configured):
    """Given three instances, when a box and a point are combined, then the point filters and the box
    IoU ranks; a box overlapping nothing matches nothing."""
    masks = torch.zeros(3, 20, 20, dtype=torch.bool)
    masks[0, 0:10, 0:10] = masks[1, 0:12, 0:12] = masks[2, 10:20, 10:20] = True
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 12, 12], [10, 10, 20, 20]], dtype=torch.float32)
    scores = torch.tensor([0.5, 0.9, 0.7])
    assert yolo.choose_instance(masks, boxes, scores, None, (5, 5), None) == 1          # confidence breaks the tie
    assert yolo.choose_instance(masks, boxes, scores, Box(0, 0, 10, 10), (5, 5), None) == 0
    assert yolo.choose_instance(masks, boxes, scores, Box(0, 0, 10, 10), (15, 15), None) is None
    assert yolo.choose_instance(masks, boxes, scores, None, (25, 5), None) is None      # outside the image
    assert yolo.choose_instance(masks, boxes, scores, None, None, Mask(masks[2].numpy())) == 2


# configuration and errors -----------------------------------------------------------------------
def test_a_detection_checkpoint_is_refused_for_segment(registry, configured, monkeypatch, images):
    """Given a detect checkpoint configured for yolo_seg, when segment runs, then it says so."""
    monkeypatch.setenv("VISTRACE_YOLO_SEG_WEIGHTS", str(configured["detect"]))
    with pytest.raises(BackendUnavailable, match="is a 'detect' checkpoint; segment needs a segmentation one"):
        registry.get("segment")(registry, image=images["chelsea"], box=Box(0, 0, 100, 100))


def test_a_seg_checkpoint_also_detects(registry, configured, monkeypatch, images):
    """Given the -seg checkpoint configured for detect, when detect runs, then it gives boxes."""
    monkeypatch.setenv("VISTRACE_YOLO_WEIGHTS", str(configured["segment"]))
    dets = registry.get("detect")(registry, image=images["chelsea"], query=",".join(LABELS), threshold=0.3)
    assert len(dets) and all(b.label in LABELS for b in dets)


def write_bad(kind: str, folder: Path, checkpoints) -> str:
    if kind == "missing":
        return str(folder / "nowhere.pt")
    if kind == "onnx":
        p = folder / "yolo11n.onnx"
        p.write_bytes(b"onnx")
        return str(p)
    p = folder / "broken.pt"
    p.write_bytes(b"this is not a checkpoint")
    return str(p)


@pytest.mark.parametrize("kind, message", [
    ("unset", r"no weights configured .*\[backends\.yolo\].*VISTRACE_YOLO_WEIGHTS"),
    ("missing", r"weights file not found: .*nowhere\.pt .*setting 'weights' from env VISTRACE_YOLO_WEIGHTS"),
    ("onnx", r"is not an ultralytics PyTorch checkpoint \(\.pt\)"),
    ("broken", r"cannot load .*broken\.pt as an ultralytics checkpoint"),
])
def test_unusable_weights_are_a_clear_backend_unavailable(registry, monkeypatch, tmp_path, images, configured,
                                                          kind, message):
    """Given unset, missing, exported or corrupt weights, when detect runs, then BackendUnavailable
    names the problem, the setting and the environment variable."""
    if kind == "unset":
        monkeypatch.delenv("VISTRACE_YOLO_WEIGHTS")
    else:
        monkeypatch.setenv("VISTRACE_YOLO_WEIGHTS", write_bad(kind, tmp_path, configured))
    with pytest.raises(BackendUnavailable) as err:
        registry.get("detect")(registry, image=images["chelsea"], query="cat")
    text = f"{err.value.message} {err.value.fix or ''}"
    assert re.search(message, text), text


def test_unset_weights_say_how_to_configure(monkeypatch, tmp_path):
    """Given no weights, when availability is asked, then the fix names the table key and env var."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISTRACE_HOME", str(tmp_path))
    monkeypatch.delenv("VISTRACE_YOLO_SEG_WEIGHTS", raising=False)
    a = yolo.YoloSegmentBackend().availability()
    assert not a.ok and "[backends.yolo_seg]" in a.fix and "VISTRACE_YOLO_SEG_WEIGHTS" in a.fix
    assert yolo.YoloSegmentBackend().model == "ultralytics YOLO-seg (not configured)"


def test_a_legacy_yolov5_name_is_refused_not_fetched(configured, monkeypatch, tmp_path_factory):
    """Given a checkpoint named yolov5s.pt (ultralytics would fetch yolov5su.pt instead), when the
    backend loads it, then it refuses with the rename to do, and nothing is downloaded."""
    folder = tmp_path_factory.mktemp("legacy")
    if "u" in str(folder):
        pytest.skip(f"ultralytics only renames paths without a 'u': {folder}")
    path = folder / "yolov5s.pt"
    path.write_bytes(configured["detect"].read_bytes())
    monkeypatch.setenv("VISTRACE_YOLO_WEIGHTS", str(path))
    ok, why = yolo.YoloDetectBackend().suits({"labels": ["cat"]})
    assert not ok and "yolov5su.pt" in why and "rename the checkpoint" in why


@pytest.mark.parametrize("key, value, message", [("dtype", "int8", "must be float32 or float16"),
                                                 ("imgsz", "big", "'imgsz' must be a positive number"),
                                                 ("conf", "-1", "'conf' must be a positive number")])
def test_bad_settings_are_named(registry, monkeypatch, images, key, value, message):
    """Given an invalid optional setting, when detect runs, then the error names it and its env var."""
    monkeypatch.setenv(f"VISTRACE_YOLO_{key.upper()}", value)
    with pytest.raises(BackendUnavailable, match=message) as err:
        registry.get("detect")(registry, image=images["chelsea"], query="cat")
    assert f"VISTRACE_YOLO_{key.upper()}" in err.value.message + str(err.value.fix)


def test_float16_is_used_on_cuda_only(configured, monkeypatch):
    """Given dtype float16, when the device is the CPU, then half precision stays off (ultralytics
    supports it on CUDA only); on cuda it is on."""
    monkeypatch.setenv("VISTRACE_YOLO_DTYPE", "float16")
    backend = yolo.YoloDetectBackend()
    assert backend.half() is False and backend.predict_args(0.3)["quantize"] is None
    monkeypatch.setenv("VISTRACE_YOLO_DEVICE", "cuda:0")
    assert backend.half() is True
    assert backend.predict_args(0.3)["quantize"] == 16 and backend.predict_args(0.3)["device"] == "cuda:0"


def test_an_open_vocabulary_checkpoint_needs_its_local_text_encoder(configured, monkeypatch, tmp_path, images):
    """Given a YOLOE checkpoint (random weights) whose text encoder is not on disk, when arbitrary
    labels are asked, then the backend refuses naming what is missing (the 'clip' package or the
    encoder file) instead of downloading it; labels among its current classes need no encoder."""
    from ultralytics import YOLO

    path = tmp_path / "yoloe-11n-random.pt"
    YOLO("yoloe-11n.yaml").save(path)
    monkeypatch.setenv("VISTRACE_YOLO_WEIGHTS", str(path))
    monkeypatch.setenv("VISTRACE_YOLO_TEXT_MODEL", str(tmp_path / "mobileclip_blt.ts"))
    ok, why = yolo.YoloDetectBackend().suits({"labels": ["unicorn"]})
    assert not ok
    assert "'clip'" in why or ("mobileclip_blt.ts" in why and "nothing is downloaded" in why), why
    ok, why = yolo.YoloDetectBackend().suits({"labels": ["7"]})  # a yaml-built model's names are "0".."79"
    assert ok and "detects its 80 classes" in why


def test_importing_ultralytics_leaves_pil_errors_alone(configured, tmp_path):
    """Given the backend loaded (ultralytics imported), when a file that is not an image is opened, then
    vistrace still reports an InputError naming it — ultralytics' PIL.Image.open patch is undone."""
    from vistrace.errors import InputError

    yolo.YoloDetectBackend().loaded()
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="cannot read image"):
        Image.open(bad)


def test_predicting_leaves_torch_threads_alone(registry, images):
    """Given torch set to 2 threads, when YOLO predicts on the CPU, then torch still has 2 threads afterwards
    (ultralytics' select_device would set cpu_count - 1 for the whole process)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        registry.get("detect")(registry, image=images["chelsea"], query="cat", threshold=0.01)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
