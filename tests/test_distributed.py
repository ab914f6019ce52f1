import subprocess
import sys
import textwrap

import torch

from objectness.training import distributed

# Runs under torchrun: trains, then each rank saves the parameters of its model replica.
RANK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    import objectness.training.step as step_module
    import objectness.training.train as train_module
    from objectness.config import load_config

    replicas = []
    step = step_module.training_step

    def remembering_step(model, *args):
        replicas.append(model)
        return step(model, *args)

    step_module.training_step = remembering_step
    run_dir, out = sys.argv[1], sys.argv[2]
    train_module.train(load_config(None, sys.argv[3:]), run_dir)
    model = replicas[-1]
    torch.save({"wrapped": type(model).__name__, "params": dict(model.module.named_parameters())},
               f"{out}/rank{os.environ['RANK']}.pt")
    """
)


def test_single_process_is_rank_0_of_a_world_of_one():
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)


def test_single_process_all_reduce_is_the_identity():
    values = torch.tensor([1.0, 3.0])
    assert torch.equal(distributed.all_reduce_mean(values), values)
    assert torch.equal(distributed.all_reduce_sum(values), values)


def test_single_process_model_is_not_wrapped():
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, torch.device("cpu")) is model
    assert distributed.gather_objects("state") == ["state"]


def test_two_process_ddp_keeps_parameters_identical(tmp_path, tiny_overrides):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(script), str(tmp_path / "run"), str(tmp_path), *tiny_overrides, "train.steps=3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["wrapped"] == "DistributedDataParallel"
    assert all(torch.equal(p, rank1["params"][name]) for name, p in rank0["params"].items())
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert len(checkpoint["rng"]) == 2  # one RNG state per process
    assert all(torch.equal(p, checkpoint["model"][name]) for name, p in rank0["params"].items())
