"""`emotic app`: what the page computes (every face, both views, the fusion attention, the video timeline and its
files, equal to `pipeline` and `emotic predict`), the Space that serves it from the Hub, and the page itself in a
real browser (Debian's Chromium driven by Playwright), offline."""

import csv
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotic.training.synthetic import write_video

from conftest import TINY, emotic_cli, free_port, hub_env
from people import compose_people, two_people_layout

CHROMIUM = "/usr/lib/chromium/chromium"  # Debian's `chromium` package (/usr/bin/chromium is a shell wrapper)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny dual-view model folder, real face photos, a not-an-image, and short videos of a real face."""
    import skimage.data
    from matplotlib import cbook
    from transformers import set_seed

    from emotic import EmoticConfig, EmoticForImageClassification, EmoticImageProcessor

    root = tmp_path_factory.mktemp("app")
    set_seed(0)
    EmoticForImageClassification(EmoticConfig(**TINY)).save_pretrained(root / "model")
    EmoticImageProcessor(size=32).save_pretrained(root / "model")
    astronaut = Image.fromarray(skimage.data.astronaut())
    astronaut.save(root / "astronaut.png")
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as grace:
        both = Image.new("RGB", (512 + grace.width, max(512, grace.height)), "white")
        both.paste(astronaut, (0, 0))
        both.paste(grace, (512, 0))
    both.save(root / "two_faces.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)).save(
        root / "noise.png")  # no face, and over 1 MB
    (root / "not_a_photo.jpg").write_text("these are words, not pixels\n")
    (root / "notes.txt").write_text("notes\n")
    face = astronaut.crop((100, 0, 356, 256))
    frames = [face.rotate(index % 30 - 15).resize((128, 128)) for index in range(60)]
    write_video(root / "clip.webm", frames[:30], fps=10)  # 3 s
    write_video(root / "long.webm", frames, fps=10)  # 6 s
    write_video(root / "people.webm", [Image.fromarray(frame) for frame in compose_people(two_people_layout(30,
                                                                                                       (12, 18)))],
                fps=10)  # two real people, one away for 0.6 s
    return root


@pytest.fixture(scope="module")
def analyser(files):
    from emotic.app import Analyser
    from emotic.inference.runtime import load_model

    return Analyser(*load_model(str(files / "model"), "cpu"), max_video_seconds=5)


def top_label(model_dir, photo) -> str:
    from transformers import pipeline

    return pipeline("image-classification", model=str(model_dir), trust_remote_code=False)(str(photo))[0]["label"]


def test_every_face_is_found_largest_first_with_both_views_and_the_fusion_attention(files, analyser):
    pixels, faces = analyser.faces(str(files / "two_faces.png"))
    assert pixels.shape == (600, 1024, 3) and len(faces) == 2
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas[0] > areas[1]
    assert faces[0].box[0] > 512 > faces[1].box[2]  # Grace Hopper's (larger) face on the right, the astronaut's left
    for face in faces:
        assert face.main_view.shape == face.aux_view.shape == (32, 32, 3) and face.main_view.dtype == np.uint8
        assert face.attention.shape == (4, 4) and (face.attention >= 0).all()  # 4x4 auxiliary patches
        assert abs(face.probabilities.sum() - 1) < 1e-5
        x0, y0, x1, y1 = face.box
        for region in face.regions.values():  # eyes, nose and mouth lie inside the face
            assert x0 <= region[0] < region[2] <= x1 and y0 <= region[1] < region[3] <= y1
    # the largest face alone is what `pipeline` classifies: the same probabilities
    from transformers import pipeline

    scores = pipeline("image-classification", model=str(files / "model"), trust_remote_code=False)(
        str(files / "astronaut.png"), top_k=8)
    _, (alone,) = analyser.faces(str(files / "astronaut.png"))
    expected = np.array([next(s["score"] for s in scores if s["label"] == label) for label in analyser.labels])
    assert np.abs(alone.probabilities - expected).max() < 1e-6


