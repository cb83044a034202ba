"""Training: tokenizers and models built, loaded or derived and cached, SFT, the distillation
loop with its teacher outputs and trial updates, optimisers, trackers and student export."""
