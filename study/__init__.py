"""`mlx study`: the whole study (text: probe vs fine-tune; vision: compare and sweep) in one resumable command."""