def test_a_photo_without_a_face_and_a_model_without_fusion_attention(files, analyser, tmp_path):
    from emotic import EmoticForImageClassification, EmoticImageProcessor
    from emotic.app import Analyser, attention_overlay

    with pytest.raises(ValueError, match="no face found in this photo"):
        analyser.faces(str(files / "noise.png"))
    model = EmoticForImageClassification.from_pretrained(files / "model", fusion_strategy="none")
    _, (face,) = Analyser(model, EmoticImageProcessor(size=32)).faces(str(files / "astronaut.png"))
    assert face.attention is None and attention_overlay(face.aux_view, None) is face.aux_view


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_the_video_files_are_those_of_emotic_predict_for_every_window(files, analyser, tmp_path):
    """Raw probabilities once, then any smoothing window: the per-frame CSV and the submission are byte for byte
    those `emotic predict` writes with that window for the largest face (the video tab follows one person)."""
    result = analyser.video(str(files / "clip.webm"))
    assert len(result.locations) == 30 and result.fps == 10 and result.raw.shape == (30, 8)
    for window, mode in ((1, "mean"), (5, "gaussian")):
        csv_path, submission = analyser.write_outputs(result, analyser.smoothed(result, window, mode),
                                                      tmp_path / f"app-{window}")
        out = tmp_path / f"predict-{window}"
        done = emotic_cli("predict", files / "model", files / "clip.webm", "--output_dir", out,
                          "--smoothing_window", window, "--smoothing_mode", mode, "--faces", "largest")
        assert done.returncode == 0, done.stderr
        assert read_csv(csv_path) == read_csv(out / "frames" / "clip.csv")
        assert submission.read_bytes() == (out / "submission.txt").read_bytes()
    with pytest.raises(ValueError, match="allowed: an odd integer"):
        analyser.smoothed(result, 4, "mean")


def test_every_person_of_a_video_is_tracked_with_the_files_of_emotic_predict(files, analyser, tmp_path):
    """The video tab's people: the tracked CSV and per-person submission are byte for byte those `emotic predict`
    writes (every face, its default for a video file), for any window; the picture numbers the people."""
    result = analyser.people(str(files / "people.webm"))
    assert result.frames == 30 and [track["track"] for track in result.tracks] == [1, 2]
    for window in (1, 5):
        csv_path, submission = analyser.write_outputs(result, analyser.smoothed(result, window, "mean"),
                                                      tmp_path / f"app-{window}")
        out = tmp_path / f"predict-{window}"
        done = emotic_cli("predict", files / "model", files / "people.webm", "--output_dir", out,
                          "--smoothing_window", window)
        assert done.returncode == 0, done.stderr
        assert csv_path.read_bytes() == (out / "frames" / "people.csv").read_bytes()
        assert submission.read_bytes() == (out / "submission.txt").read_bytes()
    picture = analyser.people_picture(str(files / "people.webm"), result)
    assert picture.size == (640, 360)


def test_the_live_session_tracks_each_person_draws_them_and_appends_the_session_csv(analyser, tmp_path):
    """The live tab's session, frame by frame (what the camera sends): two real people, one away for 0.6 s, get
    ids 1 and 2 that hold across the absence, each frame is drawn with a box per person in that person's colour, and
    the session's CSV has a row per face (the label the model gave), appended as frames come."""
    from emotic.app import FACE_COLOURS, LiveSession

    session = LiveSession(analyser, tmp_path, fps=10)
    frames = compose_people(two_people_layout(30, (12, 18)))
    counts = []
    for index, frame in enumerate(frames):
        drawn, results = session.frame(frame)
        assert drawn.size == (640, 360)
        counts.append(sum(result.face is not None for result in results))
        if index == 5:  # both people boxed in their own colours
            pixels = np.asarray(drawn).reshape(-1, 3)
            for colour in FACE_COLOURS[:2]:
                rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
                assert (pixels == rgb).all(1).sum() > 100, colour
            assert len(list(csv.DictReader(open(session.csv_path)))) == sum(counts)  # flushed as it goes
    session.close()
    rows = list(csv.DictReader(open(session.csv_path)))
    assert {row["track"] for row in rows} == {"1", "2"} and len(rows) == sum(max(n, 1) for n in counts)
    assert counts[14] == 1 and counts[25] == 2  # one person while the other is away, both after
    assert all(row["label"] == row["raw_label"] for row in rows if row["track"])
    assert len(session.timeline().axes) == 2


