"""``nullswap ui``: a local web app (Gradio) to protect photos: upload, choose method and strength, compare, download.

The server listens on the loopback interface only (``127.0.0.1``); nothing is shared or uploaded anywhere. Gradio is
an optional dependency (``pip install nullswap[ui]``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from nullswap.errors import InputError, NullswapError
from nullswap.faces.io import to_uint8
from nullswap.protection import METHODS, STRENGTHS, PhotoProtector, default_method

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def _require_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise InputError("the web UI needs Gradio: pip install 'nullswap[ui]' (or pip install gradio)") from None
    return gr


class _Session:
    """Builds protectors lazily and reuses them across requests."""

    def __init__(self, out_dir: Path, device: str | None) -> None:
        self.out_dir = out_dir
        self.device = device
        self._cache: dict[tuple[str, str], PhotoProtector] = {}

    def protector(self, method: str, strength: str) -> PhotoProtector:
        key = (method, strength)
        if key not in self._cache:
            self._cache[key] = PhotoProtector(method, strength=strength, device=self.device, seed=0)
        return self._cache[key]

    def run(self, files: list[Any] | None, method: str, strength: str):
        """Protect the uploaded files; returns (original, protected, amplified difference, report, downloads)."""
        if not files:
            raise InputError("upload at least one photo")
        pp = self.protector(method, strength)
        outputs: list[str] = []
        reports: dict[str, Any] = {}
        first = None
        for f in files:
            path = Path(f if isinstance(f, str | os.PathLike) else getattr(f, "name", str(f)))
            try:
                res = pp.protect_file(path, report=True)
            except NullswapError as e:
                reports[path.name] = {"error": str(e)}
                continue
            if not res.faces:
                reports[path.name] = {"note": "no face found: nothing to protect"}
                continue
            dest = self.out_dir / f"{path.stem}.protected{path.suffix.lower() or '.png'}"
            k = 2
            while dest.exists():
                dest = self.out_dir / f"{path.stem}.protected-{k}{path.suffix.lower() or '.png'}"
                k += 1
            outputs.append(str(res.save(dest)))  # the written path (NAME.png when Pillow cannot write the format)
            reports[path.name] = res.report
            if first is None:
                diff = ((res.image - res.source.tensor) * 10 + 0.5).clamp(0, 1)
                first = (to_uint8(res.source.tensor), to_uint8(res.image), to_uint8(diff))
        if first is None:
            return None, None, None, reports, outputs or None
        return first[0], first[1], first[2], reports, outputs


def build_app(out_dir: str | Path | None = None, device: str | None = None):
    """The Gradio Blocks app (not launched)."""
    gr = _require_gradio()
    folder = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="nullswap-ui-"))
    folder.mkdir(parents=True, exist_ok=True)
    session = _Session(folder, device)

    def on_protect(files, method, strength):
        try:
            return session.run(files, method, strength)
        except NullswapError as e:
            raise gr.Error(str(e)) from None

    with gr.Blocks(title="nullswap: protect photos against face swapping", analytics_enabled=False) as app:
        gr.Markdown("## nullswap\nProtect the faces in your photos against deepfake face swapping. "
                    "Everything runs on this computer. The report lists, per face, each recognizer's verdict: "
                    "a face marked protected fooled the verifiers named there, not every face recognizer.")
        with gr.Row():
            files = gr.File(label="Photos", file_count="multiple", file_types=["image"], elem_id="upload")
            with gr.Column():
                # "auto": what `nullswap protect` does by default (the packaged model's measured recipe, else PGD)
                method = gr.Dropdown(["auto", *METHODS], value="auto", label="Method", elem_id="method",
                                     info=f"auto = {default_method()} here")
                strength = gr.Radio(list(STRENGTHS), value="mid", label="Strength", elem_id="strength")
                go = gr.Button("Protect", variant="primary", elem_id="protect")
        with gr.Row():
            original = gr.Image(label="Original", type="numpy", interactive=False)
            protected = gr.Image(label="Protected", type="numpy", interactive=False)
            difference = gr.Image(label="Difference x10", type="numpy", interactive=False)
        report = gr.JSON(label="Report")
        downloads = gr.File(label="Download protected photos", file_count="multiple", interactive=False,
                            elem_id="downloads")
        go.click(on_protect, [files, method, strength], [original, protected, difference, report, downloads])
    return app


def launch(port: int = 7860, out_dir: str | Path | None = None, device: str | None = None, block: bool = True):
    """Start the app on ``127.0.0.1:port`` (loopback only). Returns the app (useful with ``block=False``)."""
    folder = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="nullswap-ui-"))
    app = build_app(folder, device)
    app.queue().launch(server_name=LOOPBACK, server_port=port, share=False, inbrowser=False,
                       prevent_thread_lock=not block, allowed_paths=[str(folder)])
    return app


__all__ = ["LOOPBACK", "build_app", "launch"]
