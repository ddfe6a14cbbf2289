"""Dataset readers: IDX (MNIST, Fashion-MNIST), CIFAR-10 python batches, scikit-learn's digits."""

from shared.data.errors import CorruptDataError, DataError, DatasetNotFoundError

__all__ = ["CorruptDataError", "DataError", "DatasetNotFoundError"]
