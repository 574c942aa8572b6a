"""End to end in a real browser (headless Chromium through selenium): `fedsnn demo` serves the page,
an attack runs and shows its reconstruction and scores, a run's report opens, a bad upload gets
its message. Skips with a one-line reason where no browser or driver is installed.

Screenshots of the three views go to $FEDSNN_DEMO_SCREENSHOTS when it is set (docs/demo.md's
pictures: `FEDSNN_DEMO_SCREENSHOTS=docs/demo pytest tests/tools/demo/test_browser.py`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"

pytestmark = pytest.mark.slow


def _browser() -> tuple[str, str]:
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    driver = shutil.which(DRIVER)
    if browser is None or driver is None:
        pytest.skip("no headless browser: install chromium and chromium-driver (apt-get)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[demo]')")
    return browser, driver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def demo_url(runs_dir: Path, tmp_path: Path) -> Iterator[str]:
    """`fedsnn demo` on a free 127.0.0.1 port, listing the fixture runs (its output goes to
    demo.log in the test's tmp_path)."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False",
           "OMP_NUM_THREADS": "1", "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    log = open(tmp_path / "demo.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "fedsnn.tools.cli", "demo", "--host",
                               "127.0.0.1", "--port", str(port), "--runs-dir", str(runs_dir)],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the demo did not start: {(tmp_path / 'demo.log').read_text()}")
                time.sleep(0.5)
        yield url
        assert server.poll() is None, "the demo server stopped"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _shots() -> Path | None:
    folder = os.environ.get("FEDSNN_DEMO_SCREENSHOTS")
    return Path(folder) if folder else None


