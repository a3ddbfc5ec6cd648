import pytest
from typer.testing import CliRunner

from nullswap import __version__
from nullswap.cli.main import app

runner = CliRunner()


def test_version_and_help():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("faces", "weights"):
        assert cmd in r.output


def test_weights_list_and_verify():
    r = runner.invoke(app, ["weights", "list"], env={"COLUMNS": "300"})
    assert r.exit_code == 0 and "mobilefacenet-casia" in r.output
    r = runner.invoke(app, ["weights", "verify"])
    assert r.exit_code == 0


def test_weights_fetch_unknown_name_fails_cleanly():
    r = runner.invoke(app, ["weights", "fetch", "no-such-weights"])
    assert r.exit_code != 0
    assert "no-such-weights" in str(r.exception) or "no-such-weights" in r.output


@pytest.mark.shared
def test_faces_command_writes_crops_and_drawing(shared, tmp_path):
    photo = shared / "data" / "photos" / "group_t1.jpg"
    r = runner.invoke(app, ["faces", str(photo), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    crops = sorted(tmp_path.glob("group_t1.face*.png"))
    assert len(crops) >= 4 and (tmp_path / "group_t1.faces.png").is_file()


def test_faces_command_bad_file_exit_code(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_text("not an image")
    r = runner.invoke(app, ["faces", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1


def test_weights_list_shows_every_spec_without_model_modules():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from nullswap.cli.main import app\n"
        "r = CliRunner().invoke(app, ['weights', 'list'], env={'COLUMNS': '400'})\n"
        "assert r.exit_code == 0, r.output\n"
        "mods = [m for m in sys.modules if m.startswith(('nullswap.recognizers.', 'nullswap.protectors.'))]\n"
        "assert not mods, mods\n"
        "print(r.output)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for name in ("arcface-r50", "arcface-r100", "facenet-vggface2", "facenet-casia", "sface", "arcface-mbf",
                 "dlib-resnet29", "mobilefacenet-casia"):
        assert name in out.stdout


def test_weights_fetch_unobtainable_file_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NULLSWAP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NULLSWAP_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("NULLSWAP_SHARED", str(tmp_path / "no-shared"))
    r = runner.invoke(app, ["weights", "fetch", "arcface-r50"])
    assert r.exit_code == 1
    assert r.exception is None or isinstance(r.exception, SystemExit)
    lines = [ln for ln in r.output.splitlines() if "arcface-r50" in ln and "error" in ln]
    assert len(lines) == 1, r.output


def test_weights_fetch_unknown_name_is_one_line_error():
    r = runner.invoke(app, ["weights", "fetch", "no-such-weights"])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit)
    assert "unknown weight file 'no-such-weights'" in r.output and "arcface-r50" in r.output
