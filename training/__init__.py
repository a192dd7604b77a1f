"""emotic.training: pre-training and fine-tuning entry points, datasets, metrics and video inference."""