def test_the_demo_in_a_real_browser(demo_url: str, tmp_path: Path) -> None:
    browser, driver_path = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1700"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    shots = _shots()

    def text(element_id: str) -> str:
        return driver.find_element(By.ID, element_id).text

    def wait(condition, seconds: float = 120, what: str = "") -> None:
        try:
            WebDriverWait(driver, seconds, poll_frequency=0.3).until(lambda _: condition())
        except TimeoutException:
            status = [e.text[:200] for e in driver.find_elements(By.CSS_SELECTOR, "[id$=status]")]
            errors = [e.text[:300] for e in driver.find_elements(By.CSS_SELECTOR, ".demo-error")]
            log = (tmp_path / "demo.log").read_text()[-3000:]
            pytest.fail(f"waited {seconds} s for {what}; status lines {status}; errors shown "
                        f"{errors}; server log:\n{log}")

    def tab(name: str) -> None:
        next(b for b in driver.find_elements(By.CSS_SELECTOR, "button[role='tab']")
             if b.text.strip() == name).click()

    def shown(selector: str) -> bool:  # an image that has loaded and has pixels
        return bool(driver.execute_script(
            "const i = document.querySelector(arguments[0]);"
            "return !!i && i.complete && i.naturalWidth > 0;", selector))

    def report() -> str:  # the HTML the Runs view shows
        frames = driver.find_elements(By.CSS_SELECTOR, "#report iframe")
        return (frames[0].get_attribute("srcdoc") or "") if frames else ""

    def choose(element_id: str, option: str) -> None:  # a dropdown
        driver.find_element(By.CSS_SELECTOR, f"#{element_id} input").click()
        wait(lambda: driver.find_elements(By.CSS_SELECTOR, "ul[role='listbox'] li"), 10,
             what="the dropdown's options")
        next(item for item in driver.find_elements(By.CSS_SELECTOR, "ul[role='listbox'] li")
             if item.text.strip() == option).click()

    def pick(element_id: str, option: str) -> None:  # a radio button
        next(label for label in driver.find_elements(By.CSS_SELECTOR, f"#{element_id} label")
             if label.text.strip() == option).click()

    def number(element_id: str, value: int) -> None:  # a slider's number box
        box = driver.find_element(By.CSS_SELECTOR, f"#{element_id} input[type='number']")
        box.clear()
        box.send_keys(str(value), Keys.TAB)

    try:
        driver.get(demo_url)
        wait(lambda: driver.find_elements(By.ID, "run"), 60, what="the page")

        # 1. the playground: an attack on the first embedded digit (lenet, iDLG); its one-line
        #    verdict sits atop the results and is scrolled into view (in a laptop-height window,
        #    where the results start below the fold); the glossary ends the page
        driver.set_window_size(1400, 800)
        driver.find_element(By.ID, "run").click()
        wait(lambda: "PSNR" in text("metrics"), what="the playground's metrics")
        wait(lambda: shown("#reconstruction img"), 30, what="the reconstruction image")
        metrics = text("metrics")
        assert "mean-image guess" in metrics and "Judge verdict" in metrics
        assert "Inferred label" in metrics and "ε spent" in metrics
        verdict = driver.find_elements(By.CSS_SELECTOR, "#verdict .verdict")
        assert verdict and "for a guess" in verdict[0].text, text("verdict")
        wait(lambda: driver.execute_script(
            "const box = document.getElementById('verdict').getBoundingClientRect();"
            "return window.scrollY > 0 && box.top > -2 && box.bottom <= window.innerHeight;"),
            10, what="the verdict scrolled into view")
        assert "Glossary" in text("glossary") and "canary" in text("glossary")
        driver.set_window_size(1400, 1700)
        if shots:
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(str(shots / "playground.png"))

        # 2. two tabs do not wait for each other, and Stop ends a long attack: a FedAvg update
        #    of 8 images attacked for up to its 20 s budget here, an instant one in a second tab
        pick("play-mode", "fedavg")
        number("play-batch", 8)
        number("play-iterations", 300)
        driver.find_element(By.ID, "run").click()
        wait(lambda: "step" in text("status"), 60, what="the long attack's first step")
        first = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(demo_url)
        wait(lambda: driver.find_elements(By.ID, "run"), 60, what="the second tab's page")
        choose("play-model", "mlp")
        started = time.monotonic()
        driver.find_element(By.ID, "run").click()
        wait(lambda: "PSNR" in text("metrics"), 60, what="the second tab's metrics")
        assert time.monotonic() - started < 20, "the second tab waited for the first"
        driver.close()
        driver.switch_to.window(first)
        assert "done" not in text("status")  # the long attack is still running
        driver.find_element(By.ID, "stop").click()
        wait(lambda: "stopped" in text("status") and "PSNR" in text("metrics"), 60,
             what="the stopped attack's scores")
        pick("play-mode", "gradient")
        number("play-batch", 1)

        # 3. a bad input: a file that is not an image; the message shows and the page goes on
        bad = tmp_path / "notes.png"
        bad.write_text("this is not a picture")
        driver.find_element(By.CSS_SELECTOR, "#play-upload input[type='file']").send_keys(str(bad))
        pick("play-source", "upload")
        time.sleep(1.0)  # let the upload finish before running
        driver.find_element(By.ID, "run").click()
        wait(lambda: "not an image" in text("status"), 60, what="the bad upload's message")

        # 4. ANN beside SNN: the same digit, lenet (iDLG) and lenet-snn (smooth), 20 steps each
        tab("ANN beside SNN")
        number("twins-iterations", 20)
        driver.find_element(By.ID, "run-twins").click()
        wait(lambda: "PSNR" in text("ann-metrics") and "PSNR" in text("snn-metrics"),
             what="both twins' metrics")
        wait(lambda: shown("#ann-image img") and shown("#snn-image img"), 30,
             what="both twins' images")
        assert text("ann-verdict").startswith("lenet: ")
        assert text("snn-verdict").startswith("lenet-snn: ")
        if shots:
            driver.save_screenshot(str(shots / "ann-beside-snn.png"))

        # 5. Runs: the fixture runs are listed; one opens as its report, two side by side
        tab("Runs")
        wait(lambda: "run-mlp-snn" in text("runs-list"), 30, what="the run list")
        boxes = driver.find_elements(By.CSS_SELECTOR, "#runs-list label")
        next(b for b in boxes if b.text.strip() == "run-mlp").click()
        driver.find_element(By.ID, "open-runs").click()
        wait(lambda: "Privacy audit of run" in report(), 60, what="the run's report")
        if shots:
            driver.save_screenshot(str(shots / "runs.png"))
        next(b for b in boxes if b.text.strip() == "run-mlp-snn").click()
        driver.find_element(By.ID, "open-runs").click()
        wait(lambda: "Audit comparison" in report(), 60, what="the comparison")

        # 6. a folder typed by the visitor outside --runs-dir is refused, and nothing is listed
        box = driver.find_element(By.CSS_SELECTOR, "#runs-folder textarea, #runs-folder input")
        box.clear()
        box.send_keys("/etc")
        driver.find_element(By.ID, "list-runs").click()
        wait(lambda: "outside the demo's runs folder" in text("runs-status"), 30,
             what="the refusal of a folder outside --runs-dir")
        assert "run-mlp" not in text("runs-list")
    finally:
        driver.quit()
