"""Datasets: VTAB-1K lists, image folders, torchvision datasets, and the offline mini-VTAB."""
