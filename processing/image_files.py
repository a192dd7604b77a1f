"""What emotic reads as an image, below both training and inference: the file extensions of frames and photos, and
how an image item (a path, or an undecoded `datasets` image) is handed to the image processor, which decodes it."""

import io

# the frame and photo files every reader and source lists (lower case; matched case-insensitively)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def open_image(item):
    """A path stays a path (the processor opens it); an undecoded `datasets` image opens from its bytes."""
    if isinstance(item, dict):
        from PIL import Image

        if item.get("bytes"):
            return Image.open(io.BytesIO(item["bytes"]))
        return item.get("path")
    return item
