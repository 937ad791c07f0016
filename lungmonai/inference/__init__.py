"""Mixed precision around the forward pass, shared by every stage's training, inference and the pipeline."""
