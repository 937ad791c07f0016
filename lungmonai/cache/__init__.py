"""Crop and volume cache: written once per series, memory-mapped for every training read."""

from lungmonai.cache.build import BuildReport, CacheBuildError, build_cache, build_series_entry
from lungmonai.cache.crops import (
    CacheCorruptError,
    CacheMissError,
    CacheParams,
    CropCache,
    clip_hu,
    entry_key,
    extract_crop,
    require_grid,
)

__all__ = [
    "BuildReport",
    "CacheBuildError",
    "CacheCorruptError",
    "CacheMissError",
    "CacheParams",
    "CropCache",
    "build_cache",
    "build_series_entry",
    "clip_hu",
    "entry_key",
    "extract_crop",
    "require_grid",
]
