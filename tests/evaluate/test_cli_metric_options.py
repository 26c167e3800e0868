"""``--metric-option`` and ``--slices``: parsed into metric options, bad ones refused with one line before sampling."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from ctbench.cli import main
from ctbench.cli.evaluate import metric_options


def test_pairs_and_slices_become_metric_options():
    assert metric_options(("fid.kid_subset_size=500", "fid.bf16=true", "fvd.tf32=false"), "body") == {
        "fid": {"kid_subset_size": 500, "bf16": True, "slices": "body"},
        "fvd": {"tf32": False},
    }
    assert metric_options((), None) == {}
    with pytest.raises(click.BadParameter, match="expected KEY=VALUE"):
        metric_options(("fid.bf16",), None)
    with pytest.raises(click.BadParameter, match="expected METRIC.KEY=VALUE"):
        metric_options(("bf16=true",), None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric-option", "fid.nosuch=1", "--metrics", "fid"], "metric 'fid' has no option nosuch; its options:"),
        (["--metric-option", "fid.kid_subset_size=1"], "kid_subset_size must be between 2 and kid_max_samples"),
        (["--slices", "lungs"], "'lungs' is not one of 'all', 'body'"),
    ],
)
def test_bad_metric_options_end_in_one_error_line_before_sampling(prepared_dir, tmp_path, args, message):
    result = CliRunner().invoke(
        main, ["evaluate", "-g", "noise", "--data", str(prepared_dir), "--n", "2", "--out", str(tmp_path), *args]
    )
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())  # nothing sampled, nothing written
