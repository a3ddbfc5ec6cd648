"""Face datasets for training and evaluating protectors: listing, identity-disjoint splits, aligned-crop caches.

Layouts understood by :func:`scan_faces`:

- ``identity-folders``: ``ROOT/<identity>/<file>.jpg`` (LFW's ``images/Name/Name_NNNN.jpg``; ``../shared/data/celeba``'s
  ``images/<CelebA id>/<file>.jpg``). A ``ROOT/images`` sub-folder is used when present.
- ``celeba-hq``: CelebA-HQ images ``ROOT/<idx>.jpg`` (``0.jpg`` ... ``29999.jpg``, or zero-padded) with identities from
  ``CelebA-HQ-identity.txt`` (``<idx>.jpg <id>``) or from ``CelebA-HQ-to-CelebA-mapping.txt`` +
  ``identity_CelebA.txt``. The official split is CelebA's ``list_eval_partition.txt`` (through the mapping) when the
  file is given.
- ``plain``: any folder of images without identities (FFHQ); identities are the file stems (every image its own).

Every image is detected once (MTCNN by default), the central/largest face aligned to the protector template, and the
crops cached as one ``uint8`` array under ``$NULLSWAP_HOME/cache/crops``, keyed by the file list, template and
detector, so later runs start at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from nullswap.errors import InputError
from nullswap.faces.alignment import align_faces
from nullswap.faces.detection import Detections, FaceDetector, create_detector
from nullswap.faces.io import is_image_path, read_image
from nullswap.faces.templates import get_template
from nullswap.hub.store import nullswap_home

log = logging.getLogger(__name__)

LAYOUTS = ("identity-folders", "celeba-hq", "plain")


@dataclass(frozen=True)
class FaceRecord:
    """One image: its path and identity label (a string; for ``plain`` the file stem)."""

    path: Path
    identity: str
    partition: str | None = None  # "train" / "val" / "test" where an official split exists


def _read_two_columns(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and not parts[0].lower().startswith(("idx", "orig")):
                out[parts[0]] = parts[-1]
    return out


def scan_faces(
    root: str | Path,
    layout: str = "identity-folders",
    *,
    identity_file: str | Path | None = None,
    mapping_file: str | Path | None = None,
    celeba_identity_file: str | Path | None = None,
    partition_file: str | Path | None = None,
) -> list[FaceRecord]:
    """List the images of a dataset with their identity labels, sorted by path.

    Args:
        root: dataset root.
        layout: one of :data:`LAYOUTS`.
        identity_file: ``CelebA-HQ-identity.txt`` (celeba-hq).
        mapping_file: ``CelebA-HQ-to-CelebA-mapping.txt`` (celeba-hq; used for identities if ``identity_file`` is
            not given, and for the official split).
        celeba_identity_file: ``identity_CelebA.txt`` (celeba-hq through the mapping).
        partition_file: CelebA's ``list_eval_partition.txt`` (0 train, 1 val, 2 test) for the official split.

    Raises:
        InputError: unknown layout, missing root or label files, or no images found.
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise InputError(f"dataset layout: expected one of {LAYOUTS}, got {layout!r}")
    if not root.is_dir():
        raise InputError(f"dataset root: expected a folder, got {str(root)!r} (missing)")
    records: list[FaceRecord] = []
    if layout == "identity-folders":
        base = root / "images" if (root / "images").is_dir() else root
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            for f in sorted(d.iterdir()):
                if f.is_file() and is_image_path(f):
                    records.append(FaceRecord(f, d.name))
    elif layout == "plain":
        for f in sorted(root.rglob("*")):
            if f.is_file() and is_image_path(f):
                records.append(FaceRecord(f, str(f.relative_to(root).with_suffix(""))))
    else:
        records = _scan_celeba_hq(root, identity_file, mapping_file, celeba_identity_file, partition_file)
    if not records:
        raise InputError(f"dataset {str(root)!r} ({layout}): expected images, found none")
    return records


