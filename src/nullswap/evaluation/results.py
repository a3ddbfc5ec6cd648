"""Evaluation results: flat records with their full context, and the tables rendered from them.

Every number is one :class:`Record` carrying its protocol, data, protector, recognizer, perturbation and level, so a
``results.json`` can be re-tabulated without re-running anything.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Record:
    """One measured number."""

    protocol: str
    protector: str
    metric: str
    value: float
    data: str = ""
    recognizer: str = ""
    perturbation: str = ""
    level: str = ""
    n: int = 0


@dataclass
class ResultSet:
    """Records plus run metadata (command settings, perceptual metric used, hardware)."""

    records: list[Record] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, **kw: Any) -> None:
        """Append a record (``value`` is converted to ``float``)."""
        kw["value"] = float(kw["value"])
        self.records.append(Record(**kw))

    def extend(self, other: ResultSet) -> None:
        """Append another set's records."""
        self.records.extend(other.records)

    def select(self, **kw: Any) -> list[Record]:
        """Records whose fields equal every given value."""
        return [r for r in self.records if all(getattr(r, k) == v for k, v in kw.items())]

    def value(self, **kw: Any) -> float | None:
        """The single value matching ``kw`` (``None`` if absent)."""
        rs = self.select(**kw)
        return rs[0].value if rs else None

    def to_json(self, path: str | Path) -> None:
        """Write ``{"meta": ..., "records": [...]}``."""
        Path(path).write_text(json.dumps({"meta": self.meta, "records": [asdict(r) for r in self.records]}, indent=1))

    @classmethod
    def from_json(cls, path: str | Path) -> ResultSet:
        """Read a ``results.json``."""
        d = json.loads(Path(path).read_text())
        return cls([Record(**r) for r in d["records"]], d.get("meta", {}))

    def to_csv(self, path: str | Path) -> None:
        """All records as CSV."""
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(Record.__dataclass_fields__))
            w.writeheader()
            for r in self.records:
                w.writerow(asdict(r))


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def pivot(records: Iterable[Record], rows: str, cols: str) -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
    """Rows x columns table of ``value`` keyed by two record fields (first-seen order)."""
    rs, cs, cells = [], [], {}
    for r in records:
        a, b = getattr(r, rows), getattr(r, cols)
        if a not in rs:
            rs.append(a)
        if b not in cs:
            cs.append(b)
        cells[(a, b)] = r.value
    return rs, cs, cells


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


#: Recognizers named in tables with what they stand for.
_REC_LABELS = {"arcface-mbf": "arcface-mbf (ArcFace, the extractor class of face-swap models)"}


def _rec_label(name: str) -> str:
    return _REC_LABELS.get(name, name)


def _arcface_first(names: list[str]) -> list[str]:
    """Recognizer order for tables: ArcFace first (what face-swap models use), then as given."""
    return sorted(names, key=lambda n: 0 if n.startswith("arcface") else 1)


