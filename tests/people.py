"""Videos of real people composed from the real face photos the test extras ship (scikit-image's astronaut, Eileen
Collins; matplotlib's Grace Hopper), moved, scaled, leaving and coming back: the tracking tests' and benchmark's
footage, with known truth. No side effects on import (the benchmark imports it too)."""

import numpy as np


def real_people():
    """The two people as face photos with some head and shoulders around the face (PIL images)."""
    import skimage.data
    from matplotlib import cbook
    from PIL import Image

    astronaut = Image.fromarray(skimage.data.astronaut()).crop((130, 30, 320, 230))
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as grace:
        return [astronaut, grace.convert("RGB").crop((130, 90, 420, 390))]


def compose_people(layout, size=(640, 360), seed=0) -> list[np.ndarray]:
    """Frames `(H, W, 3)` uint8 of `size` (width, height): per frame, `layout` lists `(person, x, y, height)`, the
    person (0 or 1, or any index of `real_people`, repeated as often as wanted) pasted with their photo's centre at
    `(x, y)` and `height` pixels tall, in order (later ones in front), on a grey noisy background."""
    from PIL import Image

    people = real_people()
    background = np.full((size[1], size[0], 3), 90, np.uint8) + \
        np.random.default_rng(seed).integers(0, 20, (size[1], size[0], 1), dtype=np.uint8)
    frames = []
    for placed in layout:
        frame = Image.fromarray(background)
        for person, x, y, height in placed:
            photo = people[person]
            width = round(photo.width * height / photo.height)
            frame.paste(photo.resize((width, round(height))), (round(x - width / 2), round(y - height / 2)))
        frames.append(np.asarray(frame))
    return frames


def two_people_layout(frames: int = 48, absent=(20, 30)):
    """The astronaut on the left growing from 140 to 260 px while Grace Hopper on the right shrinks from 260 to 140
    (the largest face changes person halfway), Grace out of the picture for the frames in `absent`."""
    layout = []
    for index in range(frames):
        share = index / (frames - 1)
        placed = [(0, 170, 180, 140 + 120 * share)]
        if not absent[0] <= index < absent[1]:
            placed.append((1, 470, 180, 260 - 120 * share))
        layout.append(placed)
    return layout