def test_a_long_video_and_a_file_that_is_not_a_video_are_refused_by_name(files, analyser, tmp_path):
    with pytest.raises(ValueError, match=r"the video is 6\.0 s long; this app takes videos up to 5 s"):
        analyser.video(str(files / "long.webm"))
    shutil.copyfile(files / "notes.txt", tmp_path / "notes.webm")
    with pytest.raises(ValueError, match="cannot be read as a video"):
        analyser.video(str(tmp_path / "notes.webm"))


def test_the_space_export_pushes_and_its_app_loads_the_model_by_its_hub_id(hub, files, tmp_path):
    from huggingface_hub import SpaceCard

    env = hub_env(hub, tmp_path)
    result = emotic_cli("export", files / "model", "--output_dir", tmp_path / "export", "--repo_id",
                        "testuser/emotic-tiny", "--space", tmp_path / "space", env=env)
    assert result.returncode == 0, result.stderr
    space = tmp_path / "space"
    assert sorted(p.name for p in space.iterdir()) == ["README.md", "app.py", "requirements.txt"]
    card = SpaceCard.load(space / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py" and card.data.models == ["testuser/emotic-tiny"]
    assert (space / "requirements.txt").read_text().startswith("emotic[app,faces]==")
    assert 'load_app("testuser/emotic-tiny"' in (space / "app.py").read_text()

    (space / ".env").write_text("HF_TOKEN=x\n")  # a stray dotfile is never published
    result = emotic_cli("push", space, "testuser/emotic-demo", "--repo_type", "space", env=env)
    assert result.returncode == 2 and ".env" in result.stderr
    (space / ".env").unlink()
    for args in (("push", tmp_path / "export", "testuser/emotic-tiny"),
                 ("push", space, "testuser/emotic-demo", "--repo-type", "space")):
        result = emotic_cli(*args, env=env)
        assert result.returncode == 0, result.stderr

    script = textwrap.dedent("""
        import json, runpy, sys
        from huggingface_hub import HfApi, snapshot_download
        folder = snapshot_download("testuser/emotic-demo", repo_type="space")
        info = HfApi().space_info("testuser/emotic-demo")
        namespace = runpy.run_path(folder + "/app.py")  # as the Space runs it, less the launch
        demo = namespace["demo"]
        print(json.dumps({"sdk": info.sdk, "type": type(demo).__name__, "title": demo.title}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        '{"sdk": "gradio", "type": "Blocks", "title": "emotic: emotic-tiny"}')


def test_a_space_folder_is_refused_when_incomplete_or_when_export_would_overwrite_it(files, tmp_path):
    from emotic.hub_cards.export import write_space
    from emotic.hub_cards.push import check_publishable

    space = write_space(tmp_path / "space", "testuser/emotic-tiny")
    card = (space / "README.md").read_text()
    (space / "README.md").write_text(card.replace("sdk: gradio\n", ""))
    with pytest.raises(ValueError, match="`sdk:` in the metadata of README.md"):
        check_publishable(space, repo_type="space")
    with pytest.raises(ValueError, match="not empty; pass --overwrite"):
        write_space(space, "testuser/emotic-tiny")
    (space / "notes.txt").write_text("mine\n")
    with pytest.raises(ValueError, match=r"did not write \(notes.txt\)"):
        write_space(space, "testuser/emotic-tiny", overwrite=True)
    assert (space / "notes.txt").read_text() == "mine\n"  # nothing removed
    with pytest.raises(ValueError, match="--repo_id as namespace/name"):
        write_space(tmp_path / "other", "emotic-tiny")


# -- the page, in a real browser -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(files, tmp_path_factory):
    """`emotic app` on 127.0.0.1, with a 1 MB upload limit and 5-second videos; its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "app.log"
    scratch = tmp_path_factory.mktemp("server-tmp")  # the app's temporary directory, checked after it stops
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "emotic.cli", "app", str(files / "model"), "--port", str(port), "--max_file_mb", "1",
             "--max_video_seconds", "5"], stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(scratch)})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f"emotic app did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)
    yield url, log, process
    process.terminate()  # SIGTERM, as a service manager stops it
    process.wait(timeout=30)
    assert process.returncode == 0, log.read_text()[-3000:]
    assert not list(scratch.glob("emotic-app-*")), "the app left its folder of downloads behind after SIGTERM"