def _scan_celeba_hq(root, identity_file, mapping_file, celeba_identity_file, partition_file) -> list[FaceRecord]:
    base = root / "CelebA-HQ-img" if (root / "CelebA-HQ-img").is_dir() else root
    files = {int(f.stem): f for f in base.iterdir() if f.is_file() and is_image_path(f) and f.stem.isdigit()}
    hq_to_orig: dict[int, str] = {}
    if mapping_file is not None:
        with open(mapping_file, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0].isdigit():
                    hq_to_orig[int(parts[0])] = parts[2]
    if identity_file is not None:
        pairs = _read_two_columns(Path(identity_file)).items()
        ids = {int(Path(k).stem): v for k, v in pairs if Path(k).stem.isdigit()}
    elif hq_to_orig and celeba_identity_file is not None:
        celeba_ids = _read_two_columns(Path(celeba_identity_file))
        ids = {i: celeba_ids[o] for i, o in hq_to_orig.items() if o in celeba_ids}
    else:
        raise InputError(
            "celeba-hq: expected identity_file (CelebA-HQ-identity.txt) or mapping_file + celeba_identity_file"
        )
    parts: dict[int, str] = {}
    if partition_file is not None:
        if not hq_to_orig:
            raise InputError("celeba-hq: the official split needs mapping_file (CelebA-HQ-to-CelebA-mapping.txt)")
        names = {"0": "train", "1": "val", "2": "test"}
        part_of = {k: names.get(v, v) for k, v in _read_two_columns(Path(partition_file)).items()}
        parts = {i: part_of[o] for i, o in hq_to_orig.items() if o in part_of}
    return [FaceRecord(files[i], ids[i], parts.get(i)) for i in sorted(files) if i in ids]


def identity_disjoint_split(
    records: Sequence[FaceRecord], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, list[FaceRecord]]:
    """Split records into train/val/test with no identity in two parts.

    Where every record carries an official ``partition`` (CelebA-HQ with ``list_eval_partition.txt``) that split is
    used as is. Otherwise identities are shuffled with ``seed`` and cut by ``fractions`` (of identities).
    """
    if records and all(r.partition for r in records):
        out: dict[str, list[FaceRecord]] = {"train": [], "val": [], "test": []}
        for r in records:
            out.setdefault(r.partition or "train", []).append(r)
        return out
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise InputError(f"split fractions: expected 3 non-negative numbers summing to 1, got {tuple(fractions)}")
    idents = sorted({r.identity for r in records})
    random.Random(seed).shuffle(idents)
    n = len(idents)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    part = {i: "train" for i in idents[:n_train]}
    part.update({i: "val" for i in idents[n_train : n_train + n_val]})
    part.update({i: "test" for i in idents[n_train + n_val :]})
    out = {"train": [], "val": [], "test": []}
    for r in records:
        out[part[r.identity]].append(r)
    return out


def limit_records(
    records: Sequence[FaceRecord], max_identities: int | None = None, max_per_identity: int | None = None
) -> list[FaceRecord]:
    """Keep the first ``max_identities`` identities (sorted) and the first ``max_per_identity`` images of each."""
    by_id: dict[str, list[FaceRecord]] = {}
    for r in records:
        by_id.setdefault(r.identity, []).append(r)
    keep = sorted(by_id)[:max_identities] if max_identities else sorted(by_id)
    out: list[FaceRecord] = []
    for i in keep:
        out.extend(by_id[i][:max_per_identity] if max_per_identity else by_id[i])
    return out


def _main_face(det: Detections, height: int, width: int) -> int | None:
    """The face to keep: the largest box, ties broken by closeness to the image centre."""
    if len(det) == 0:
        return None
    b = det.boxes
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    dist = ((cx - width / 2) ** 2 + (cy - height / 2) ** 2).sqrt()
    return int(torch.argmax(area - 1e-3 * dist))


def _cache_key(records: Sequence[FaceRecord], template: str, detector: str) -> str:
    h = hashlib.sha256()
    h.update(f"{template}|{detector}|v1".encode())
    for r in records:
        st = r.path.stat()
        h.update(f"{r.path.resolve()}|{st.st_size}|{r.identity}\n".encode())
    return h.hexdigest()[:20]


