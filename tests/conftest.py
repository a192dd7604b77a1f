"""Shared fixtures. Tests run offline (no hub), single-threaded, on tiny configs (hidden size <= 64)."""

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

# Before anything imports huggingface_hub / transformers: no network, no telemetry, one thread, and a
# throw-away HF_HOME so remote-code modules and caches never touch the user's (removed when the process ends: one per
# xdist worker, and a suite that leaves its caches in /tmp fills a CI disk run after run).
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="emotic-tests-hf-home-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

TINY = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=64,
    image_size=32,
    patch_size=8,
    decoder_hidden_size=16,
    decoder_num_hidden_layers=2,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=32,
    drop_path_rate=0.0,
)


@pytest.fixture
def tiny_config():
    """Factory for a tiny EmoticConfig (about 60k parameters); keyword arguments override the tiny defaults."""
    from emotic import EmoticConfig

    def make(**overrides):
        return EmoticConfig(**{**TINY, **overrides})

    return make


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny expression classifier (32 wide, 2 blocks, 32 px) with its processor, saved once per module: what the
    inference commands' tests run."""
    return save_tiny_classifier(tmp_path_factory.mktemp("model"), seed=0)


@pytest.fixture(scope="session")
def speech_encoders(tmp_path_factory):
    """Folders of a tiny Wav2Vec2 (32 wide, 2 layers) and a tiny Whisper encoder (32 wide, 2 layers), each with its
    feature extractor, as `--audio_model` takes them."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperModel,
    )

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("speech")
    Wav2Vec2Model(Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        vocab_size=10)).save_pretrained(root / "wav2vec2")
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(root / "wav2vec2")
    WhisperModel(WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                               decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=64,
                               num_mel_bins=80, max_source_positions=1500, pad_token_id=0, bos_token_id=1,
                               eos_token_id=2, decoder_start_token_id=1)).save_pretrained(root / "whisper")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(root / "whisper")
    return root


@pytest.fixture(scope="session")
def text_models(tmp_path_factory):
    """Folders of a tiny BERT text encoder (16 wide, 1 layer, a word-level vocabulary of the generated transcripts'
    words) and a tiny CTC speech recogniser (Wav2Vec2ForCTC over letters, weights scaled so that it says words), as
    `--text_model` and `--asr_model` take them."""
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizer,
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    from emotic.training.synthetic import EXPRESSION_WORDS, NEUTRAL_WORDS

    root = tmp_path_factory.mktemp("text")
    words = sorted({word for group in EXPRESSION_WORDS.values() for word in group} | set(NEUTRAL_WORDS))
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    BertTokenizer(vocab={word: index for index, word in enumerate(vocabulary)}).save_pretrained(root / "bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=5 + len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(root / "bert")
    (root / "ctc").mkdir()
    letters = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz'")}}
    (root / "ctc" / "vocab.json").write_text(json.dumps(letters))
    Wav2Vec2Processor(feature_extractor=Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True,
                                                                 return_attention_mask=True),
                      tokenizer=Wav2Vec2CTCTokenizer(str(root / "ctc" / "vocab.json"), unk_token="<unk>",
                                                     pad_token="<pad>", word_delimiter_token="|")
                      ).save_pretrained(root / "ctc")
    recogniser = Wav2Vec2ForCTC(Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        vocab_size=len(letters), pad_token_id=0))
    with torch.no_grad():  # sharp outputs: letters and word breaks that change with the sound, not all blanks
        recogniser.lm_head.weight.mul_(20)
        recogniser.lm_head.bias.zero_()
    recogniser.save_pretrained(root / "ctc")
    return root


def save_tiny_classifier(folder, seed: int):
    """`model_dir`'s model (32 wide, 2 blocks, 32 px) with the weights of `seed`, and its processor, in `folder`."""
    import torch

    from emotic import EmoticConfig, EmoticForImageClassification, EmoticImageProcessor

    torch.manual_seed(seed)
    EmoticForImageClassification(EmoticConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                              intermediate_size=64, image_size=32, patch_size=8,
                                              fusion_layer=1)).save_pretrained(folder)
    EmoticImageProcessor(size=32).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def two_people(tmp_path_factory):
    """The two-person video of `people.two_people_layout` (48 frames at 10 fps, 640x360, real faces: Grace Hopper
    out of the picture for frames 20-29, one second) as frames and as an MP4 file, made once per test process."""
    from people import compose_people, two_people_layout
    from PIL import Image

    from emotic.training.synthetic import write_video

    frames = compose_people(two_people_layout())
    path = tmp_path_factory.mktemp("people") / "two.mp4"
    write_video(path, [Image.fromarray(frame) for frame in frames], fps=10)
    return frames, path


