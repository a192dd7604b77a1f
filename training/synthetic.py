"""Procedurally drawn faces whose expression lives in the eyes, brows and mouth, with the 68 landmarks drawn.

A smoke-scale stand-in for facial-expression data, not facial-expression data: it exercises every code path
(geometry, both views, training, video smoothing) where no licensed dataset can be downloaded. Faces are drawn in
the layout of an aligned crop (the 5-point template of `emotic.processing.CANONICAL_FIVE_POINTS`), then moved by
a small random pose, with varied identity, skin, hair, background and lighting.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from emotic.commands import command_parser
from emotic.modeling.heads_emotic import ABAW_ACTION_UNITS, ABAW_EXPRESSION_LABELS
from emotic.processing.face_geometry import CANONICAL_FIVE_POINTS

# Per expression: brow lift, inner-brow drop, eye half-opening, mouth-corner drop, mouth opening, mouth width,
# upper-lip lift, asymmetry. All in fractions of the face crop; expressions differ only in eyes, brows and mouth.
_PARAMETER_NAMES = ("brow", "brow_inner", "eye_open", "corner", "mouth_open", "mouth_width", "upper_lip", "asym")
EXPRESSION_PARAMETERS = {
    "Neutral":   (0.000, 0.000, 0.025, 0.000, 0.000, 1.00, 0.000, 0.000),
    "Anger":     (-0.030, 0.040, 0.014, 0.010, 0.000, 0.80, 0.000, 0.000),
    "Disgust":   (-0.010, 0.015, 0.012, 0.022, 0.000, 0.95, 0.030, 0.000),
    "Fear":      (0.035, -0.020, 0.046, 0.022, 0.040, 1.08, 0.000, 0.000),
    "Happiness": (0.000, 0.000, 0.014, -0.032, 0.028, 1.18, 0.000, 0.000),
    "Sadness":   (0.000, -0.045, 0.019, 0.040, 0.000, 0.95, 0.000, 0.000),
    "Surprise":  (0.048, 0.000, 0.050, 0.000, 0.090, 0.78, 0.000, 0.000),
    "Other":     (0.010, 0.000, 0.025, 0.000, 0.006, 1.00, 0.000, 0.050),
}
assert list(EXPRESSION_PARAMETERS) == ABAW_EXPRESSION_LABELS

# The mark `write_synthetic_affwild2` leaves in summary.json, and the dataset name runs and reports give such data;
# they also say `"synthetic": true`, which the model card reads, so that drawn faces are never passed off as
# expression data.
GENERATOR = "emotic synth"
SYNTHETIC_DATASET_NAME = f"{GENERATOR} (generated faces in Aff-Wild2's layout)"


def is_generated(root) -> bool:
    """Whether the dataset folder `root` was written by `emotic synth` (its summary.json says so)."""
    import json
    from pathlib import Path

    summary = Path(root) / "summary.json"
    try:
        return summary.is_file() and json.loads(summary.read_text()).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


@dataclass
class Identity:
    """What stays fixed for one person: face shape, skin, hair, colours."""

    face_width: float
    eye_spacing: float
    skin: tuple
    hair: tuple
    brow_colour: tuple
    lip: tuple
    iris: tuple
    hair_height: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Identity":
        tone = rng.uniform(0.25, 1.0)
        skin = tuple(int(v) for v in np.array([225, 180, 150]) * tone + np.array([30, 25, 20]) * (1 - tone))
        hair = tuple(int(v) for v in rng.uniform(10, 160, 3))
        return cls(
            face_width=rng.uniform(0.32, 0.40), eye_spacing=rng.uniform(-0.012, 0.012), skin=skin, hair=hair,
            brow_colour=tuple(int(v * 0.6) for v in hair), lip=(int(rng.uniform(150, 210)), 70, 80),
            iris=tuple(int(v) for v in rng.uniform(20, 120, 3)), hair_height=rng.uniform(0.05, 0.2),
        )


def expression_parameters(expression: int, intensity: float = 1.0) -> dict:
    """The drawing parameters of `expression` (an ABAW index) at `intensity` in [0, 1], from neutral."""
    neutral = np.array(EXPRESSION_PARAMETERS["Neutral"])
    target = np.array(EXPRESSION_PARAMETERS[ABAW_EXPRESSION_LABELS[expression]])
    return dict(zip(_PARAMETER_NAMES, neutral + intensity * (target - neutral)))


def face_landmarks(identity: Identity, params: dict) -> np.ndarray:
    """The 68 landmarks (iBUG order) of a face in aligned-crop coordinates (fractions), before pose."""
    eye_left, eye_right, nose_tip, mouth_left, mouth_right = CANONICAL_FIVE_POINTS
    eye_left = eye_left - [identity.eye_spacing, 0]
    eye_right = eye_right + [identity.eye_spacing, 0]
    points = np.zeros((68, 2))
    # jaw 0-16: the lower half of an ellipse from ear to ear
    angles = np.linspace(np.pi, 0, 17)
    points[0:17] = np.stack([0.5 + identity.face_width * 1.05 * np.cos(angles),
                             0.45 + 0.52 * np.sin(angles)], axis=1)
    # brows 17-21 (image left, outer to inner) and 22-26 (image right, inner to outer)
    for start, eye, outer_sign in ((17, eye_left, -1), (22, eye_right, 1)):
        xs = eye[0] + outer_sign * np.linspace(0.095, -0.055, 5)
        inner = np.linspace(0, 1, 5)  # 0 at the outer end, 1 at the inner end
        asym = params["asym"] if outer_sign > 0 else 0.0  # "Other": one brow raised
        ys = eye[1] - 0.11 - params["brow"] - asym - 0.012 * np.sin(np.pi * inner) + params["brow_inner"] * inner
        block = np.stack([xs, ys], axis=1)
        points[start:start + 5] = block if outer_sign < 0 else block[::-1]  # both brows run left to right
    # nose: bridge 27-30 down to the tip, nostrils 31-35
    points[27:31] = np.stack([np.full(4, 0.5), np.linspace(0.47, nose_tip[1], 4)], axis=1)
    points[31:36] = np.stack([0.5 + np.array([-0.07, -0.035, 0.0, 0.035, 0.07]),
                              nose_tip[1] + np.array([0.012, 0.02, 0.024, 0.02, 0.012])], axis=1)
    # eyes 36-41 (image left: outer corner, 2 upper, inner corner, 2 lower) and 42-47 (inner corner first)
    half_width, half_height = 0.058, params["eye_open"]
    for start, eye in ((36, eye_left), (42, eye_right)):  # both start at their image-left corner
        xs = eye[0] + half_width * np.array([-1, -0.35, 0.35, 1, 0.35, -0.35])
        lower = max(0.8 * half_height, 0.018)  # the lower lid moves little; squinting drops the upper one
        ys = eye[1] + np.array([0, -half_height, -half_height, 0, lower, lower])
        points[start:start + 6] = np.stack([xs, ys], axis=1)
    # mouth: outer lip 48-59, inner lip 60-67
    centre = (mouth_left + mouth_right) / 2
    half_mouth = (mouth_right[0] - mouth_left[0]) / 2 * params["mouth_width"]
    corner_y = centre[1] + params["corner"]
    opening, lift = params["mouth_open"], params["upper_lip"]
    left_corner = [centre[0] - half_mouth, corner_y - params["asym"]]
    right_corner = [centre[0] + half_mouth, corner_y + params["asym"]]
    top = centre[1] - 0.04 - lift - opening * 0.3
    bottom = centre[1] + 0.05 + opening * 0.7
    upper = [[centre[0] + half_mouth * f, top + 0.006 * abs(f) * 3 - (0.004 if abs(f) < 0.1 else 0)]
             for f in (-0.6, -0.25, 0.0, 0.25, 0.6)]
    lower = [[centre[0] + half_mouth * f, bottom - 0.01 * abs(f) * 2] for f in (0.6, 0.25, 0.0, -0.25, -0.6)]
    points[48:60] = np.array([left_corner, *upper, right_corner, *lower])
    inner_top, inner_bottom = centre[1] - 0.004 - opening * 0.3, centre[1] + 0.004 + opening * 0.6
    points[60:68] = np.array([
        [left_corner[0] + 0.02, left_corner[1]], [centre[0] - half_mouth * 0.4, inner_top], [centre[0], inner_top],
        [centre[0] + half_mouth * 0.4, inner_top], [right_corner[0] - 0.02, right_corner[1]],
        [centre[0] + half_mouth * 0.4, inner_bottom], [centre[0], inner_bottom],
        [centre[0] - half_mouth * 0.4, inner_bottom]])
    return points


def random_pose(rng: np.random.Generator, strength: float = 1.0) -> tuple:
    """A small similarity transform around the crop centre: (angle in radians, scale, shift (dx, dy))."""
    return (rng.uniform(-0.15, 0.15) * strength, 1 + rng.uniform(-0.08, 0.08) * strength,
            rng.uniform(-0.04, 0.04, 2) * strength)


def _apply_pose(points: np.ndarray, pose) -> np.ndarray:
    angle, scale, shift = pose
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (points - 0.5) @ rotation.T * scale + 0.5 + shift


def render_face(expression: int, intensity: float, identity: Identity, pose, rng: np.random.Generator,
                size: int = 112, background=None, light=None) -> tuple[Image.Image, np.ndarray]:
    """Draw one face; returns the RGB image (`size × size`) and its 68 landmarks in pixels."""
    params = expression_parameters(expression, intensity)
    canonical = face_landmarks(identity, params)
    scale = 3 * size  # draw large, then downsample: smooth edges

    def px(points):  # aligned-crop fractions -> drawing pixels, with the pose
        return [tuple(p) for p in (_apply_pose(np.atleast_2d(points), pose) * scale)]

    background = background if background is not None else tuple(int(v) for v in rng.uniform(40, 230, 3))
    image = Image.new("RGB", (scale, scale), background)
    draw = ImageDraw.Draw(image)
    ellipse = np.array([[0.5 + identity.face_width * np.cos(t), 0.5 + 0.47 * np.sin(t)]
                        for t in np.linspace(0, 2 * np.pi, 60)])
    hair = np.array([[0.5 + (identity.face_width + 0.03) * np.cos(t), 0.36 + (0.2 + identity.hair_height) * np.sin(t)]
                     for t in np.linspace(np.pi, 2 * np.pi, 30)])
    draw.polygon(px(hair), fill=identity.hair)
    draw.polygon(px(ellipse), fill=identity.skin)
    shade = tuple(int(c * 0.8) for c in identity.skin)
    width = max(1, scale // 90)
    # brows
    draw.line(px(canonical[17:22]), fill=identity.brow_colour, width=4 * width, joint="curve")
    draw.line(px(canonical[22:27]), fill=identity.brow_colour, width=4 * width, joint="curve")
    # eyes: white, iris, lids
    for start in (36, 42):
        eye = canonical[start:start + 6]
        draw.polygon(px(eye), fill=(245, 245, 240))
        centre = eye.mean(0)
        radius = min(0.022, max(0.004, (eye[4, 1] - eye[1, 1]) * 0.5))
        iris = np.array([[centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)]
                         for t in np.linspace(0, 2 * np.pi, 16)])
        draw.polygon(px(iris), fill=identity.iris)
        draw.line(px(np.vstack([eye, eye[:1]])), fill=shade, width=width)
    # nose
    draw.line(px(canonical[27:31]), fill=shade, width=width)
    draw.line(px(canonical[31:36]), fill=shade, width=width)
    # mouth: lips, then the opening (with teeth when wide open)
    draw.polygon(px(canonical[48:60]), fill=identity.lip)
    inner = canonical[60:68]
    if inner[6, 1] - inner[2, 1] > 0.012:
        draw.polygon(px(inner), fill=(60, 20, 25))
        teeth = inner.copy()
        teeth[5:8, 1] = inner[1:4, 1][::-1] + (inner[6, 1] - inner[2, 1]) * 0.35
        draw.polygon(px(teeth), fill=(235, 235, 225))
    else:
        draw.line(px(inner[[0, 1, 2, 3, 4]]), fill=(90, 30, 35), width=width)

    image = image.resize((size, size), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(0.4))
    # lighting: a linear gradient in a random direction, and sensor noise
    light = light if light is not None else (rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.35))
    angle, strength = light
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    gain = 1.0 - strength * (np.cos(angle) * xx + np.sin(angle) * yy + 0.5) * 0.8
    pixels = np.asarray(image, dtype=np.float32) * gain[..., None] + rng.normal(0, 3.0, (size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image, _apply_pose(canonical, pose) * size


def region_truth_boxes(landmarks: np.ndarray) -> dict:
    """Tight boxes of the drawn regions (68-point landmarks in pixels): brows+eyes, nose, outer lips."""
    def bbox(indices):
        (x0, y0), (x1, y1) = landmarks[indices].min(0), landmarks[indices].max(0)
        return (float(x0), float(y0), float(x1), float(y1))

    return {"eyes": bbox(list(range(17, 27)) + list(range(36, 48))), "nose": bbox(list(range(27, 36))),
            "mouth": bbox(list(range(48, 60)))}


# Valence and arousal of each expression at full intensity (Russell's circumplex, roughly where the ABAW annotators
# place them); a frame's values scale with the intensity drawn, so they follow the face (a smile is positive, a
# stronger expression more aroused).
EXPRESSION_VALENCE_AROUSAL = {
    "Neutral": (0.0, 0.0), "Anger": (-0.6, 0.7), "Disgust": (-0.65, 0.35), "Fear": (-0.55, 0.75),
    "Happiness": (0.8, 0.45), "Sadness": (-0.7, -0.4), "Surprise": (0.25, 0.8), "Other": (0.05, 0.25),
}
assert list(EXPRESSION_VALENCE_AROUSAL) == ABAW_EXPRESSION_LABELS

# The 12 Aff-Wild2 action units, each present when the drawing parameter that makes it visible passes a threshold.
ACTION_UNIT_RULES = {
    "AU1": lambda p: p["brow"] > 0.015 or p["brow_inner"] < -0.015,  # inner brow raiser (surprise, fear, sadness)
    "AU2": lambda p: p["brow"] > 0.025,  # outer brow raiser
    "AU4": lambda p: p["brow_inner"] > 0.012 or p["brow"] < -0.015,  # brow lowerer (anger, disgust)
    "AU6": lambda p: p["corner"] < -0.02,  # cheek raiser (a full smile)
    "AU7": lambda p: p["eye_open"] < 0.018,  # lid tightener (narrowed eyes)
    "AU10": lambda p: p["upper_lip"] > 0.015,  # upper lip raiser (disgust)
    "AU12": lambda p: p["corner"] < -0.012,  # lip corner puller (smile)
    "AU15": lambda p: p["corner"] > 0.015,  # lip corner depressor
    "AU23": lambda p: p["mouth_width"] < 0.9 and p["mouth_open"] < 0.02,  # lip tightener
    "AU24": lambda p: p["mouth_width"] < 0.85 and p["mouth_open"] < 0.01,  # lip pressor
    "AU25": lambda p: p["mouth_open"] > 0.01,  # lips part
    "AU26": lambda p: p["mouth_open"] > 0.035,  # jaw drop
}
assert list(ACTION_UNIT_RULES) == ABAW_ACTION_UNITS


def frame_affect(expression: int, intensity: float) -> tuple[list[float], list[int]]:
    """The valence-arousal pair and the 12 action units (0/1, Aff-Wild2's order) of a face drawn with `expression`
    at `intensity`: what the drawing shows, not the frame's expression label."""
    valence, arousal = EXPRESSION_VALENCE_AROUSAL[ABAW_EXPRESSION_LABELS[expression]]
    params = expression_parameters(expression, intensity)
    return ([round(valence * intensity, 4), round(arousal * intensity, 4)],
            [int(rule(params)) for rule in ACTION_UNIT_RULES.values()])


@dataclass
class SyntheticFrame:
    image: Image.Image
    label: int  # the frame's expression label (ABAW index)
    landmarks: np.ndarray  # (68, 2) in pixels
    expression: int  # the expression drawn, at `intensity` (the label is Neutral below half intensity)
    intensity: float


def synthetic_video_frames(rng: np.random.Generator, frames: int, size: int = 112):
    """Yield a `SyntheticFrame` for each frame of one generated video: one person under a slowly drifting pose and
    light, moving through expression segments of 6-10 frames that rise from neutral over 3 (every expression in
    turn, shuffled: identity cannot stand in for the label). A frame carries its segment's expression from half
    intensity on, Neutral before."""
    identity = Identity.random(rng)
    background = tuple(int(v) for v in rng.uniform(40, 230, 3))
    start_pose, end_pose = random_pose(rng), random_pose(rng)
    light_angle, light_strength = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.35)
    order = np.concatenate([rng.permutation(8) for _ in range(frames // 48 + 2)])
    segment_end, segment = 0, -1
    for frame in range(frames):
        if frame >= segment_end:
            segment += 1
            expression = int(order[segment])
            segment_start, segment_end = frame, frame + int(rng.integers(6, 11))
            peak = rng.uniform(0.8, 1.0)
        intensity = peak * (0.15, 0.65, 1.0)[min(frame - segment_start, 2)]  # a 3-frame onset
        t = frame / max(frames - 1, 1)
        pose = tuple(a + t * (b - a) for a, b in zip(start_pose[:2], end_pose[:2])) + (
            start_pose[2] + t * (end_pose[2] - start_pose[2]),)
        image, points = render_face(expression, intensity, identity, pose, rng, size=size, background=background,
                                    light=(light_angle + 0.3 * t, light_strength))
        yield SyntheticFrame(image, expression if intensity >= 0.5 else 0, points, expression, float(intensity))


def occlude(image: Image.Image, landmarks: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """The face with its brows, eyes and mouth hidden (a hand or an object in front of it): a flat, noisy patch
    over the landmarks' box, widened a little. What the frame showed is then only in the frames around it."""
    (x0, y0), (x1, y1) = landmarks[17:].min(0), landmarks[17:].max(0)
    margin = 0.08 * image.width
    colour = tuple(int(v) for v in rng.uniform(60, 200, 3))
    covered = image.copy()
    ImageDraw.Draw(covered).rectangle([x0 - margin, y0 - margin, x1 + margin, y1 + margin], fill=colour)
    pixels = np.asarray(covered, dtype=np.float32) + rng.normal(0, 3.0, (image.height, image.width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def occluded_runs(rng: np.random.Generator, frames: int, fraction: float) -> np.ndarray:
    """Which of `frames` frames are occluded: runs of 2-6 frames (mean 4) starting at random, about `fraction` of
    the frames in all."""
    hidden = np.zeros(frames, dtype=bool)
    if fraction <= 0:
        return hidden
    start_probability = fraction / (4 * (1 - fraction))  # a frame outside a run starts one
    frame = 0
    while frame < frames:
        if rng.random() < start_probability:
            length = int(rng.integers(2, 7))
            hidden[frame:frame + length] = True
            frame += length
        frame += 1
    return hidden


def synthetic_video(rng: np.random.Generator, frames: int, size: int = 112):
    """Yield (image, label, 68 landmarks in pixels) for the frames of one generated video
    (`synthetic_video_frames`)."""
    for frame in synthetic_video_frames(rng, frames, size):
        yield frame.image, frame.label, frame.landmarks


def write_video(path, images, fps: int = 25, audio=None, audio_rate: int = 16000) -> int:
    """Encode PIL images (all one size, even sides) with PyAV: VP8 for a `.webm` path (what browsers play), MPEG-4
    otherwise; returns the frame count. `audio`: a sound track too, float samples in [-1, 1] of shape `(samples,)`
    or `(channels, samples)` (1 or 2 channels) at `audio_rate` Hz, encoded as Opus in WebM, MP2 in MPEG-TS, AAC
    otherwise."""
    import av

    count = 0
    name = str(path).lower()
    webm = name.endswith(".webm")
    with av.open(str(path), mode="w") as container:
        stream = None
        for image in images:
            if stream is None:
                stream = container.add_stream("libvpx" if webm else "mpeg4", rate=fps)
                stream.width, stream.height = image.size
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "8", "b:v": "2M"} if webm else {"qscale": "2"}
                if audio is not None:
                    sound = _add_audio(container, audio, audio_rate, "libopus" if webm else
                                       "mp2" if name.endswith(".ts") else "aac")
            for packet in stream.encode(av.VideoFrame.from_image(image.convert("RGB"))):
                container.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
            if audio is not None:
                for packet in sound:
                    container.mux(packet)
    return count


def _add_audio(container, audio, rate: int, codec: str) -> list:
    """An audio stream of `codec` in `container`, and the packets of `audio` encoded for it."""
    import av

    samples = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    layout = {1: "mono", 2: "stereo"}[samples.shape[0]]
    if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
        raise ValueError(f"audio at {rate} Hz: Opus (WebM) takes 8, 12, 16, 24 or 48 kHz")
    stream = container.add_stream(codec, rate=rate, layout=layout)
    interleaved = np.clip(samples, -1, 1).T.reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(interleaved), format="flt", layout=layout)
    frame.sample_rate, frame.pts = rate, 0
    return [*stream.encode(frame), *stream.encode()]


# The voice of generated videos (`emotic synth --audio`): per expression, the pitch (Hz) of a speaker of average
# pitch, and words of its sentiment for the transcripts (said part of the time, neutral words otherwise)
VOICE_PITCH = {"Neutral": 140, "Anger": 190, "Disgust": 120, "Fear": 270, "Happiness": 230, "Sadness": 105,
               "Surprise": 320, "Other": 160}
EXPRESSION_WORDS = {
    "Neutral": ["okay", "right", "so", "then"], "Anger": ["stop", "enough", "furious", "never"],
    "Disgust": ["gross", "awful", "yuck", "nasty"], "Fear": ["help", "scared", "danger", "afraid"],
    "Happiness": ["great", "wonderful", "love", "happy"], "Sadness": ["sorry", "miss", "lonely", "sad"],
    "Surprise": ["wow", "really", "unbelievable", "what"], "Other": ["hmm", "maybe", "whatever", "perhaps"]}
NEUTRAL_WORDS = ["the", "and", "well", "just", "like", "we", "it", "that"]
AUDIO_RATE = 16000


def synthetic_voice(rng: np.random.Generator, expressions, intensities, arousal, fps: int, rate: int = AUDIO_RATE):
    """A video's sound track and who speaks when: `(samples, speaking)`, float32 samples at `rate` Hz and a flag
    per frame. Where the person speaks, a voiced sound (a pitch and 3 harmonics, syllables at about 5 a second)
    whose pitch follows the expression drawn (`VOICE_PITCH`, from neutral by the intensity, times the speaker's own
    pitch, 0.9-1.1, and a jitter per frame) and whose loudness follows arousal; pauses of 3-12 frames (about a
    quarter of the time) are silent but for a little noise. What a recording gives, imperfectly: the voice tells the
    expression only while someone speaks, and pitches of neighbouring expressions overlap."""
    frames = len(expressions)
    frame_of = np.minimum(np.arange(round(frames * rate / fps)) * fps // rate, frames - 1)  # each sample's frame
    speaking = np.ones(frames, dtype=bool)
    frame = int(rng.integers(0, 8))
    while frame < frames:  # pauses, between stretches of speech of 6-30 frames
        pause = int(rng.integers(3, 13))
        speaking[frame:frame + pause] = False
        frame += pause + int(rng.integers(6, 31))
    speaker = rng.uniform(0.9, 1.1)
    neutral = VOICE_PITCH["Neutral"]
    pitch = np.array([speaker * (neutral + intensity * (VOICE_PITCH[ABAW_EXPRESSION_LABELS[expression]] - neutral))
                      for expression, intensity in zip(expressions, intensities)])
    pitch *= rng.uniform(0.97, 1.03, frames)
    loudness = 0.08 + 0.2 * (np.clip(np.asarray(arousal, dtype=float), -1, 1) + 1) / 2
    per_sample = pitch[frame_of]
    phase = 2 * np.pi * np.cumsum(per_sample) / rate
    time = np.arange(len(per_sample)) / rate
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 5.0 * time + rng.uniform(0, 2 * np.pi)) ** 2
    voice = sum(np.sin(k * phase) / k for k in range(1, 5)) / 2.1
    envelope = (loudness * speaking)[frame_of]
    kernel = np.ones(rate // 100) / (rate // 100)  # 10 ms ramps: no clicks where speech starts and stops
    envelope = np.convolve(envelope, kernel, mode="same")
    samples = voice * syllables * envelope + rng.normal(0, 0.004, len(per_sample))
    return samples.astype(np.float32), speaking


def synthetic_transcript(rng: np.random.Generator, labels, speaking, fps: int, share: float = 0.6) -> list:
    """Subtitle cues `(start, end, text)` in seconds for a generated video: a word for each stretch of 4-8 frames
    spoken, of the frames' expression with probability `share` (`EXPRESSION_WORDS`), a neutral word otherwise."""
    cues, frame = [], 0
    while frame < len(labels):
        length = int(rng.integers(4, 9))
        span = range(frame, min(len(labels), frame + length))
        if all(speaking[index] for index in span):
            label = labels[span[len(span) // 2]]
            words = EXPRESSION_WORDS[ABAW_EXPRESSION_LABELS[label]] if label >= 0 and rng.random() < share \
                else NEUTRAL_WORDS
            cues.append((span[0] / fps, (span[-1] + 1) / fps, str(rng.choice(words))))
        frame += length
    return cues


def srt_text(cues) -> str:
    """Subtitle cues `(start, end, text)` as an SRT file's text."""
    def stamp(seconds: float) -> str:
        millis = int(round(seconds * 1000))
        return f"{millis // 3600000:02d}:{millis // 60000 % 60:02d}:{millis // 1000 % 60:02d},{millis % 1000:03d}"

    return "".join(f"{number}\n{stamp(start)} --> {stamp(end)}\n{text}\n\n"
                   for number, (start, end, text) in enumerate(cues, start=1))


def write_synthetic_affwild2(
    root, num_videos: int = 16, frames_per_video: int = 60, size: int = 112, validation_videos: int = 4,
    seed: int = 0, unlabelled_fraction: float = 0.02, missing_fraction: float = 0.02,
    multitask_gap_fraction: float = 0.15, occluded_fraction: float = 0.0, audio: bool = False, fps: int = 25,
) -> dict:
    """Write a generated dataset in Aff-Wild2's layout and return a summary:

        root/annotations/Train_Set/<video>.txt       header, then one expression label per frame (-1 = ignore)
        root/annotations/Validation_Set/<video>.txt  held-out videos: other identities
        root/VA_Estimation_Challenge/<split>/<video>.txt   valence,arousal per frame (-5,-5 = not annotated)
        root/AU_Detection_Challenge/<split>/<video>.txt    12 action units 0/1 per frame (-1 = not annotated)
        root/training_set_annotations.txt            ABAW7's multi-task file: image,valence,arousal,expression,AU1..
        root/validation_set_annotations.txt          (images relative to cropped_aligned/); some frames lack one
                                                     track's annotation, as in s-Aff-Wild2
        root/cropped_aligned/<video>/00001.jpg       aligned face crops (some annotated frames have no image,
                                                     as in Aff-Wild2 where no face was detected)
        root/landmarks/<video>.npy                   (frames, 68, 2) landmarks that were drawn

    Each video is one person under a slowly drifting pose and light, moving through expression segments that
    ramp up from neutral (every expression in each video); a frame carries the segment's expression from half
    intensity on, Neutral before. Its valence, arousal and action units follow the face drawn (`frame_affect`):
    the expression's place in the circumplex scaled by the intensity, and the units its brows, eyes and mouth show.
    The frames not annotated are the same in the three tracks; the multi-task files also leave out one track of
    `multitask_gap_fraction` of the other frames (drawn from their own generator: the other files do not change).

    `occluded_fraction` of the frames (0 by default) are hidden in runs of 2-6 frames (`occlude`: a patch over brows,
    eyes and mouth) and keep their segment's labels, as an annotator watching the video gives them: what such a frame
    shows is only in its neighbours, which a temporal model over several frames can use and a frame model cannot.
    The runs come from their own generator, so the faces drawn are the same with or without them.

    `audio`: also `root/videos/<video>.mp4`, each video's frames (all of them, occluded ones as hidden) at `fps` with a
    sound track (`synthetic_voice`: a voice whose pitch follows the expression and loudness the arousal, with pauses),
    and `root/transcripts/<video>.srt`, its words (`synthetic_transcript`: of the expression's sentiment part of the
    time). Drawn from their own generator: everything else is written byte for byte as without `audio`.
    """
    import json
    from pathlib import Path

    root = Path(root)
    rng = np.random.default_rng(seed)
    gaps = np.random.default_rng([seed, 7])  # the multi-task files' missing tracks
    occlusions = np.random.default_rng([seed, 11])  # which frames are hidden, and by what
    voices = np.random.default_rng([seed, 13])  # the sound tracks and transcripts
    multitask_rows = {"Train_Set": [], "Validation_Set": []}
    summary = {"generator": GENERATOR, "videos": {"Train_Set": [], "Validation_Set": []}, "frames": 0,
               "labels": [0] * 8,
               "unlabelled": 0, "missing_images": 0, "occluded": 0, "occluded_frames": {}}
    for video_index in range(num_videos):
        split = "Validation_Set" if video_index >= num_videos - validation_videos else "Train_Set"
        video = f"synth-{video_index:03d}"
        frame_dir = root / "cropped_aligned" / video
        frame_dir.mkdir(parents=True, exist_ok=True)
        labels, landmarks, valence_arousal, action_units = [], [], [], []
        images, drawn = [], []  # with audio: the video's frames, and (expression, intensity, arousal) per frame
        hidden = occluded_runs(occlusions, frames_per_video, occluded_fraction)
        if hidden.any():  # 0-based frame indices (the frame `00001.jpg` is 0)
            summary["occluded_frames"][video] = np.flatnonzero(hidden).tolist()
        for index, frame in enumerate(synthetic_video_frames(rng, frames_per_video, size)):
            label = frame.label
            affect = frame_affect(frame.expression, frame.intensity)
            if rng.random() < unlabelled_fraction:
                label, affect = -1, ([-5, -5], [-1] * len(ABAW_ACTION_UNITS))
                summary["unlabelled"] += 1
            image = None
            if rng.random() < missing_fraction:
                summary["missing_images"] += 1  # annotated, but the frame image is absent
            else:
                image = occlude(frame.image, frame.landmarks, occlusions) if hidden[index] else frame.image
                summary["occluded"] += int(hidden[index])
                image.save(frame_dir / f"{index + 1:05d}.jpg", quality=95)
            if audio:  # the video has every frame (one without an image in cropped_aligned: its face as drawn)
                images.append(image or frame.image)
                drawn.append((frame.expression, frame.intensity,
                              frame_affect(frame.expression, frame.intensity)[0][1]))
            labels.append(label)
            valence_arousal.append(affect[0])
            action_units.append(affect[1])
            landmarks.append(frame.landmarks.astype(np.float32))
            if label >= 0:
                summary["labels"][label] += 1
        for folder, header, rows in (
                ("annotations", ",".join(ABAW_EXPRESSION_LABELS), [str(v) for v in labels]),
                ("VA_Estimation_Challenge", "valence,arousal", [f"{v:g},{a:g}" for v, a in valence_arousal]),
                ("AU_Detection_Challenge", ",".join(ABAW_ACTION_UNITS), [",".join(map(str, u)) for u in action_units])):
            annotation_dir = root / folder / split
            annotation_dir.mkdir(parents=True, exist_ok=True)
            (annotation_dir / f"{video}.txt").write_text(header + "\n" + "\n".join(rows) + "\n")
        for index, (label, (valence, arousal), units) in enumerate(zip(labels, valence_arousal, action_units)):
            values = [f"{valence:g}", f"{arousal:g}", str(label), *map(str, units)]
            if label >= 0 and gaps.random() < multitask_gap_fraction:  # one track of an annotated frame left out
                track = gaps.integers(3)
                values[{0: slice(0, 2), 1: slice(2, 3), 2: slice(3, 15)}[track]] = \
                    {0: ["-5", "-5"], 1: ["-1"], 2: ["-1"] * len(ABAW_ACTION_UNITS)}[track]
            multitask_rows[split].append(",".join([f"{video}/{index + 1:05d}.jpg", *values]))
        (root / "landmarks").mkdir(exist_ok=True)
        np.save(root / "landmarks" / f"{video}.npy", np.stack(landmarks))
        if audio:
            expressions, intensities, arousal = zip(*drawn)
            sound, speaking = synthetic_voice(voices, expressions, intensities, arousal, fps)
            (root / "videos").mkdir(exist_ok=True)
            write_video(root / "videos" / f"{video}.mp4", images, fps=fps, audio=sound, audio_rate=AUDIO_RATE)
            (root / "transcripts").mkdir(exist_ok=True)
            cues = synthetic_transcript(voices, labels, speaking, fps)
            (root / "transcripts" / f"{video}.srt").write_text(srt_text(cues), encoding="utf-8")
            summary.setdefault("speaking_frames", {})[video] = np.flatnonzero(speaking).tolist()
        summary["videos"][split].append(video)
        summary["frames"] += frames_per_video
    for split, name in (("Train_Set", "training"), ("Validation_Set", "validation")):
        header = ",".join(["image", "valence", "arousal", "expression", *ABAW_ACTION_UNITS])
        (root / f"{name}_set_annotations.txt").write_text("\n".join([header, *multitask_rows[split]]) + "\n")
    (root / "README.txt").write_text(
        "Generated by `emotic synth`: procedurally drawn faces in Aff-Wild2's layout (EXPR, VA and AU\n"
        "annotations, and ABAW7's multi-task files). A smoke-scale stand-in that exercises the pipeline; it is\n"
        "NOT facial-expression data\n"
        "and says nothing about how a model does on real faces.\n")
    (root / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None):
    parser = command_parser("emotic synth", "Write a generated dataset in Aff-Wild2's layout: drawn faces, not "
                                             "expression data (see `write_synthetic_affwild2`).")
    parser.add_argument("--output_dir", required=True, help="the dataset root to write")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=60, help="frames per video")
    parser.add_argument("--validation_videos", type=int, default=4)
    parser.add_argument("--size", type=int, default=112, help="side of the aligned crops (Aff-Wild2: 112)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--audio", action="store_true",
                        help="also write videos/<video>.mp4 with a sound track that follows the expressions, and "
                             "transcripts/<video>.srt")
    parser.add_argument("--fps", type=int, default=25, help="frame rate of the videos --audio writes")
    parser.add_argument("--occluded_fraction", type=float, default=0.0,
                        help="share of frames hidden in runs of 2-6 (their labels kept): what a temporal model can "
                             "recover from the frames around them")
    args = parser.parse_args(argv)
    if not 0 <= args.occluded_fraction < 0.9:
        parser.error(f"--occluded_fraction {args.occluded_fraction}: expected a share in [0, 0.9)")
    if not 1 <= args.fps <= 120:
        parser.error(f"--fps {args.fps}: expected a frame rate from 1 to 120")
    if not 0 <= args.validation_videos < args.videos:
        parser.error("--validation_videos must be at least 0 and fewer than --videos")
    summary = write_synthetic_affwild2(args.output_dir, args.videos, args.frames, args.size, args.validation_videos,
                                       args.seed, occluded_fraction=args.occluded_fraction, audio=args.audio,
                                       fps=args.fps)
    print(f"wrote {summary['frames']} frames of {args.videos} videos to {args.output_dir} "
          f"(train {len(summary['videos']['Train_Set'])}, validation {len(summary['videos']['Validation_Set'])}); "
          f"labels per class {summary['labels']}; {summary['unlabelled']} frames labelled -1, "
          f"{summary['missing_images']} without an image" + (f", {summary['occluded']} occluded"
                                                            if summary["occluded"] else "")
          + ("; videos with sound in videos/, transcripts in transcripts/" if args.audio else ""))
    return 0
