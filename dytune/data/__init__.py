"""Data readers the tasks and the mini benchmarks share: `<path> <label>` list files and image loading (`lists`),
and raw sources (`sources`: Fashion-MNIST IDX files, scikit-learn digits, matplotlib fonts)."""
