"""`ctbench data` user errors: one click error line naming the path and the problem, never a traceback."""

from __future__ import annotations

from click.testing import CliRunner

from ctbench.cli import main
from ctbench.data.scan_io import dicom_series_files


def _fails(args: list[str]) -> str:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert "Traceback" not in r.output
    return r.output


def test_synth_into_an_unwritable_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where a folder should be: fails even for root
    out = _fails(["data", "synth", str(blocker / "raw"), "--n", "1", "--small"])
    assert f"{blocker / 'raw'}: cannot write the phantoms" in out


def test_info_preview_that_cannot_be_written_and_info_of_a_non_prepared_folder(prepared_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = _fails(["data", "info", str(prepared_dir), "--preview", str(blocker / "p.png")])
    assert f"{blocker / 'p.png'}: cannot write the preview ({blocker}:" in out
    (tmp_path / "empty").mkdir()
    out = _fails(["data", "info", str(tmp_path / "empty")])
    assert f"{tmp_path / 'empty' / 'manifest.json'}: no manifest" in out
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "manifest.json").write_text("{oops")
    out = _fails(["data", "info", str(tmp_path / "corrupt")])
    assert f"{tmp_path / 'corrupt' / 'manifest.json'}: not a valid ctbench manifest" in out


def test_looking_for_dicom_in_a_folder_without_any_prints_nothing(tmp_path, capfd):
    (tmp_path / "scan.nii.gz").write_bytes(b"")
    assert dicom_series_files(tmp_path) == []
    assert "No Series were found" not in capfd.readouterr().err  # GDCM's C++ warning, once per folder searched
