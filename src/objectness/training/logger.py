"""Training metrics as JSON lines (run_dir/metrics.jsonl), mirrored to TensorBoard if installed."""
import json
import logging
from pathlib import Path

METRICS = "metrics.jsonl"

log = logging.getLogger(__name__)


def read_metrics(path) -> list:
    """The records of a metrics.jsonl file (or of the one in a run folder), in order."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLogger:
    """``log(record)`` with a ``step`` key appends one JSON line and flushes it.

    Resuming at ``start_step`` drops records of later steps, which an interrupted
    run may have logged after its last checkpoint, so the file tells one history.
    """

    def __init__(self, run_dir, start_step: int = 0):
        path = Path(run_dir) / METRICS
        kept = [r for r in read_metrics(path) if r["step"] <= start_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.file = path.open("a")
        self.tensorboard = _tensorboard_writer(Path(run_dir) / "tensorboard", start_step)

    def log(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _tensorboard_writer(folder: Path, start_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    return SummaryWriter(str(folder), purge_step=start_step + 1 if start_step else None)
