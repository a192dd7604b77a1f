"""emotic.processing: the image processor that builds the main and auxiliary views, and the face geometry."""

from .face_geometry import CANONICAL_FIVE_POINTS, CANONICAL_REGION_BOXES, FaceLandmarker, detector_available
from .image_processing_emotic import EmoticImageProcessor

__all__ = [
    "CANONICAL_FIVE_POINTS",
    "CANONICAL_REGION_BOXES",
    "EmoticImageProcessor",
    "FaceLandmarker",
    "detector_available",
]
