"""Attention weights of BERT-family encoders: one text as PNGs and an HTML viewer (show), per-head
statistics over a data set (stats), rollout, and the divergence between two models (diff)."""
