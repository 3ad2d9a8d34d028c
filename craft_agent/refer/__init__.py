"""The bundled baseline for Multi-temporal Referring Segmentation: a model, its training and its predictions."""
