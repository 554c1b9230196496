"""The core of DyT, which imports nothing above the backbone protocol and the utilities: the adapter and dispatcher
settings (`config`), the dynamic modules (`modules/`), conversion and execution modes (`convert`), exact MACs
(`flops`) and the per-batch cost of inference (`measure`), threshold calibration (`calibrate`) and fixed capacities
(`capacity`), the objective (`loss`), adapter checkpoints (`checkpoint`) and token merging (`tome/`)."""
