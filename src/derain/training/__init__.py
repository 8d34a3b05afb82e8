"""Training: the LightningModule, its loss and learning-rate schedules, callbacks, checkpoints and the train/eval tasks."""
