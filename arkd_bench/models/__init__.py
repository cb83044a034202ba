"""Teacher and student models and their tokenizers: built, derived, loaded from GGUF, identified
by content, and exported as Hugging Face folders."""
