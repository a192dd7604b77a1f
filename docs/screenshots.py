"""Screenshots of the two tabs of `emotic app` for the README, taken in Debian's Chromium (driven by Playwright)
with the demo's model.

    make screenshots                                   # runs `make demo` first if its model is missing
    python docs/screenshots.py demo_output/attention --output_dir docs/images

Photo tab: scikit-image's astronaut (Eileen Collins) and matplotlib's Grace Hopper side by side. Video tab: a
generated video of a person the demo model never saw, with the generated expressions it was trained on. The demo
model has seen generated faces only: its labels on the real photos mean nothing; the boxes, views and attention are
what any emotic model is given.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/lib/chromium/chromium"


def photos(folder: Path) -> Path:
    import skimage.data
    from matplotlib import cbook
    from PIL import Image

    astronaut = Image.fromarray(skimage.data.astronaut())
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as grace:
        both = Image.new("RGB", (astronaut.width + grace.width, max(astronaut.height, grace.height)), "white")
        both.paste(astronaut, (0, 0))
        both.paste(grace, (astronaut.width, 0))
    both.save(folder / "two_people.png")
    return folder / "two_people.png"


def video(folder: Path) -> Path:
    import numpy as np

    from emotic.training.synthetic import synthetic_video, write_video

    frames = [image for image, _, _ in synthetic_video(np.random.default_rng(2024), 150, 112)]
    write_video(folder / "generated_person.webm", frames, fps=25)  # 6 s
    return folder / "generated_person.webm"


def start(model: str, port: int, log: Path) -> subprocess.Popen:
    with open(log, "w") as handle:
        process = subprocess.Popen([sys.executable, "-m", "emotic.cli", "app", model, "--port", str(port)],
                                   stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).close()
            return process
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                raise SystemExit(f"emotic app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a model folder (the demo's: demo_output/attention)")
    parser.add_argument("--output_dir", default="docs/images")
    args = parser.parse_args(argv)
    if not os.path.isfile(CHROMIUM):
        raise SystemExit("needs Chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch, socket.socket() as sock:
        scratch = Path(scratch)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        server = start(args.model, port, scratch / "app.log")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/")
                for tab, component, button, path, done in (
                        ("Photo", "photo-input", "photo-run", photos(scratch), "#photo-summary .emotic-label"),
                        ("Video", "video-input", "video-run", video(scratch), "#video-timeline img")):
                    page.get_by_role("tab", name=tab).click()
                    if tab == "Video":  # aligned generated faces, smoothed over 9 frames (a third of a second)
                        page.locator("#video-geometry").get_by_text("aligned face crops").click()
                        page.locator("#video-window input[type=number]").fill("9")
                        page.locator("#video-window input[type=number]").press("Enter")
                    with page.expect_response(lambda r: "/upload" in r.url and r.request.method == "POST"):
                        page.locator(f"#{component} input[type=file]").set_input_files(str(path))
                    page.locator(f"#{component} img, #{component} video").first.wait_for(state="attached")
                    page.locator(f"#{button}").click()
                    page.locator(done).first.wait_for(timeout=300_000)
                    time.sleep(1)  # let the figures finish drawing
                    page.screenshot(path=output / f"app-{tab.lower()}.jpg", full_page=True, type="jpeg", quality=85)
                    print(f"wrote {output / f'app-{tab.lower()}.jpg'}")
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
