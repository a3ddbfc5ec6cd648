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
