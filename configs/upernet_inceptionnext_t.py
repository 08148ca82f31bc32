# The short name used in the docs: UperNet, InceptionNeXt-T, ADE20K 512x512, 160k iterations at batch 16.
_base_ = ['upernet_inceptionnext-t_8xb2-160k_ade20k-512x512.py']
