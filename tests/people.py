"""Videos of real people composed from the real face photos the test extras ship (scikit-image's astronaut, Eileen
Collins; matplotlib's Grace Hopper), moved, scaled, leaving and coming back: the tracking and detector tests' and
benchmarks' footage, with known truth. No side effects on import (the benchmarks import it too)."""

from pathlib import Path

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


def portraits():
    """(photo, face box in it) for each portrait: the astronaut, Grace Hopper, the astronaut mirrored and turned."""
    import skimage.data
    from matplotlib import cbook
    from PIL import Image

    astronaut = Image.fromarray(skimage.data.astronaut())
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as grace:
        grace = grace.convert("RGB")
    turned = astronaut.transpose(Image.FLIP_LEFT_RIGHT).rotate(15, center=(288, 119))
    return [(astronaut, (175, 70, 270, 168)), (grace, (175, 135, 366, 326)), (turned, (242, 70, 337, 168))]


def portrait_video(path: Path, frames_each: int = 30, seed: int = 0):
    """The portrait video's decoded frames and, per frame, the true face box."""
    import av
    from PIL import Image

    rng = np.random.default_rng(seed)
    images, truth = [], []
    for photo, box in portraits():
        width = box[2] - box[0]
        for index in range(frames_each):
            face = 75 + 35 * index / max(1, frames_each - 1)  # face width in the frame
            scale = face / width
            side = 256 / scale
            cx = (box[0] + box[2]) / 2 + rng.uniform(-0.15, 0.15) * width
            cy = (box[1] + box[3]) / 2 + rng.uniform(-0.15, 0.15) * width
            left, top = cx - side / 2, cy - side / 2
            crop = photo.crop((left, top, left + side, top + side)).resize((256, 256), Image.BILINEAR)
            noisy = np.asarray(crop).astype(np.int16) + rng.integers(-12, 13, (256, 256, 3))
            images.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))
            x0, y0 = (box[0] - left) * scale, (box[1] - top) * scale
            truth.append((x0, y0, x0 + face, y0 + (box[3] - box[1]) * scale))
    with av.open(str(path), mode="w") as container:  # MPEG-4 at the encoder's default rate
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 256, 256, "yuv420p"
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return decoded, truth


def group_photo(face_height: float, noise: int = 12, seed: int = 0):
    """Six people in a row, each face about `face_height` pixels tall, on a grey frame of 640x360 (wider and taller
    where six people of that size need it: nobody hides anybody), with noise of +-`noise` levels; the frame, the true
    face boxes and the faces' actual height."""
    people = real_people()
    # where the face is in each person's photo (fractions of the photo), for the truth boxes
    faces = [(45 / 190, 40 / 200, 140 / 190, 138 / 200), (45 / 290, 45 / 300, 236 / 290, 236 / 300)]
    photo_height = face_height / ((faces[0][3] - faces[0][1] + faces[1][3] - faces[1][1]) / 2)
    widest = max(photo.width / photo.height for photo in people) * photo_height
    size = (max(640, int(6 * widest + 40)), max(360, int(photo_height + 40)))
    xs = 20 + widest / 2 + np.arange(6) * (size[0] - 40 - widest) / 5
    centre = size[1] / 2
    layout = [[(index % 2, x, centre, photo_height) for index, x in enumerate(xs)]]
    frame = compose_people(layout, size=size)[0].astype(np.int16)
    frame += np.random.default_rng(seed).integers(-noise, noise + 1, frame.shape, dtype=np.int16)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    truth = []
    for index, x in enumerate(xs):
        photo = people[index % 2]
        width = photo.width * photo_height / photo.height
        x0, y0 = x - width / 2, centre - photo_height / 2
        fx0, fy0, fx1, fy1 = faces[index % 2]
        truth.append((x0 + fx0 * width, y0 + fy0 * photo_height, x0 + fx1 * width, y0 + fy1 * photo_height))
    return frame, truth, photo_height * (faces[0][3] - faces[0][1])


def matched(found, truth) -> tuple[int, int]:
    """(true faces found, false detections): a detection is a hit when its landmarks' centre lies in a true box not
    already taken."""
    taken, false = set(), 0
    for landmarks, _, _ in found:
        x, y = landmarks.mean(axis=0)
        hits = [i for i, box in enumerate(truth) if box[0] <= x <= box[2] and box[1] <= y <= box[3] and i not in taken]
        if hits:
            taken.add(hits[0])
        else:
            false += 1
    return len(taken), false