class AlignedFaces(Dataset):
    """Aligned face crops of a list of records, detected once and cached.

    Args:
        records: images and identities (e.g. one part of :func:`identity_disjoint_split`).
        template: alignment template of the crops (``protector-256``, ``protector-128``).
        detector: a :class:`FaceDetector` or a detector name (default MTCNN).
        cache: keep the crops in ``$NULLSWAP_HOME/cache/crops`` (or ``cache_dir``).
        cache_dir: overrides the cache folder.
        progress: called as ``progress(done, total)`` while detecting.

    Items are ``(crop, label)``: crop ``(3,h,w)`` float in [0,1], label an ``int`` index into :attr:`identities`.
    Images without a detected face are dropped (logged). :attr:`landmarks` holds every crop's 5 points in the
    crop's coordinates (the template's, by construction).
    """

    def __init__(
        self,
        records: Sequence[FaceRecord],
        template: str = "protector-256",
        detector: FaceDetector | str = "mtcnn",
        cache: bool = True,
        cache_dir: str | Path | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if not records:
            raise InputError("AlignedFaces: expected at least one image record, got none")
        self.template = get_template(template)
        det_name = detector if isinstance(detector, str) else detector.name
        key = _cache_key(records, self.template.name, det_name)
        folder = Path(cache_dir) if cache_dir else nullswap_home() / "cache" / "crops"
        npy, meta_file = folder / f"{key}.npy", folder / f"{key}.json"
        if cache and npy.is_file() and meta_file.is_file():
            self._crops = np.load(npy, mmap_mode="r")
            meta = json.loads(meta_file.read_text())
            log.info("aligned crops: %d from cache %s", len(self._crops), npy)
        else:
            det = create_detector(detector) if isinstance(detector, str) else detector
            crops, kept = self._build(records, det, progress)
            self._crops = crops
            meta = {"kept": kept, "template": self.template.name, "detector": det_name}
            if cache:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = npy.with_name(npy.stem + ".part.npy")
                np.save(tmp, crops)
                tmp.replace(npy)
                meta_file.write_text(json.dumps(meta))
        kept_idx: list[int] = meta["kept"]
        self.records = [records[i] for i in kept_idx]
        self.identities = sorted({r.identity for r in self.records})
        index = {name: i for i, name in enumerate(self.identities)}
        self.labels = torch.tensor([index[r.identity] for r in self.records], dtype=torch.long)
        self.landmarks = self.template.points_tensor()

    def _build(
        self, records: Sequence[FaceRecord], det: FaceDetector, progress: Callable[[int, int], None] | None
    ) -> tuple[np.ndarray, list[int]]:
        h, w = self.template.size
        crops: list[np.ndarray] = []
        kept: list[int] = []
        for i, r in enumerate(records):
            img = read_image(r.path).tensor
            d = det.detect(img)[0]
            j = _main_face(d, img.shape[1], img.shape[2])
            if j is None:
                log.warning("no face found in %s; skipped", r.path)
            else:
                c, _ = align_faces(img, d.landmarks[j : j + 1], self.template)
                crops.append((c[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy())
                kept.append(i)
            if progress is not None:
                progress(i + 1, len(records))
        arr = np.stack(crops) if crops else np.zeros((0, 3, h, w), np.uint8)
        log.info("aligned crops: %d of %d images have a face", len(kept), len(records))
        return arr, kept

    @classmethod
    def from_arrays(
        cls,
        crops: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        identities: Sequence[str],
        template: str,
        records: Sequence[FaceRecord] | None = None,
    ) -> AlignedFaces:
        """Aligned crops that are already made (e.g. a crop pack, :mod:`nullswap.datasets.crop_pack`); no detection.

        Args:
            crops: ``uint8`` ``(N,3,h,w)``, aligned to ``template``.
            labels: ``N`` indices into ``identities``.
            identities: the identity names.
            template: the crops' alignment template; its size must be ``(h, w)``.
            records: the source images, when known (else :attr:`records` is empty).

        Raises:
            InputError: wrong dtype or shape, sizes that disagree, or labels outside ``identities``.
        """
        crops = np.asarray(crops)
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1] != 3:
            raise InputError(f"crops: expected uint8 (N,3,h,w), got {crops.dtype} {tuple(crops.shape)}")
        tpl = get_template(template)
        if tuple(crops.shape[2:]) != tuple(tpl.size):
            raise InputError(
                f"crops: expected {tuple(tpl.size)} pixels for template {tpl.name!r}, got {tuple(crops.shape[2:])}"
            )
        lab = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
        if lab.numel() != crops.shape[0]:
            raise InputError(f"labels: expected {crops.shape[0]} (one per crop), got {lab.numel()}")
        if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= len(identities)):
            raise InputError(
                f"labels: expected indices in [0, {len(identities)}), got [{int(lab.min())}, {int(lab.max())}]"
            )
        if records is not None and len(records) != crops.shape[0]:
            raise InputError(f"records: expected {crops.shape[0]} (one per crop), got {len(records)}")
        obj = cls.__new__(cls)
        obj.template = tpl
        obj._crops = crops
        obj.records = list(records) if records is not None else []
        obj.identities = [str(i) for i in identities]
        obj.labels = lab
        obj.landmarks = tpl.points_tensor()
        return obj

    def __len__(self) -> int:
        return int(self._crops.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        crop = torch.from_numpy(np.array(self._crops[i], copy=True)).float() / 255.0
        return crop, int(self.labels[i])

    def tensor(self, indices: Sequence[int] | None = None) -> torch.Tensor:
        """Crops as one float tensor ``(N,3,h,w)`` (all, or ``indices``)."""
        idx = list(range(len(self))) if indices is None else list(indices)
        return torch.from_numpy(np.array(self._crops[idx], copy=True)).float() / 255.0


__all__ = [
    "LAYOUTS",
    "AlignedFaces",
    "FaceRecord",
    "identity_disjoint_split",
    "limit_records",
    "scan_faces",
]