def render_tables(rs: ResultSet) -> dict[str, str]:
    """Markdown tables in the papers' layouts, by name.

    - ``quality`` (NullSwap Table 1): protector x PSNR / SSIM / perceptual (named) / L2.
    - ``identification`` (NullSwap Tables 2 and 4; Table 5 when the protectors are ablation sessions): protector x
      recognizer top-5 / top-1, plus the average.
    - ``cosine``: protector x recognizer mean cosine(clean, protected) and protection success rate.
    - ``robustness`` (ARS Table 6 style): per recognizer, perturbation/level x protector top-1 (and mean cosine).
    """
    out: dict[str, str] = {}
    q = [r for r in rs.records if r.protocol == "quality"]
    if q:
        prots, metrics, cells = pivot(q, "protector", "metric")
        out["quality"] = markdown_table(["protector", *metrics],
                                        [[p, *(_fmt(cells.get((p, m))) for m in metrics)] for p in prots])
    cost = [r for r in rs.records if r.protocol == "cost"]
    if cost:
        out["cost"] = markdown_table(["protector", "seconds per crop (this machine)"],
                                     [[r.protector, _fmt(r.value, 4)] for r in cost])
    ident = [r for r in rs.records if r.protocol == "identification" and r.metric in ("top1", "top5")]
    if ident:
        prots = list(dict.fromkeys(r.protector for r in ident))
        recs = _arcface_first(list(dict.fromkeys(r.recognizer for r in ident)))
        header = ["protector"] + [f"{_rec_label(rec)} top-5 / top-1" for rec in recs] + ["average top-5 / top-1"]
        rows = []
        for p in prots:
            row, t5s, t1s = [p], [], []
            for rec in recs:
                t5 = rs.value(protocol="identification", protector=p, recognizer=rec, metric="top5")
                t1 = rs.value(protocol="identification", protector=p, recognizer=rec, metric="top1")
                row.append(f"{_fmt(t5, 3)} / {_fmt(t1, 3)}")
                t5s += [t5] if t5 is not None else []
                t1s += [t1] if t1 is not None else []
            row.append(f"{_fmt(sum(t5s) / len(t5s) if t5s else None, 3)} / "
                       f"{_fmt(sum(t1s) / len(t1s) if t1s else None, 3)}")
            rows.append(row)
        out["identification"] = markdown_table(header, rows)
    cos = [r for r in rs.records if r.protocol == "identification" and r.metric in ("cosine", "psr")]
    if cos:
        prots = list(dict.fromkeys(r.protector for r in cos))
        recs = _arcface_first(list(dict.fromkeys(r.recognizer for r in cos)))
        rows = []
        for p in prots:
            row = [p]
            for rec in recs:
                c = rs.value(protocol="identification", protector=p, recognizer=rec, metric="cosine")
                s = rs.value(protocol="identification", protector=p, recognizer=rec, metric="psr")
                row.append(f"{_fmt(c, 3)} / {_fmt(s, 3)}")
            rows.append(row)
        out["cosine"] = markdown_table(["protector"] + [f"{_rec_label(r)} cosine / PSR" for r in recs], rows)
    dodge = [r for r in rs.records if r.protocol == "identification" and r.metric.startswith("dodge_psr")]
    if dodge:
        prots = list(dict.fromkeys(r.protector for r in dodge))
        recs = _arcface_first(list(dict.fromkeys(r.recognizer for r in dodge)))
        rows = []
        for p in prots:
            for rec in recs:
                vals = [rs.value(protocol="identification", protector=p, recognizer=rec, metric=m)
                        for m in ("psr", "psr_far_1e-02", "psr_far_1e-03",
                                  "dodge_psr", "dodge_psr_far_1e-02", "dodge_psr_far_1e-03")]
                rows.append([p, _rec_label(rec), *(_fmt(v, 3) for v in vals)])
        out["psr"] = markdown_table(
            ["protector", "recognizer", "PSR vs own clean (best acc.)", "(FAR 1e-2)", "(FAR 1e-3)",
             "dodging PSR vs other photos (best acc.)", "(FAR 1e-2)", "(FAR 1e-3)"], rows)
    rob = [r for r in rs.records if r.protocol == "robustness" and r.metric == "top1"]
    if rob:
        parts = []
        for rec in dict.fromkeys(r.recognizer for r in rob):
            sub = [r for r in rob if r.recognizer == rec]
            prots = list(dict.fromkeys(r.protector for r in sub))
            keys = list(dict.fromkeys((r.perturbation, r.level) for r in sub))
            rows = []
            for pert, lvl in keys:
                rows.append([pert, lvl] + [_fmt(rs.value(protocol="robustness", protector=p, recognizer=rec,
                                                        perturbation=pert, level=lvl, metric="top1"), 3)
                                           for p in prots])
            parts.append(f"**{rec}** (top-1 after the perturbation)\n\n"
                         + markdown_table(["perturbation", "level", *prots], rows))
        out["robustness"] = "\n\n".join(parts)
    for proto in ("swap", "manipulation"):
        # NullSwap Table 3 (swap) / ID-Guard, ARS disruption (manipulation): ID similarity of the outputs from clean
        # and protected inputs, per recognizer, and the pixel disruption
        sw = [r for r in rs.records if r.protocol == proto and r.metric == "id_sim"]
        if not sw:
            continue
        prots, recs, cells = pivot(sw, "protector", "recognizer")
        rows = []
        for p in prots:
            extra = [_fmt(rs.value(protocol=proto, protector=p, recognizer="", metric=m))
                     for m in ("l2_disruption", "l2_face", "defense_success_rate", "dsr_idguard")]
            rows.append([p, *(_fmt(cells.get((p, r))) for r in recs), *extra])
        out[proto] = markdown_table(["protector", *(f"ID sim. {r}" for r in recs), "L2", "L2_face",
                                     "DSR (L2 > 0.05)", "DSR (ID-Guard rule)"], rows)
    return out


__all__ = ["Record", "ResultSet", "markdown_table", "pivot", "render_tables"]
