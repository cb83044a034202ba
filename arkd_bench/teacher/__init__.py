"""Where the teacher logits of a distillation batch come from: one `TeacherSource` interface
(memory, disk, top-k, online, token targets) and the one place that chooses between them."""
