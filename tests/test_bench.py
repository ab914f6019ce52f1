import contextlib
import io
import json

import pytest
import torch
from torch import nn

from objectness import cli
from objectness.config import load_config
from objectness.device import autocast
from objectness.tools.bench import (
    achieved,
    build_model,
    count_flops,
    measure_peak,
    median_seconds,
    model_kernels,
)

QUICK = ["--device", "cpu", "--repeats", "1", "--warmup", "0", "--matmul-size", "256"]


def _sets(overrides) -> list:
    return [arg for override in overrides for arg in ("--set", override)]


def _bench(argv) -> tuple:
    """(exit code, printed table) of ``objectness bench ARGV``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["bench", *argv])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_overrides):
    """Every section and the profile of a tiny config: (exit code, table, JSON, JSON path)."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    argv = ["--config", "paper", *_sets(tiny_overrides), *QUICK, "--adapt-steps", "1", "--frames", "2",
            "--data", "synthetic", "--profile", "--out", str(out)]
    code, table = _bench(argv)
    return code, table, json.loads(out.read_text()), out


def test_flops_of_a_matmul_only_module_are_counted_exactly():
    m, k, n = 7, 12, 5
    layer = nn.Linear(k, n, bias=False)
    assert count_flops(lambda: layer(torch.ones(m, k))) == 2 * m * n * k


def test_median_seconds_times_the_repeats_after_the_warmup():
    calls = []
    seconds = median_seconds(lambda: calls.append(1), torch.device("cpu"), repeats=3, warmup=2)
    assert len(calls) == 5 and seconds >= 0


def test_json_holds_every_section_with_positive_numbers(full_run):
    code, _, result, _ = full_run
    assert code == 0
    assert set(result["peaks"]) == {"float32", "bfloat16"}  # the CPU's bf16 row has a peak of its own
    assert all(peak["flops_per_s"] > 0 and peak["best"] in peak["kernels"] for peak in result["peaks"].values())
    paper = result["presets"]["paper"]
    for precision in ("fp32", "bf16"):  # training and f_A in both, side by side
        train = paper["train"][precision]
        for key in ("step_s", "pairs_per_s", "flops_per_step", "flops_per_s", "peak_fraction", "peak_memory_bytes"):
            assert train[key] > 0, key
    train = paper["train"]
    assert train["bf16_speedup"] == pytest.approx(train["fp32"]["step_s"] / train["bf16"]["step_s"])
    assert train["precision"] == "fp32" == paper["precision"]  # the tiny config trains in fp32
    assert set(paper["infer"]) == {"384x384", "480p"}
    for infer in paper["infer"].values():
        assert infer["bf16_speedup"] > 0
        for precision in ("fp32", "bf16"):
            for key in ("s_per_image", "images_per_s", "flops_per_image", "peak_fraction", "peak_memory_bytes"):
                assert infer[precision][key] > 0, key
    adapt = paper["adapt"]
    assert adapt["steps_measured"] == 1 and adapt["projected"]
    assert adapt["s_for_100_steps"] == pytest.approx(100 * adapt["s_per_step"])
    assert adapt["segment_s"] > 0 and adapt["peak_memory_bytes"] > 0
    assert paper["loader"]["pairs_per_s"] > 0


def test_table_shows_every_section_the_threads_and_versions(full_run):
    _, table, result, _ = full_run
    for text in ("training step", "bf16 speed-up", "f_A: 384x384", "f_A: 480p frame", "adaptation on a 480p video",
                 "projected from 1 measured step", "segmenting its 2 frames", "loader: synthetic", "peak float32: ",
                 f"{torch.get_num_threads()} thread(s)", f"torch {torch.__version__}", "torchvision", "objectness 0.1"):
        assert text in table, text
    assert result["environment"]["threads"] == torch.get_num_threads()


def test_profile_writes_a_chrome_trace_and_times_the_parts_of_a_step(full_run):
    _, table, result, out = full_run
    profile = result["presets"]["paper"]["profile"]
    trace = out.with_name("bench.paper.trace.json")
    assert profile["trace"] == str(trace) and "traceEvents" in json.loads(trace.read_text())
    parts = profile["breakdown_s"]
    assert set(parts) == {"forward_appearance", "forward_motion", "forward_other", "loss", "backward", "optimizer", "step"}
    assert all(parts[name] > 0 for name in ("forward_appearance", "forward_motion", "loss", "backward", "optimizer"))
    assert profile["top_ops"] and "top ops by self time" in table and "forward_motion" in table


def test_only_restricts_the_sections(tmp_path, tiny_overrides):
    out = tmp_path / "bench.json"
    code, table = _bench(["--config", "paper", *_sets(tiny_overrides), *QUICK, "--only", "infer", "--out", str(out)])
    assert code == 0
    assert set(json.loads(out.read_text())["presets"]["paper"]) == {"precision", "config", "infer"}
    assert "f_A: 384x384" in table and "training step" not in table and "adaptation" not in table


