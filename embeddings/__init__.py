"""Text to vectors: datasets, models, pooling, extraction and the HDF5 embedding store."""
