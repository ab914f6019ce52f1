"""The pages in a real browser: an evaluation's report.html, and ``objectness app`` from upload to results.

Headless Chromium through its ChromeDriver (Debian's packages chromium and
chromium-driver; .ci/run installs them), driven by Selenium; nothing is
downloaded. Each test leaves a screenshot in its tmp_path.
"""
import base64
import contextlib
import importlib.util
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

import numpy as np
import pytest
from PIL import Image

from objectness.evaluation.evaluate import evaluate
from objectness.inference.segmenter import load_segmenter

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# As root, and on a machine whose network reaches nothing: no sandbox, no background connections.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1200,900", "--hide-scrollbars")
APP_START_SECONDS = 90  # importing PyTorch and Gradio on a busy 2-core machine
RESULT_SECONDS = 60


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no Chromium and ChromeDriver on the PATH (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + (f"--user-data-dir={tmp_path / 'chromium-profile'}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def _box(size, top, left):
    """A bright box on a dark ground, and its mask."""
    mask = np.zeros(size, bool)
    mask[top:top + size[0] // 2, left:left + size[1] // 2] = True
    return np.where(mask[..., None], 230, 30).astype(np.uint8).repeat(3, axis=2), mask


def _saliency_set(root, count=4, size=(60, 80)):
    for index in range(count):
        image, mask = _box(size, 5 * index, 8 * index)
        for folder, picture in (("images", image), ("masks", mask.astype(np.uint8) * 255)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture).save(root / folder / f"{index}.png")
    return root


def _screenshot(browser, path):
    """The whole page, 1200 pixels wide, as a person scrolling through it would see it."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 1200, "height": height, "deviceScaleFactor": 1, "mobile": False})
    browser.save_screenshot(str(path))


def _natural_width(browser, image):
    return browser.execute_script("return arguments[0].complete ? arguments[0].naturalWidth : 0", image)


def _shown(browser):
    """The result images that have loaded: objectness map, mask, overlay."""
    return [image for key in ("soft", "mask", "overlay")
            for image in browser.find_elements(By.CSS_SELECTOR, f"#{key} img") if _natural_width(browser, image) > 0]


def test_the_report_shows_its_figures_and_scores(browser, tmp_path):
    summary = evaluate(load_segmenter("centre-prior"), "saliency", _saliency_set(tmp_path / "sod"), tmp_path / "eval",
                       model_name="centre-prior", progress=False)
    browser.get((tmp_path / "eval" / "report.html").as_uri())
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == 4  # precision-recall, F-beta against threshold, best and worst
    for image in images:
        source = image.get_attribute("src")
        assert source.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))) as figure:
            low, high = figure.convert("L").getextrema()
            assert min(figure.size) > 100 and low < high  # drawn, not blank
        assert _natural_width(browser, image) > 0
    for metric in ("fbeta_max", "mae", "s_measure"):
        cell = browser.find_element(By.XPATH, f"//td[text()='{metric}']/following-sibling::td[1]")
        assert cell.text == f"{summary['scores'][metric]:.3f}"
    _screenshot(browser, tmp_path / "report.png")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _app(temp, log, checkpoint="centre-prior"):
    """``objectness app`` in a process of its own, its temporary files in ``temp`` and its output in ``log``;
    yields its URL, then stops it as a user would (SIGTERM, as Ctrl+C)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    with open(log, "w") as output:
        process = subprocess.Popen([sys.executable, "-m", "objectness.cli", "app", "--checkpoint", checkpoint,
                                    "--port", str(port)], stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + APP_START_SECONDS
        while True:
            assert process.poll() is None, f"the app stopped: {log.read_text()}"
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=5).close()
                break
            assert time.monotonic() < deadline, f"the app did not answer on {url} in {APP_START_SECONDS} s"
            time.sleep(0.5)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()


NO_GRADIO = importlib.util.find_spec("gradio") is None


@pytest.mark.skipif(NO_GRADIO, reason="gradio is not installed (pip install -e '.[app]')")
def test_the_app_segments_an_upload_shows_its_results_and_keeps_nothing(browser, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    photo = tmp_path / "photo.png"
    Image.fromarray(_box((120, 160), 30, 40)[0]).save(photo)
    (tmp_path / "notes.txt").write_text("not an image")
    with _app(temp, tmp_path / "app.log") as url:
        browser.get(url)
        wait = WebDriverWait(browser, RESULT_SECONDS)
        upload = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#uploads input[type=file]"))
        upload.send_keys(f"{photo}\n{tmp_path / 'notes.txt'}")
        wait.until(lambda b: all(name in b.find_element(By.ID, "uploads").text for name in ("photo", "notes")))
        browser.find_element(By.ID, "segment").click()
        shown = wait.until(lambda b: _shown(b) if len(_shown(b)) == 3 else None)
        assert [_natural_width(browser, image) for image in shown] == [160] * 3
        message = browser.find_element(By.ID, "message").text
        assert "1 frame(s) of 1 file(s) segmented" in message
        assert "notes.txt: not an image or a video that can be read" in message
        mask = shown[1].get_attribute("src")
        box = browser.find_element(By.CSS_SELECTOR, "#threshold input[type=number]")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("0.9", Keys.TAB)  # the cached map is cut again: a new mask, no new segmentation
        wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#mask img").get_attribute("src") != mask,
                   "the mask did not follow the threshold")
        browser.find_element(By.XPATH, "//button[contains(., 'Zip the')]").click()
        link = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#download a[download]"), "no zip to download")
        with urllib.request.urlopen(link.get_attribute("href"), timeout=10) as response:
            archive = zipfile.ZipFile(io.BytesIO(response.read()))
        assert {"photo_soft.png", "photo_mask.png", "photo_overlay.jpg", "settings.json"} == set(archive.namelist())
        assert json.loads(archive.read("settings.json"))["threshold"] == 0.9
        _screenshot(browser, tmp_path / "app.png")
    assert not list(temp.glob("objectness-app-*"))  # uploads, shown images and zips went with the app
    assert not (temp / "gradio").exists()
