"""torch's DataLoader, except that dytune's own errors raised in its worker processes reach the main process with
their type and message, so that `dytune` still prints them as one line (torch re-creates a worker's exception with
its whole traceback as the message)."""
from __future__ import annotations

import pickle
import traceback
from typing import Any, Callable, Iterator, List, Optional

from torch.utils import data
from torch.utils.data import Dataset, IterableDataset, default_collate, default_convert, get_worker_info

from ..utils.errors import USER_ERRORS

__all__ = ["DataLoader", "WorkerTraceback"]


class WorkerTraceback(Exception):
    """The traceback of a user error raised in a DataLoader worker; the cause of the error the loader re-raises."""


class _Failed:
    """A user error caught in a worker, sent back in place of its sample or batch."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.trace = f"in DataLoader worker process {get_worker_info().id}:\n{trace}"


def _portable(error: BaseException) -> bool:
    """Whether `error` survives the trip to the main process (pickling) with its type and message."""
    try:
        copy = pickle.loads(pickle.dumps(error))
    except Exception:
        return False
    return type(copy) is type(error) and str(copy) == str(error)


def _guarded(fn: Callable[[Any], Any], arg: Any) -> Any:
    try:
        return fn(arg)
    except USER_ERRORS as e:
        if get_worker_info() is None or not _portable(e):
            raise
        return _Failed(e)


class _GuardedDataset(Dataset):
    """`dataset` whose user errors in a worker become `_Failed` samples (raised as usual in the main process)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: Any) -> Any:
        return _guarded(self.dataset.__getitem__, index)


class _GuardedCollate:
    """`collate_fn` that passes a batch's first `_Failed` sample on, and turns its own user errors into one."""

    def __init__(self, collate_fn: Callable[[Any], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, batch: Any) -> Any:
        items: List[Any] = batch if isinstance(batch, list) else [batch]
        failed = [item for item in items if isinstance(item, _Failed)]
        return failed[0] if failed else _guarded(self.collate_fn, batch)


class DataLoader(data.DataLoader):
    """A `torch.utils.data.DataLoader` that re-raises a user error (`dytune.utils.errors.USER_ERRORS`) from a worker as
    itself, with the worker's traceback as its cause (`WorkerTraceback`); other errors keep torch's handling.

    Args:
        dataset: A map-style data set (an iterable one is loaded as by torch).
        batch_size: Samples per batch; None loads single samples.
        num_workers: Worker processes; 0 loads in the main process, where errors are raised as they are.
        collate_fn: Merges a list of samples into a batch (torch's default when None).
        **kwargs: The rest of `torch.utils.data.DataLoader`'s arguments.
    """

    def __init__(self, dataset: Dataset, batch_size: Optional[int] = 1, *, num_workers: int = 0,
                 collate_fn: Optional[Callable[[Any], Any]] = None, **kwargs: Any) -> None:
        if num_workers > 0 and not isinstance(dataset, IterableDataset):
            default = default_convert if batch_size is None and kwargs.get("batch_sampler") is None else default_collate
            dataset, collate_fn = _GuardedDataset(dataset), _GuardedCollate(collate_fn or default)
        super().__init__(dataset, batch_size, num_workers=num_workers, collate_fn=collate_fn, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        for batch in super().__iter__():
            if isinstance(batch, _Failed):
                raise batch.error from WorkerTraceback(batch.trace)
            yield batch