def write_features_folder(folder, widths: dict, frames: int = 6):
    """An `emotic features` output folder: `features/<video>.parquet` of `frames` random feature rows of
    `widths[video]` values (none where the width is negative: an empty video), and expression annotations for them in
    `data/annotations/` (the last video held out)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from emotic import ABAW_EXPRESSION_LABELS

    (folder / "features").mkdir(parents=True)
    for split in ("Train_Set", "Validation_Set"):
        (folder / "data" / "annotations" / split).mkdir(parents=True)
    for index, (video, width) in enumerate(widths.items()):
        count = 0 if width < 0 else frames
        width = abs(width)
        values = np.random.default_rng(index).normal(size=count * width).astype(np.float32)
        pq.write_table(pa.table({
            "video": [video] * count, "frame": list(range(count)),
            "image_location": [f"{video}/{i + 1:05d}.jpg" for i in range(count)], "status": ["face"] * count,
            "features": pa.FixedSizeListArray.from_arrays(pa.array(values, pa.float32()), width)}),
            folder / "features" / f"{video}.parquet")
        split = "Validation_Set" if index == len(widths) - 1 else "Train_Set"
        (folder / "data" / "annotations" / split / f"{video}.txt").write_text(
            ",".join(ABAW_EXPRESSION_LABELS) + "\n" + "\n".join(str(i % 8) for i in range(frames)) + "\n")
    return folder


MINIHUB = Path(__file__).with_name("minihub.py")
TOKEN = "hf_" + "T0kenThatMustNeverBeWrittenAnywhere42"


@pytest.fixture(scope="module")
def hub():
    """The loopback Hub, on 127.0.0.1 and a free port, for this module's tests."""
    process = subprocess.Popen([sys.executable, "-u", str(MINIHUB), "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("MINIHUB_READY "), f"{line!r} {process.poll()} {process.stderr.read()}"
        endpoint = line.split()[1]
        with urllib.request.urlopen(f"{endpoint}/health", timeout=10) as response:
            assert response.status == 200
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (servers and `accelerate launch`'s rendezvous take one
    each, so that tests running in parallel never meet on a fixed port such as torch's 29500)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ForkServer:
    """tests/forkserver.py, started on first use in this test process: `python -m` commands in processes forked from
    one that has imported torch, transformers and emotic once (about 5 s saved per command)."""

    # What the server's imports and the interpreter read when they start: a command whose environment differs from
    # the server's in one of these runs in a fresh interpreter. Others are set in the child before the command runs
    # (os.environ), as a fresh process would see them; torch's inductor sets its cache folder's default on import.
    READ_AT_START = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "USE_", "TORCH", "PYTORCH_", "ACCELERATE_", "OMP_",
                     "MKL_", "CUDA", "NVIDIA", "LD_", "MALLOC_", "GLIBC_", "PYTHON", "XDG_", "HOME", "TMPDIR",
                     "TOKENIZERS_", "DISABLE_TELEMETRY")
    SET_ON_IMPORT = {"TORCHINDUCTOR_CACHE_DIR"}

    def __init__(self, environment: dict):
        self.environment = dict(environment)  # the server's, fixed at its start
        self.process = None
        self.served = 0  # commands forked
        self.lock = threading.Lock()

    def serves(self, env) -> bool:
        """Whether a command with this environment (None: this process's) can be forked from the server."""
        env = os.environ if env is None else env
        changed = {key for key in {*env, *self.environment} if env.get(key) != self.environment.get(key)}
        return not any(key.startswith(self.READ_AT_START) and key not in self.SET_ON_IMPORT for key in changed)

    def _start(self):
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("forkserver.py"))],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=self.environment)
        assert "ready" in self._reply()

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:  # the server itself died: no later command can be forked
            self.process = None
            raise RuntimeError("tests/forkserver.py stopped; its error is above")
        return json.loads(line)

    def run(self, module: str, argv: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
        if self.process is None:
            self._start()
        command = [sys.executable, "-m", module, *argv]
        with tempfile.TemporaryDirectory(prefix="emotic-cli-") as folder:
            streams = {name: os.path.join(folder, name) for name in ("stdout", "stderr")}
            request = {"module": module, "argv": argv, "cwd": os.getcwd(), "env": env, **streams}
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            pid = self._reply()["pid"]
            self.served += 1
            timed_out = threading.Event()

            def kill():
                timed_out.set()
                with contextlib.suppress(ProcessLookupError):  # it ended as the timer fired
                    os.kill(pid, signal.SIGKILL)

            timer = threading.Timer(timeout, kill)
            timer.start()
            try:
                returncode = self._reply()["returncode"]
            finally:
                timer.cancel()
            stdout, stderr = (Path(streams[name]).read_text(errors="replace") for name in ("stdout", "stderr"))
        if timed_out.is_set():
            raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
        return subprocess.CompletedProcess(command, returncode, stdout, stderr)

    def close(self):
        if self.process is not None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


FORK_SERVER = ForkServer(dict(os.environ))  # the tests' environment, set above


def run_module(module: str, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """`python -m module args` in a process of its own, no standard input; the `CompletedProcess` with its text
    output. Forked from tests/forkserver.py when it runs in the server's environment (and the server is free), else
    a fresh interpreter."""
    argv = [str(arg) for arg in args]
    if FORK_SERVER.serves(env) and FORK_SERVER.lock.acquire(blocking=False):
        try:
            return FORK_SERVER.run(module, argv, dict(os.environ if env is None else env), timeout)
        finally:
            FORK_SERVER.lock.release()
    return fresh_module(module, *argv, env=env, timeout=timeout)


def fresh_module(module: str, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """`python -m module args` in a fresh interpreter, no standard input; the `CompletedProcess` with its text
    output."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def emotic_cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """The `emotic` command (`python -m emotic.cli`), as `run_module` runs it."""
    return run_module("emotic.cli", *args, env=env, timeout=timeout)


def hub_env(endpoint, tmp_path):
    return {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": TOKEN,
            "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}


def pytest_collection_modifyitems(config, items):
    """On pytest-xdist's workers (`make test`: one per core), the tests marked `minutes(n)` go first, the longest
    first, so that no worker starts a long test while the others run out of work; the rest keep their order (the
    sort is stable, and the same on every worker, as xdist requires). A plain `pytest` run keeps file order."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return

    def minutes(item):
        marker = item.get_closest_marker("minutes")
        return marker.args[0] if marker else 0

    items.sort(key=minutes, reverse=True)


def pytest_terminal_summary(terminalreporter):
    """The bad-input suite's case count, printed at the end of every run that collected it."""
    outcomes = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if "test_bad_input.py" in report.nodeid and report.when in ("call", "setup"):
                if outcome != "passed" or report.when == "call":
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if outcomes:
        total = sum(outcomes.values())
        terminalreporter.write_line(f"bad-input suite: {total} cases, " + ", ".join(
            f"{count} {outcome}" for outcome, count in sorted(outcomes.items())))


def pytest_unconfigure(config):
    FORK_SERVER.close()
