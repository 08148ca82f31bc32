"""Data: ``transforms.py`` (pipeline steps that name the bad file), ``checks/`` (pre-flight checks of image files,
ADE-layout segmentation sets and COCO files), ``synthetic/`` (generated ADE / COCO / ImageNet sets in the
real layouts)."""