@pytest.fixture(scope="module")
def playwright():
    """Playwright, once per module (its sync API runs one event loop per thread: every browser comes from it)."""
    from playwright.sync_api import sync_playwright

    assert os.path.isfile(CHROMIUM), ("the browser test needs Chromium: apt-get install chromium (as root; "
                                      "`make test` installs it)")
    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def page(server, playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.requested_hosts = set()
    page.on("request", lambda request: page.requested_hosts.add(request.url.split("/")[2]))
    page.goto(server[0])
    yield page
    browser.close()


def upload(page, component: str, path, button: str | None = None):
    """Put a file into a component, as a user choosing it does; with `button`, wait until the server has the file,
    then press the button."""
    clear = page.locator(f"#{component} button[aria-label='Clear']")  # a video shown hides the file chooser
    if clear.count():
        clear.click()
    chooser = page.locator(f"#{component} input[type=file]")
    if button is None:  # refused in the page, or nothing more to do
        chooser.set_input_files(str(path))
        return
    with page.expect_response(lambda response: "/upload" in response.url and response.request.method == "POST"):
        chooser.set_input_files(str(path))
    page.locator(f"#{component} img, #{component} video").first.wait_for(state="attached")
    page.locator(f"#{button}").click()


def toast(page) -> str:
    """The text of the messages the page shows, once they appear; then closes them."""
    page.locator(".toast-body").first.wait_for(timeout=60_000)
    text = "\n".join(page.locator(".toast-body").all_inner_texts())
    for close in page.locator(".toast-close").all():
        close.click()
    page.wait_for_function("document.querySelectorAll('.toast-body').length == 0")
    return text


def test_the_photo_tab_in_a_browser_shows_faces_views_attention_and_the_pipelines_label(files, page, server,
                                                                                        tmp_path):
    upload(page, "photo-input", files / "astronaut.png", "photo-run")
    label = page.locator("#photo-summary .emotic-label").first
    label.wait_for(timeout=60_000)
    assert label.inner_text() == top_label(files / "model", files / "astronaut.png")
    captions = page.locator("#photo-views").inner_text()
    for caption in ("face 1", "main view", "auxiliary view", "fusion attention"):
        assert caption in captions
    assert page.locator("#photo-views img").count() == 3  # main, auxiliary, attention
    page.locator("#photo-chart img").wait_for()  # the probability chart, drawn
    assert page.locator("#photo-annotated img").count() == 1
    page.screenshot(path=tmp_path / "photo.png", full_page=True)

    upload(page, "photo-input", files / "two_faces.png", "photo-run")
    page.locator("#photo-summary").get_by_text("Face 2").wait_for(timeout=60_000)
    assert page.locator("#photo-summary .emotic-label").count() == 2
    page.wait_for_function("document.querySelectorAll('#photo-views img').length == 6")
    page.screenshot(path=tmp_path / "two_faces.png", full_page=True)
    assert (tmp_path / "photo.png").stat().st_size > 10_000


def test_bad_uploads_get_a_message_in_the_page_and_no_stack_trace(files, page, server, tmp_path):
    """A file that is not an image (by its name, or by its bytes), a photo without a face, a file over the upload
    limit: each gets one plain message, and the server stays up."""
    upload(page, "photo-input", files / "notes.txt")  # refused by its type before it is sent
    assert "Invalid file type: notes.txt. Only image/* allowed." in toast(page)
    upload(page, "photo-input", files / "not_a_photo.jpg", "photo-run")
    text = toast(page)
    assert "not_a_photo.jpg cannot be read as an image" in text and "Traceback" not in text and "/" not in text
    small = tmp_path / "small_noise.png"
    Image.open(files / "noise.png").resize((300, 300)).save(small)  # under 1 MB, no face
    upload(page, "photo-input", small, "photo-run")
    assert "no face found in this photo" in toast(page)
    upload(page, "photo-input", files / "noise.png")  # 1.1 MB: over --max_file_mb 1
    assert 'exceed the maximum allowed size of 1.0 Mb: "noise.png"' in toast(page)
    page.screenshot(path=tmp_path / "refused.png", full_page=True)
    assert server[2].poll() is None  # the server is still up
    import emotic.app

    assert not Path(emotic.app.__file__).with_suffix(".pyi").exists()  # Gradio wrote nothing into the package


def read_csv_at(page, name: str) -> list:
    """The CSV file the page offers for download as `name`, fetched as the browser would."""
    href = page.locator(f"#video-files a[download='{name}']").get_attribute("href")
    return list(csv.reader(page.request.get(href).text().splitlines()))


def test_the_video_tab_in_a_browser_draws_the_timeline_and_offers_the_predict_files(files, page, server, tmp_path,
                                                                                    analyser):
    page.get_by_role("tab", name="Video").click()
    upload(page, "video-input", files / "long.webm", "video-run")
    assert "the video is 6.0 s long; this app takes videos up to 5 s" in toast(page)

    upload(page, "video-input", files / "clip.webm", "video-run")
    page.locator("#video-summary").get_by_text("Smoothed label").wait_for(timeout=120_000)
    assert "30 frames" in page.locator("#video-summary").inner_text()
    page.locator("#video-timeline img").wait_for()
    assert page.locator("#video-files a[download]").evaluate_all("links => links.map(a => a.download)") == [
        "clip.csv", "submission.txt"]
    page.screenshot(path=tmp_path / "video.png", full_page=True)

    page.locator("#video-people img").wait_for()  # the frame with the most people, numbered
    assert "1 person tracked" in page.locator("#video-summary").inner_text()

    # a new window re-smooths without running the model again; the CSV offered is that window's
    result = analyser.people(str(files / "clip.webm"))
    expected = read_csv(analyser.write_outputs(result, analyser.smoothed(result, 5, "mean"), tmp_path / "expected")[0])
    assert read_csv_at(page, "clip.csv") != expected
    page.locator("#video-window input[type=number]").fill("5")
    page.locator("#video-window input[type=number]").press("Enter")
    deadline = time.time() + 60
    while read_csv_at(page, "clip.csv") != expected and time.time() < deadline:  # the list is replaced when written
        time.sleep(0.5)
    assert read_csv_at(page, "clip.csv") == expected
    assert page.requested_hosts == {server[0].split("/")[2]}  # nothing fetched from anywhere else


def test_the_live_tab_in_a_browser_boxes_each_person_of_the_camera_and_offers_the_session_csv(server, playwright,
                                                                                             tmp_path):
    """Chromium's fake camera playing a two-person video (a .y4m file, as a webcam would send): started in the live
    tab, the page shows the frames with the people boxed and labelled, and the session's CSV, which holds both
    people's rows."""
    camera = tmp_path / "two.y4m"
    with open(camera, "wb") as out:
        out.write(b"YUV4MPEG2 W640 H360 F10:1 Ip A1:1 C420jpeg\n")
        for frame in compose_people(two_people_layout(30, (40, 40))):  # both always there
            y, u, v = Image.fromarray(frame).convert("YCbCr").split()
            out.write(b"FRAME\n" + y.tobytes() + u.resize((320, 180)).tobytes() + v.resize((320, 180)).tobytes())
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}"])
    try:
        page = browser.new_context(permissions=["camera"]).new_page()
        page.goto(server[0])
        page.get_by_role("tab", name="Live").click()
        page.locator("#live-camera").get_by_text("Click to Access Webcam").click()
        page.locator("#live-camera").get_by_role("button", name="capture photo").click()  # start streaming
        page.locator("#live-view img").wait_for(timeout=60_000)
        page.locator("#live-file a").first.wait_for(timeout=60_000)
        time.sleep(3)  # a few more frames
        page.screenshot(path=tmp_path / "live.png", full_page=True)
        csv_url = page.locator("#live-file a").first.get_attribute("href")
    finally:
        browser.close()
    with urllib.request.urlopen(csv_url) as response:
        rows = list(csv.DictReader(response.read().decode().splitlines()))
    # the camera can send a frame before its video starts (blank): a row without anyone, as for any empty frame;
    # from the first frame anyone is seen on, every row is one of the two people, each with their own id and label
    first = next(index for index, row in enumerate(rows) if row["status"] != "no_face")
    assert all(row["status"] == "no_face" and not row["track"] for row in rows[:first]) and first <= 2
    assert {row["track"] for row in rows[first:]} == {"1", "2"} and all(row["label"] for row in rows[first:])
