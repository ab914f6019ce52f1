import pytest

import objectness.training.train as train_module
from objectness import cli
from objectness.config import load_config, save_config
from objectness.training.logger import read_metrics


@pytest.fixture
def captured_config(monkeypatch):
    """Replace train() by a recorder: the CLI's config without training."""
    seen = {}

    def fake_train(cfg, run_dir, resume=False, overwrite=False):
        seen.update(cfg=cfg, run_dir=run_dir, resume=resume, overwrite=overwrite)
        return {"step": 0, "loss": None, "bad_frames": 0, "weights": str(run_dir / "model.safetensors")}

    monkeypatch.setattr(train_module, "train", fake_train)
    return seen


def _sets(overrides) -> list:
    return [arg for override in overrides for arg in ("--set", override)]


@pytest.mark.parametrize("name", sorted(cli.subcommands()))
def test_help_of_each_subcommand_exits_0_and_states_its_purpose(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    description = cli.subcommands()[name].description
    assert description and description.split()[0] in capsys.readouterr().out


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cli.subcommands())


def test_train_help_explains_view_synthesis(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "view synthesis" in capsys.readouterr().out


def test_unknown_config_key_is_one_error_line_and_exit_2(tmp_path, capsys):
    code = cli.main(["train", "--set", "model.nonsense=1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("objectness: error: ")
    assert "model.nonsense" in err
    assert not (tmp_path / "run").exists()


def test_missing_data_folder_is_one_error_line_and_exit_2(tmp_path, capsys, tiny_overrides):
    argv = ["train", *_sets(tiny_overrides), "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "run")]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "absent" in err
    assert not (tmp_path / "run").exists()


def test_existing_run_folder_is_one_error_line_and_exit_2(tmp_path, capsys, tiny_config):
    save_config(tiny_config, tmp_path / "config.yaml")
    code = cli.main(["train", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--overwrite" in err


def test_init_with_resume_is_one_error_line_and_exit_2(tmp_path, capsys):
    code = cli.main(["train", "--out", str(tmp_path / "run"), "--resume", "--init", str(tmp_path / "other")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--init" in err and "--resume" in err


def test_missing_init_weights_are_one_error_line_and_exit_2(tmp_path, capsys, tiny_overrides):
    argv = ["train", *_sets(tiny_overrides), "--init", str(tmp_path / "absent.safetensors"), "--out", str(tmp_path / "run")]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "absent.safetensors" in err
    assert not (tmp_path / "run").exists()


def test_flags_and_overrides_map_onto_config_keys(tmp_path, captured_config):
    argv = ["train", "--config", "paper", "--set", "model.appearance.depth=18", "--data", "synthetic",
            "--steps", "7", "--device", "cpu", "--out", str(tmp_path / "run"), "--overwrite"]
    assert cli.main(argv) == 0
    cfg = captured_config["cfg"]
    assert cfg.model.appearance.depth == 18
    assert (cfg.data.source, cfg.train.steps, cfg.train.device) == ("synthetic", 7, "cpu")
    assert captured_config["overwrite"] and not captured_config["resume"]


def test_resume_without_config_continues_with_the_run_config(tmp_path, captured_config, tiny_config):
    save_config(tiny_config, tmp_path / "config.yaml")
    assert cli.main(["train", "--out", str(tmp_path), "--resume"]) == 0
    assert captured_config["cfg"] == tiny_config
    assert captured_config["resume"]


def test_train_command_runs_on_davis(shared_data, tmp_path, tiny_overrides):
    davis = shared_data / "davis2016"
    if not davis.is_dir():
        pytest.skip(f"DAVIS 2016 not found in {shared_data}")
    argv = ["train", *_sets(tiny_overrides), "--data", str(davis), "--steps", "2", "--out", str(tmp_path / "run")]
    assert cli.main(argv) == 0
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2]
    assert load_config(str(tmp_path / "run" / "config.yaml")).data.source == str(davis)
