"""scripts/davis_folds.py: folds of the DAVIS training videos and their table."""
import importlib.util
import json
from pathlib import Path

import pytest

from objectness.data.sources import davis_split
from objectness.data.video import DataError

_spec = importlib.util.spec_from_file_location("davis_folds", Path(__file__).parents[1] / "scripts" / "davis_folds.py")
davis_folds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(davis_folds)


def _davis(root: Path, names) -> Path:
    for kind in ("JPEGImages", "Annotations"):
        for name in names:
            (root / kind / "240p" / name).mkdir(parents=True)
    (root / "ImageSets" / "240p").mkdir(parents=True)
    (root / "ImageSets" / "240p" / "train.txt").write_text("\n".join(names) + "\n")
    return root


def test_folds_partition_the_training_videos_and_train_on_the_rest(tmp_path):
    names = [f"v{i}" for i in range(7)]
    held = davis_folds.make_folds(_davis(tmp_path / "davis", names), tmp_path / "folds", folds=3)
    assert held == {"fold0": ["v0", "v3", "v6"], "fold1": ["v1", "v4"], "fold2": ["v2", "v5"]}
    lists = tmp_path / "folds" / "ImageSets" / "240p"
    for fold, videos in held.items():
        rest = davis_split(lists / f"{fold}-train.txt")
        assert davis_split(lists / f"{fold}.txt") == videos
        assert sorted(rest + videos) == sorted(names) and not set(rest) & set(videos)
    assert (tmp_path / "folds" / "JPEGImages" / "240p" / "v5").is_dir()  # linked frames


def test_folds_refuse_a_full_folder_and_too_few_videos(tmp_path):
    davis = _davis(tmp_path / "davis", ["a", "b"])
    with pytest.raises(DataError, match="cannot make 3 folds"):
        davis_folds.make_folds(davis, tmp_path / "f", folds=3)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(DataError, match="not empty"):
        davis_folds.make_folds(davis, tmp_path / "full", folds=2)


def test_the_table_gives_each_fold_the_mean_and_the_spread(tmp_path, capsys):
    for name, j in (("fold0", 0.5), ("fold1", 0.3), ("fold2", 0.4)):
        (tmp_path / name).mkdir()
        scores = {"J_mean": j, "F_mean": j / 2, "JF_mean": 3 * j / 4}
        (tmp_path / name / "summary.json").write_text(json.dumps({"scores": scores}))
    assert davis_folds.main(["table", *(str(tmp_path / f"fold{k}") for k in range(3))]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| J_mean"))
    assert row == "| J_mean | 0.500 | 0.300 | 0.400 | 0.400 | 0.200 |"
