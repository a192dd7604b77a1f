"""Shared fixtures. Tests run offline (no hub), single-threaded, on tiny configs (hidden size <= 64)."""

import os
import tempfile

# Before anything imports huggingface_hub / transformers: no network, no telemetry, one thread, and a
# throw-away HF_HOME so remote-code modules and caches never touch the user's.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="emotic-tests-hf-home-")
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
