"""The reference engine: Linux v6.6 page-fault locking with ``CONFIG_PER_VMA_LOCK=n``."""

from reference.run import run

__all__ = ["run"]
