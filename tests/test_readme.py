"""The README's Python example runs as written, on files made here (adaptation shortened to 2 steps)."""
import re
from pathlib import Path

import numpy as np
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    section = README.read_text().split("## The Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _picture(rng, height=96, width=128, shift=0) -> np.ndarray:
    image = rng.integers(40, 90, size=(height, width, 3), dtype=np.uint8)
    image[30:70, 40 + shift:80 + shift] = (210, 60, 40)
    return image


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    Image.fromarray(_picture(rng)).save(tmp_path / "photo.jpg")
    (tmp_path / "frames").mkdir()
    for t in range(3):
        Image.fromarray(_picture(rng, shift=3 * t)).save(tmp_path / "frames" / f"{t:05d}.jpg")
    for folder in ("images", "masks"):
        (tmp_path / "sod" / folder).mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray(_picture(rng)).save(tmp_path / "sod" / "images" / f"{name}.jpg")
        mask = np.zeros((96, 128), dtype=np.uint8)
        mask[30:70, 40:80] = 255
        Image.fromarray(mask).save(tmp_path / "sod" / "masks" / f"{name}.png")
    code = python_example()
    assert "steps=100" in code
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code.replace("steps=100", "steps=2"), "README.md", "exec"), namespace)
    assert namespace["soft"].shape == (96, 128) and namespace["mask"].dtype == bool
    assert namespace["per_video"].shape == namespace["per_image"].shape == (3, 96, 128)
    assert 0 <= namespace["summary"]["scores"]["fbeta_max"] <= 1
    assert (tmp_path / "eval-sod" / "summary.json").is_file()
