"""A SLURM array over quant_pretraining's runs (shared.launch --shards): each shard trains its own runs,
the merge job after the array trains nothing and reports all of them."""

import json

import pytest

from papers.quant_pretraining.reproduce import main


def _cache(out):
    return sorted(p.name.split("-seed")[0] for p in out.glob("quant_pretraining/smoke/train-cache/*.json"))


@pytest.mark.slow
def test_shards_train_disjoint_runs_and_the_merge_reports_them_all(tmp_path, caplog):
    out = tmp_path / "runs"
    assert main(["--scale", "smoke", "--out", str(out), "--set", "num_shards=2", "--set", "shard=1"]) == 0
    assert _cache(out) == ["w8a8g8_per_token"]  # runs 0, 1, 2: shard 1 of 2 trains run 1 only
    assert [r for r in caplog.records if r.getMessage().startswith("training 1 of 3 runs")]
    assert not list(out.glob("quant_pretraining/smoke/*/results.json"))  # a shard does not report
    assert main(["--scale", "smoke", "--out", str(out), "--set", "num_shards=2", "--set", "shard=0"]) == 0
    assert _cache(out) == ["baseline", "v8_per_channel", "w8a8g8_per_token"]
    caplog.clear()
    assert main(["--scale", "smoke", "--out", str(out)]) == 0  # the merge job
    assert not [r for r in caplog.records if r.getMessage().startswith("training ")]
    (results,) = out.glob("quant_pretraining/smoke/*/results.json")  # one run folder for every shard
    assert json.loads(results.read_text())["targets"]


def test_shard_out_of_range_is_refused(capsys):
    assert main(["--scale", "smoke", "--set", "num_shards=2", "--set", "shard=2", "--dry-run"]) == 2
    assert "shard=2: must be in [0, num_shards=2)" in capsys.readouterr().err
