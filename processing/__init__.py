"""emotic.processing: the image processor that builds the main and auxiliary views, and the face geometry."""
