"""Text to stored vectors: extraction and the HDF5 embedding store (readers, models and pooling are in ``text/``)."""
