"""The web page at / in a real browser (Debian's chromium + chromium-driver, headless, through
selenium): generate on a forged model, watch the progress bar move and the image appear.

The screenshot is saved as a test artifact: tests/artifacts/server-web.png (gitignored)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import fastapi  # noqa: F401  (the test extra installs the server extra)
import pytest
import selenium  # noqa: F401

from .server_helpers import LiveServer, models_dir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).parent / "artifacts"

_NO_BROWSER = "needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
if CHROMIUM is None or DRIVER is None:
    # .ci/run installs the browser and sets GOUACHE_REQUIRE_BROWSER=1: there a missing browser
    # fails the run instead of skipping the test.
    if os.environ.get("GOUACHE_REQUIRE_BROWSER") == "1":
        raise RuntimeError(_NO_BROWSER)
    pytestmark = pytest.mark.skip(reason=_NO_BROWSER)


@pytest.fixture(scope="module")
def live(tmp_path_factory, tiny_model, taesd_model):
    from gouache.server import ServerConfig

    root = models_dir(tmp_path_factory.mktemp("models"), checkpoints={"tiny": tiny_model})
    with LiveServer(ServerConfig(models_dirs=(root,), model="tiny", taesd=taesd_model, threads=1)) as server:
        server.worker("tiny")
        yield server


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1200,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_generate_from_the_page(live, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(live.url + "/")
    wait = WebDriverWait(browser, 120, poll_frequency=0.05)
    wait.until(lambda d: "model(s)" in d.find_element(By.ID, "status").text)
    assert Select(browser.find_element(By.ID, "model")).first_selected_option.text == "tiny"
    for field, value in (("width", "64"), ("height", "64"), ("steps", "12"), ("seed", "21")):
        el = browser.find_element(By.ID, field)
        el.clear()
        el.send_keys(value)
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("a red cube on a table")
    Select(browser.find_element(By.ID, "sampler")).select_by_value("euler")
    browser.find_element(By.ID, "generate").click()

    seen: list[float] = []
    previews: set[str] = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        value = float(browser.find_element(By.ID, "bar").get_attribute("value"))
        if not seen or value != seen[-1]:
            seen.append(value)
        previews.add((browser.find_element(By.ID, "preview").get_attribute("src") or "")[:23])
        if browser.find_elements(By.CSS_SELECTOR, "#gallery figure img[src^='blob:']"):
            break
        time.sleep(0.05)
    assert any(0 < v < 1 for v in seen), f"the progress bar never showed a value between 0 and 1: {seen}"
    assert seen == sorted(seen), seen
    img = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#gallery figure img[src^='blob:']"))
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img))
    assert browser.execute_script("return arguments[0].naturalWidth", img) == 64
    caption = browser.find_element(By.CSS_SELECTOR, "#gallery figure figcaption").text
    assert "a red cube on a table" in caption and "Seed: 21" in caption and "Steps: 12" in caption
    assert "data:image/jpeg;base64," in previews, f"no step preview was shown: {previews}"
    # once done, the finished image replaces the step preview
    preview = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#preview[src^='blob:']"))
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", preview))
    assert browser.execute_script("return arguments[0].naturalWidth", preview) == 64
    assert browser.find_element(By.ID, "progresstext").text == "done"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "server-web.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 0
