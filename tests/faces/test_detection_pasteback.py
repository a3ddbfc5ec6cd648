import numpy as np
import pytest
import torch

from nullswap.faces import align_faces, create_detector, face_mask, paste_back, read_image
from nullswap.faces.detection import Detections, MTCNNDetector

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def mtcnn():
    return create_detector("mtcnn")


@pytest.fixture(scope="module")
def yunet():
    return create_detector("yunet")


@pytest.fixture(scope="module")
def photos(shared):
    return sorted(p for p in (shared / "data" / "photos").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def test_faces_found_in_every_photo_and_group(mtcnn, yunet, photos):
    assert len(photos) == 17
    for p in photos:
        img = read_image(p).tensor
        for det in (mtcnn, yunet):
            d = det.detect(img)[0]
            if p.name == "group_t1.jpg":
                assert len(d) >= 4, f"{det.name} found {len(d)} faces in the group photo"
            else:
                assert len(d) >= 1, f"{det.name} found no face in {p.name}"
            assert d.boxes.shape[1:] == (4,) and d.landmarks.shape[1:] == (5, 2)
            lm = d.landmarks
            # landmark order: left eye, right eye, nose, mouth left, mouth right (image coordinates, upright faces)
            assert (lm[:, 0, 0] < lm[:, 1, 0]).all() and (lm[:, 3, 0] < lm[:, 4, 0]).all()
            assert (lm[:, 0, 1] < lm[:, 3, 1]).all()


def test_detectors_agree_on_landmarks(mtcnn, yunet, photos):
    img = read_image(photos[0]).tensor
    a, b = mtcnn.detect(img)[0], yunet.detect(img)[0]
    eye_dist = float((a.landmarks[0, 1] - a.landmarks[0, 0]).norm())
    assert float((a.landmarks[0] - b.landmarks[0]).norm(dim=1).max()) < 0.25 * eye_dist


def test_no_face_gives_empty_result(mtcnn, yunet):
    y, x = torch.meshgrid(torch.linspace(0, 1, 240), torch.linspace(0, 1, 320), indexing="ij")
    blank = torch.stack([x, y, 0.5 * torch.ones_like(x)])
    for det in (mtcnn, yunet):
        (d,) = det.detect(blank)
        assert isinstance(d, Detections) and len(d) == 0


def test_batched_detection_matches_single(mtcnn, photos):
    imgs = [read_image(p).tensor for p in photos[:3]]
    batched = mtcnn.detect(imgs)
    for im, d in zip(imgs, batched, strict=True):
        assert torch.allclose(mtcnn.detect(im)[0].boxes, d.boxes)


def test_random_weights_construct_without_files():
    det = MTCNNDetector(pretrained=False)
    assert isinstance(det.detect(torch.rand(3, 64, 64)), list)


@pytest.mark.parametrize("name", ["group_t1.jpg", "obama3.jpg", "alex-lacamoire.png"])
def test_align_then_paste_unmodified_returns_original(mtcnn, shared, name):
    img = read_image(shared / "data" / "photos" / name).tensor
    d = mtcnn.detect(img)[0]
    crops, M = align_faces(img, d.landmarks, "protector-256")
    # delta mode: bit-identical everywhere
    assert torch.equal(paste_back(img, crops, M, "protector-256"), img)
    # replace mode: resampled twice inside the mask, untouched outside it
    out, mask = paste_back(img, crops, M, "protector-256", mode="replace", return_mask=True)
    diff = (out - img).abs()
    assert float(diff.mean()) <= 1 / 255
    assert torch.equal(out[:, mask == 0], img[:, mask == 0])
    assert float(mask.max()) == 1.0


def test_modified_crop_changes_only_inside_mask(mtcnn, shared):
    img = read_image(shared / "data" / "photos" / "group_t1.jpg").tensor
    d = mtcnn.detect(img)[0]
    crops, M = align_faces(img, d.landmarks, "protector-256")
    g = torch.Generator().manual_seed(0)
    # a smooth perturbation: faces in this photo are smaller than the 256 crop, so the photo cannot hold per-pixel noise
    low = torch.randn(crops.shape[0], 3, 16, 16, generator=g)
    pert = (crops + 0.03 * torch.nn.functional.interpolate(low, size=(256, 256), mode="bilinear")).clamp(0, 1)
    out, mask = paste_back(img, pert, M, "protector-256", return_mask=True)
    assert torch.equal(out[:, mask == 0], img[:, mask == 0])
    inside = mask > 0.99
    assert float((out - img).abs()[:, inside].mean()) > 0.005
    # every face got its share of the change
    for box in d.boxes:
        x0, y0, x1, y1 = (int(v) for v in box)
        assert float((out - img)[:, y0:y1, x0:x1].abs().mean()) > 0.002
    # re-aligning the result recovers the perturbation inside the mask
    again, _ = align_faces(out, d.landmarks, "protector-256")
    m = face_mask((256, 256)) > 0.99
    err = (again - pert).abs()[:, :, m].mean()
    assert float(err) < float((crops - pert).abs()[:, :, m].mean()) * 0.3


def test_uint8_roundtrip_outside_faces_is_bit_identical(mtcnn, shared, tmp_path):
    from PIL import Image

    from nullswap.faces.io import write_image

    src = shared / "data" / "photos" / "lin-manuel-miranda.png"
    im = read_image(src)
    d = mtcnn.detect(im.tensor)[0]
    crops, M = align_faces(im.tensor, d.landmarks, "protector-256")
    out, mask = paste_back(im.tensor, (crops + 0.02).clamp(0, 1), M, "protector-256", return_mask=True)
    write_image(tmp_path / "o.png", out, like=im)
    a = np.asarray(Image.open(src).convert("RGB"))
    b = np.asarray(Image.open(tmp_path / "o.png").convert("RGB"))
    outside = (mask == 0).numpy()
    assert np.array_equal(a[outside], b[outside])
    assert not np.array_equal(a[~outside], b[~outside])
