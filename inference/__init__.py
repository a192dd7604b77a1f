"""emotic.inference: prediction over videos, frame folders and images, smoothing, evaluation and its report."""
