"""Result records: round trip, validation messages, atomic writes, skipping bad files."""

from __future__ import annotations

import json

import pytest

from ctbench.metrics.base import MetricValue
from ctbench.record import RecordError, metric_values, read_record, read_records, validate_record, write_record


def test_round_trip_and_metric_values(tmp_path, make_record):
    rec = make_record("noise", {"fid_mean": 12.5, "ms_ssim": None}, weights="a" * 64, intervals={"fid_mean": (11, 14)})
    path = write_record(rec, tmp_path)
    assert path.name == f"{rec['run_id']}.json"
    assert read_record(path) == rec
    values = metric_values(rec)
    assert values["fid_mean"] == MetricValue(
        12.5, n=8, interval=(11, 14), extractor="inception-v3", weights_sha256="a" * 64, metric_version="1"
    )
    assert values["ms_ssim"].value is None
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_validation_names_the_file_and_each_problem(tmp_path, make_record):
    rec = make_record("noise", {"fid_mean": 1.0})
    del rec["protocol"]["manifest_sha256"]
    rec["metrics"]["fid_mean"]["value"] = "high"
    with pytest.raises(RecordError) as err:
        validate_record(rec, "x.json")
    assert "x.json" in str(err.value)
    assert "protocol.manifest_sha256: missing" in str(err.value)
    assert "metrics.fid_mean.value: 'high' is not of type 'number', 'null'" in str(err.value)
    with pytest.raises(RecordError, match="not a ctbench result record"):
        validate_record({"some": "other json"})
    newer = make_record("noise", {})
    newer["schema_version"] = 99
    with pytest.raises(RecordError, match="newer"):
        validate_record(newer)


def test_write_refuses_invalid_and_nan(tmp_path, make_record):
    with pytest.raises(RecordError):
        write_record({"kind": "ctbench.result"}, tmp_path)
    rec = make_record("noise", {"fid_mean": float("nan")})
    with pytest.raises(ValueError, match="not JSON compliant"):
        write_record(rec, tmp_path)
    assert not list(tmp_path.iterdir())


def test_read_records_skips_corrupt_and_foreign_with_warning(tmp_path, make_record):
    write_record(make_record("noise", {"fid_mean": 3.0}), tmp_path)
    (tmp_path / "corrupt.json").write_text("{not json")
    (tmp_path / "foreign.json").write_text(json.dumps({"model": "something else"}))
    with pytest.warns(UserWarning, match="skipped: ") as caught:
        records = read_records(tmp_path)
    assert [r["generator"]["name"] for _, r in records] == ["noise"]
    messages = " ".join(str(w.message) for w in caught)
    assert "corrupt.json" in messages and "foreign.json" in messages


def test_published_schema_is_valid_and_version_1_records_still_read(tmp_path, make_record):
    import jsonschema

    from ctbench.record import record_schema

    jsonschema.Draft202012Validator.check_schema(record_schema())
    old = make_record("noise", {"fid_mean": 2.0})
    old["schema_version"] = 1
    old.pop("metric_specs", None)
    assert read_record(write_record(old, tmp_path)) == old
    bad = make_record("noise", {"fid_mean": 2.0})
    bad["metric_specs"] = {"fid": {"version": 1}}
    with pytest.raises(RecordError, match="metric_specs.fid: missing|metric_specs.fid.version"):
        validate_record(bad)


def test_rank_deficient_is_a_boolean_and_old_values_lack_it(make_record):
    rec = make_record("noise", {"fid_mean": 1.0}, weights="a" * 64)
    assert "rank_deficient" not in rec["metrics"]["fid_mean"]  # as written before the field existed
    assert metric_values(validate_record(rec))["fid_mean"].rank_deficient is False
    rec["metrics"]["fid_mean"]["rank_deficient"] = True
    assert metric_values(validate_record(rec))["fid_mean"].rank_deficient is True
    rec["metrics"]["fid_mean"]["rank_deficient"] = "yes"
    with pytest.raises(RecordError, match="rank_deficient"):
        validate_record(rec)
