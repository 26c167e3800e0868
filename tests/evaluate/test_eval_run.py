"""`ctbench evaluate` end to end on the shared synthetic prepared folder."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ctbench.api import BadSamplesError, LoadContext
from ctbench.cli import main
from ctbench.core.distributed import shard
from ctbench.data.prepared import load_manifest
from ctbench.evaluate import EvalOptions, EvaluationError, evaluate, generated_hu_range, rerun_options
from ctbench.record import read_record
from ctbench_generators.baselines import RealHoldout

WEIGHT_FREE = ["diversity", "intensity", "memorisation"]


def _opts(prepared_dir, out, **kw) -> EvalOptions:
    base = dict(data=str(prepared_dir), generator="noise", n=3, seed=7, out=str(out), batch_size=2, montage_volumes=2)
    base.update(kw)
    return EvalOptions(**base)


def test_noise_record_complete_and_feature_metrics_skipped(prepared_dir, tmp_path):
    path = evaluate(_opts(prepared_dir, tmp_path), argv=["ctbench", "evaluate", "-g", "noise"])
    rec = read_record(path)
    manifest = load_manifest(prepared_dir)
    assert rec["generator"]["name"] == "noise" and rec["generator"]["config"] == {"mean": 0.0, "std": 0.5}
    assert rec["generator"]["plugin_package"] == "ctbench"
    assert rec["protocol"]["manifest_sha256"] == manifest.sha256 and rec["protocol"]["split"] == "test"
    assert rec["sampling"] == {"n": 3, "seed": 7, "scheme": "seed+i", "batch_size": 2, "world_size": 1}
    assert set(rec["skipped"]) == {"fid", "fvd", "fid3d-medicalnet", "fid-radimagenet"}
    assert "ctbench weights fetch" in rec["skipped"]["fid"]  # the command that enables it
    assert set(rec["metrics"]) == {"ms_ssim", "ms_ssim_real", "intensity_w1", "memorised", "nn_corr", "nn_corr_real"}
    m = rec["metrics"]
    assert m["ms_ssim"]["n"] == 3 and m["ms_ssim"]["value"] < 0.3  # i.i.d. noise: very diverse
    if len(manifest.select("test")) >= 2:
        assert m["ms_ssim_real"]["value"] > m["ms_ssim"]["value"]
    else:  # one reference volume: no pairs, so missing — never 0
        assert m["ms_ssim_real"]["value"] is None and "at least 2" in m["ms_ssim_real"]["note"]
    assert m["memorised"]["value"] == 0.0 and abs(m["nn_corr"]["value"]) < 0.05  # noise resembles no scan
    assert m["intensity_w1"]["value"] > 50
    assert (tmp_path / rec["artifacts"]["montage"]).is_file()
    assert (tmp_path / rec["artifacts"]["memorisation_pairs"]).is_file()
    assert rec["env"]["torch"] == torch.__version__ and rec["env"]["device"].startswith("cpu")
    assert rec["command"]["argv"][:2] == ["ctbench", "evaluate"]
    # resumable: the same run is not recomputed; --rerun reproduces the values from the record alone
    assert evaluate(_opts(prepared_dir, tmp_path)) == path
    again = read_record(evaluate(rerun_options(path)))
    for key, value in m.items():
        assert again["metrics"][key]["value"] == value["value"], key


def test_results_do_not_depend_on_batch_size(prepared_dir, tmp_path):
    a = read_record(evaluate(_opts(prepared_dir, tmp_path / "a", batch_size=1, metrics=WEIGHT_FREE)))
    b = read_record(evaluate(_opts(prepared_dir, tmp_path / "b", batch_size=3, metrics=WEIGHT_FREE)))
    assert a["run_id"] == b["run_id"]  # batch size is not part of what a run is
    assert {k: v["value"] for k, v in a["metrics"].items()} == {k: v["value"] for k, v in b["metrics"].items()}


def test_save_samples_in_hu_then_score_the_folder(prepared_dir, tmp_path):
    # the train split: val holds fewer than 3 volumes, and real-holdout never repeats one
    opts = _opts(
        prepared_dir, tmp_path / "gen", generator="real-holdout@train", metrics=["intensity"], save_samples=True
    )
    rec = read_record(evaluate(opts))
    folder = tmp_path / "gen" / rec["artifacts"]["samples_dir"]
    files = sorted(folder.glob("*.nii.gz"))
    assert [f.name for f in files] == ["sample_00000.nii.gz", "sample_00001.nii.gz", "sample_00002.nii.gz"]
    img = nib.load(files[0])
    assert img.shape == (128, 128, 64)
    assert np.allclose(img.header.get_zooms(), (1.8, 1.8, 6.25), atol=1e-4)
    lo, hi = generated_hu_range(load_manifest(prepared_dir))
    gen = RealHoldout.load(None, variant="train", context=LoadContext(data_dir=prepared_dir))
    want_hu = lo + (gen.sample(1, 7)[0, 0].numpy().transpose(2, 1, 0) + 1) / 2 * (hi - lo)
    assert np.abs(np.asarray(img.dataobj) - want_hu).max() < 0.1  # HU, within int16 quantisation
    scored = read_record(
        evaluate(_opts(prepared_dir, tmp_path / "scored", generator=None, samples=str(folder), metrics=["intensity"]))
    )
    assert scored["generator"]["source"] == "samples"
    assert scored["metrics"]["intensity_w1"]["value"] == pytest.approx(rec["metrics"]["intensity_w1"]["value"], abs=1.0)


def test_requested_unavailable_metric_fails_before_sampling(prepared_dir, tmp_path, fake_generator):
    calls = []
    fake_generator("counting", lambda n: calls.append(n) or torch.zeros(n, 1, 64, 128, 128))
    with pytest.raises(EvaluationError, match="'fid' was requested but cannot run"):
        evaluate(_opts(prepared_dir, tmp_path, generator="counting", metrics=["fid", "intensity"]))
    assert calls == [] and not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda n: torch.zeros(n, 1, 32, 64, 64), r"shape \(2, 1, 32, 64, 64\), expected \(2, 1, 64, 128, 128\)"),
        (lambda n: torch.zeros(n, 1, 64, 128, 128, dtype=torch.float64), "dtype torch.float64"),
        (lambda n: torch.full((n, 1, 64, 128, 128), 3.0), r"values in \[3, 3\], expected \[-1, 1\]"),
        (lambda n: torch.full((n, 1, 64, 128, 128), float("nan")), "NaN/inf"),
        (lambda n: np.zeros((n, 1, 64, 128, 128), np.float32), "returned ndarray"),
    ],
)
def test_bad_generator_output_names_the_generator(prepared_dir, tmp_path, fake_generator, bad, message):
    fake_generator("bad-gen", bad)
    with pytest.raises(BadSamplesError, match=f"generator 'bad-gen@default'.*{message}"):
        evaluate(_opts(prepared_dir, tmp_path, generator="bad-gen", metrics=["intensity"], n=2))


def test_cli_unknown_generator_and_variant_list_close_names(prepared_dir, tmp_path):
    r = CliRunner().invoke(main, ["evaluate", "-g", "nosie", "--data", str(prepared_dir), "--out", str(tmp_path)])
    assert r.exit_code != 0 and "Did you mean: noise" in r.output
    r = CliRunner().invoke(main, ["evaluate", "-g", "noise@wdie", "--data", str(prepared_dir), "--out", str(tmp_path)])
    assert r.exit_code != 0 and "unknown variant 'noise@wdie'" in r.output and "noise@wide" in r.output
    r = CliRunner().invoke(main, ["evaluate", "-g", "noise", "--metrics", "fdi", "--data", str(prepared_dir)])
    assert r.exit_code != 0 and "unknown metric 'fdi'" in r.output


def test_cli_evaluate_prints_values_and_skips(prepared_dir, tmp_path):
    args = ["evaluate", "-g", "mean-volume", "--data", str(prepared_dir), "--n", "2", "--out", str(tmp_path)]
    r = CliRunner().invoke(main, [*args, "--set", "split=train", "--montage-volumes", "1"])
    assert r.exit_code == 0, r.output
    assert "ms_ssim" in r.output and "fid            skipped" in r.output
    rec = read_record(next(tmp_path.glob("mean-volume-*.json")))
    assert rec["generator"]["overrides"] == {"split": "train"}
    assert rec["metrics"]["ms_ssim"]["value"] == pytest.approx(1.0)  # one volume repeated: no diversity
    real = rec["metrics"]["ms_ssim_real"]  # the shared folder's test split has one case: no pairs
    assert real["value"] is None and f"ms_ssim_real   —  ({real['note']})" in r.output  # the reason, not a bare dash


def test_shard_covers_every_index_once():
    for n in (1, 5, 8):
        for world in (1, 2, 3):
            parts = [shard(n, r, world) for r in range(world)]
            assert [i for p in parts for i in p] == list(range(n))


def test_options_round_trip():
    o = EvalOptions(data="d", generator="noise", metrics=["fid"], overrides={"a": {"b": 1}})
    assert EvalOptions.from_dict(o.to_dict()) == dataclasses.replace(o)


def test_samples_folder_bad_files_named(prepared_dir, tmp_path):
    folder = tmp_path / "vols"
    folder.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 32), np.float32), np.eye(4)), folder / "a_small.nii.gz")
    opts = _opts(prepared_dir, tmp_path / "r", generator=None, samples=str(folder), n=1, metrics=["intensity"])
    with pytest.raises(EvaluationError, match=r"a_small\.nii\.gz: shape \(64, 64, 32\), expected RAS"):
        evaluate(opts)
    (folder / "a_small.nii.gz").unlink()
    (folder / "b_garbage.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(EvaluationError, match=r"b_garbage\.nii\.gz: cannot read NIfTI"):
        evaluate(opts)
    with pytest.raises(EvaluationError, match="--n 5 but only 1 NIfTI files"):
        evaluate(dataclasses.replace(opts, n=5))
    with pytest.raises(EvaluationError, match="exactly one of"):
        evaluate(dataclasses.replace(opts, generator="noise"))
