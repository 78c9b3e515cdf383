"""Defaults defined once (defaults.py): the data roots follow the environment, and the bit
budget has one rule wherever it is given."""
from __future__ import annotations

import subprocess
import sys

import pytest

from granular_mobile import defaults
from granular_mobile.config import TileConfig, check_target_fab
from granular_mobile.errors import ConfigError


def test_data_roots_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GDQ_DATA_ROOT", str(tmp_path / "train"))
    monkeypatch.setenv("GDQ_BENCH_ROOT", str(tmp_path / "bench"))
    assert defaults.bench_root() == str(tmp_path / "bench")
    assert defaults.train_folders() == (str(tmp_path / "train" / "T91"), str(tmp_path / "train" / "BSD200"))
    from granular_mobile.train import TrainConfig

    cfg = TrainConfig()
    assert cfg.data == defaults.train_folders() and cfg.val_root == str(tmp_path / "bench")


def test_data_roots_fall_back_to_the_shared_folders(monkeypatch):
    monkeypatch.delenv("GDQ_DATA_ROOT", raising=False)
    monkeypatch.setenv("GDQ_BENCH_ROOT", "")  # empty counts as unset
    assert defaults.train_folders() == ("../shared/datasets/train/T91", "../shared/datasets/train/BSD200")
    assert defaults.bench_root() == "../shared/datasets/benchmark"


def test_cli_help_shows_the_environment_root(tmp_path):
    env_root = str(tmp_path / "bench_here")
    r = subprocess.run([sys.executable, "-m", "granular_mobile.cli", "eval", "-h"], capture_output=True, text=True,
                       env={**__import__("os").environ, "GDQ_BENCH_ROOT": env_root, "COLUMNS": "300"})
    assert r.returncode == 0 and env_root in r.stdout


def test_tile_defaults_come_from_one_place():
    assert TileConfig().tile == defaults.DEFAULT_TILE and TileConfig().step == defaults.DEFAULT_STEP


@pytest.mark.parametrize("fab, bits, ok", [(4.5, None, True), (2.0, None, True), (9.0, None, False),
                                           (1.5, None, False), (3.0, (4, 5, 6, 8), False), (8.0, (4, 5, 6, 8), True)])
def test_target_fab_has_one_rule(fab, bits, ok):
    if ok:
        check_target_fab(fab, bits)
        return
    with pytest.raises(ConfigError, match="must be within the bit levels' range"):
        check_target_fab(fab, bits)


def test_train_config_and_cli_share_the_target_fab_rule():
    from granular_mobile.train import TrainConfig

    with pytest.raises(ConfigError, match=r"``target_fab`` 9.0 must be within the bit levels' range \[2, 8\]"):
        TrainConfig(mode="qat", target_fab=9.0)


def test_the_demos_tile_as_the_python_runtime():
    """The browser and Android demos default to the runtime's tiling (defaults.py), so the three
    give the same pixels for the same image."""
    import re

    from conftest import ROOT
    from granular_mobile.defaults import DEFAULT_MERGE, DEFAULT_OVERLAP

    for path in (ROOT / "src" / "granular_mobile" / "web_page" / "src" / "pipeline.js",
                 ROOT / "android_demo" / "app" / "src" / "main" / "java" / "org" / "granularmobile" / "demo" / "SrPipeline.java"):
        text = path.read_text()
        overlap = re.search(r"DEFAULT_OVERLAP = (\d+);", text)
        merge = re.search(r"DEFAULT_MERGE = ['\"](\w+)['\"];", text)
        assert overlap and merge, f"{path.name} names no DEFAULT_OVERLAP / DEFAULT_MERGE"
        assert (int(overlap.group(1)), merge.group(1)) == (DEFAULT_OVERLAP, DEFAULT_MERGE), path.name
