"""The offline mini benchmarks and the mini backbone's pre-training: the mini-VTAB, mini-video and
mini-segmentation generators, their shared canvases and build protocol, `dytune pretrain` and `dytune demo`."""
