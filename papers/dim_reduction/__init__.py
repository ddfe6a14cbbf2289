"""Fournier & Aloise (2019): PCA vs Isomap vs deep autoencoders, scored with k-NN."""
