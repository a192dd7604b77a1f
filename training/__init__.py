"""emotic.training: pre-training and fine-tuning entry points, readers, transforms, the trainer, the run summary,
metrics and the generated dataset."""
