"""Fine-tuning a Hugging Face encoder end to end on a text classification set (``mlx finetune``)."""
