"""Georeferenced imagery: streaming tiled segmentation of GeoTIFFs (rasterio)."""
