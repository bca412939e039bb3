"""Defaults every text command shares (the CLI's options and the library's configs read these)."""

# The subject of the study: BERT. `minilm` (the bundled all-MiniLM-L6-v2) is the offline alternative.
DEFAULT_MODEL = "bert-base-uncased"
OFFLINE_MODEL = "minilm"
TEXT_COLUMN = "text"
LABEL_COLUMN = "label"
