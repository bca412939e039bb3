"""The text vocabulary every text command shares: embed, probe, finetune, attention and study.

One place decides what a text run reads and how it chooses its settings, so that the two sides of
the headline (a probe on frozen features, a fine-tuned model) see the same input on equal terms:

- ``text.defaults``: the default model and the text and label columns;
- ``text.limits``: the one default ``max_length`` (tokens kept per text), capped by the model's limit;
- ``text.validation``: the one validation split (one splitter, one fraction, the run's seed) and its
  fingerprint, which every text run record states as ``validation_fingerprint``;
- ``text.datasets``: the dataset readers (AG News, local tables, the bundled demo set in ``text/data/``);
- ``text.models``: loading an encoder and its tokenizer, its shape and identity;
- ``text.pooling``: token vectors to one vector per text;
- ``text.tokens``: cutting texts to ``max_length`` tokens.

``embeddings/`` keeps what turns text into a stored artifact: extraction and the HDF5 store.
"""
