"""Side features of the training loop (probes, trial updates, dev evaluation, logging, online
data) as hooks told at the loop's named events."""
