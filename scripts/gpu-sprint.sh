#!/usr/bin/env bash
# The GPU sprint of issue 12: CUDA tests, `objectness bench` on CUDA, a time-limited
# training run of the gpu-sprint preset on the packed DAVIS frames, the channel choice.
# From the repository root, through the device tool (docs/benchmarks.md, section CUDA):
#   run(command="bash scripts/gpu-sprint.sh", carry=["carry"], timeout_s=590)
# Results go to $OUT (at most 8 files). SPRINT_TINY=1 rehearses it on a CPU in seconds;
# PYTHON names the interpreter (default: python3).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_MININTERVAL=10
tiny=(); [ "${SPRINT_TINY:-0}" != 0 ] && tiny=(--tiny)
exec "${PYTHON:-python3}" scripts/gpu_sprint.py --out "${OUT:-out/gpu-sprint}" ${tiny[@]+"${tiny[@]}"} "$@"
