"""Kernels forked from a warm parent: the zygote process and the kernel provisioner that
asks it for a kernel (pipelines/kernels/forked.py)."""
