"""Training: the distillation loop and its hooks (probes, dev evaluation, logging, trackers,
trial updates), SFT and optimisers."""
