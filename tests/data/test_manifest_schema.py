"""The manifest's published JSON Schema: checked on read (naming the file and field) and on write."""

from __future__ import annotations

import dataclasses
import json

import jsonschema
import pytest

from ctbench.data.prepared import load_manifest
from ctbench.schemas import schema


def test_schema_is_valid_and_a_prepared_manifest_passes(prepared_dir, tmp_path):
    jsonschema.Draft202012Validator.check_schema(schema("manifest"))
    manifest = dataclasses.replace(load_manifest(prepared_dir), root=tmp_path)
    manifest.save()  # validated before writing
    assert load_manifest(tmp_path).sha256 == manifest.sha256
    manifest.cases[0].status = "finished"
    with pytest.raises(ValueError, match="refusing to write an invalid manifest: cases.0.status"):
        manifest.save()


def test_a_finished_case_without_its_volume_is_refused(prepared_dir, tmp_path):
    d = json.loads((prepared_dir / "manifest.json").read_text())
    ok = [i for i, c in enumerate(d["cases"]) if c["status"] == "ok"][-1]
    assert ok != 0
    del d["cases"][ok]["output"]
    d["cases"][0]["status"] = "done"
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="not a valid ctbench manifest") as err:
        load_manifest(tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'manifest.json'}: not a valid ctbench manifest: ")
    assert f"cases.{ok}.output: missing" in msg and "cases.0.status: 'done' is not one of" in msg
