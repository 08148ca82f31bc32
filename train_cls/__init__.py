"""Classification pretraining."""
