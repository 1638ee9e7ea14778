"""Video features: decoding, preprocessing, backbones, the Zarr store, extraction and import."""