def test_an_existing_out_file_is_refused_without_overwrite(tmp_path, tiny_overrides, capsys):
    out = tmp_path / "bench.json"
    out.write_text("keep")
    argv = ["bench", "--config", "paper", *_sets(tiny_overrides), *QUICK, "--only", "loader", "--data", "synthetic",
            "--out", str(out)]
    assert cli.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "keep"
    assert cli.main([*argv, "--overwrite"]) == 0
    assert json.loads(out.read_text())["presets"]["paper"]["loader"]["pairs_per_s"] > 0


def test_help_names_the_sections_and_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--config", "--set", "--device", "--only", "--repeats", "--warmup", "--adapt-steps", "--data",
                 "--profile", "--out", "--overwrite", "train", "infer", "adapt", "loader"):
        assert flag in text, flag


def test_the_peak_is_the_best_of_matmuls_and_convolutions():
    peak = measure_peak(torch.device("cpu"), torch.float32, size=64, repeats=1, warmup=0)
    kernels = peak["kernels"]
    assert any(name.startswith("matmul") for name in kernels) and any(name.startswith("conv") for name in kernels)
    assert peak["flops_per_s"] == max(k["flops_per_s"] for k in kernels.values())
    assert kernels["matmul 64x64x64"]["flops"] == 2 * 64**3
    assert peak["dtype"] == "float32" and "best of 6" in peak["method"]


def test_the_models_own_convolutions_join_the_peak():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1, stride=2))
    kernels = model_kernels(model, torch.rand(1, 3, 16, 16))
    assert len(kernels) == 2 and all("conv" in name for name in kernels)
    peak = measure_peak(torch.device("cpu"), torch.float32, size=64, repeats=1, warmup=0, extra_kernels=kernels)
    assert set(kernels) <= set(peak["kernels"]) and "2 of them the benched models' own layers" in peak["method"]
    strided = next(name for name in kernels if "stride 2" in name)
    assert peak["kernels"][strided]["flops"] == 2 * 8 * 8 * 8 * 8  # 8 -> 8 channels, 1x1, on 8 x 8 outputs


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_appearance_network_stays_within_the_peak_on_the_cpu(precision):
    """f_A of the paper preset measured 110% of a 2048^3-matmul peak, and 112% of a peak of several
    matmuls and convolutions, on AVX-512 CPUs: the peak now includes f_A's own convolutions."""
    device = torch.device("cpu")
    appearance = build_model(load_config("paper"), device).appearance.eval()
    image = torch.rand(1, 3, 384, 384)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    peak = measure_peak(device, dtype, size=2048, repeats=3, warmup=1, extra_kernels=model_kernels(appearance, image))
    def forward():
        with torch.no_grad(), autocast(device, precision):
            return appearance(image)

    flops = count_flops(forward)
    fraction = achieved(flops, median_seconds(forward, device, repeats=3, warmup=0), peak)["peak_fraction"]
    assert 0 < fraction <= 1, f"f_A at {fraction:.1%} of {peak['best']}"


def test_an_objective_that_reads_classical_flow_is_timed_on_random_flows(tmp_path, tiny_overrides):
    out = tmp_path / "bench.json"
    overrides = [*tiny_overrides, "loss.flow_fit_weight=1", "loss.view_synthesis_weight=0"]
    code, _ = _bench(["--config", "paper", *_sets(overrides), *QUICK, "--only", "train", "--profile", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())["presets"]["paper"]
    assert result["train"]["fp32"]["step_s"] > 0
    parts = result["profile"]["breakdown_s"]
    assert parts["forward_motion"] == 0 and parts["forward_appearance"] > 0 and parts["loss"] > 0


def test_compare_prints_two_runs_side_by_side_with_their_ratio(full_run, tmp_path):
    _, _, result, out = full_run
    slower = json.loads(out.read_text())
    slower["presets"]["paper"]["train"]["fp32"]["step_s"] *= 2
    (tmp_path / "slower.json").write_text(json.dumps(slower))
    code, table = _bench(["--compare", str(tmp_path / "slower.json"), str(out)])
    assert code == 0
    row = next(line for line in table.splitlines() if "training step, fp32" in line)
    assert row.rstrip().endswith("2.00x")


def test_compare_refuses_a_file_that_is_not_a_bench_result(tmp_path, capsys):
    (tmp_path / "x.json").write_text("{}")
    assert cli.main(["bench", "--compare", str(tmp_path / "x.json"), str(tmp_path / "x.json")]) == 2
    assert "not a result of objectness bench" in capsys.readouterr().err
