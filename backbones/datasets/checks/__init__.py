"""Pre-flight data checks, by concern: ``common`` (walking a config's datasets, folders, head classes),
``images`` (image file headers, EXIF, 16-bit PNGs), ``segmentation`` (ADE layout), ``coco`` (COCO json).
Command line: ``python tools/misc/check_data.py CONFIG``."""
