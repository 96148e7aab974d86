"""Few-shot benchmark tasks: ``load_fewshot`` and the bundled SST-2 splits."""

from ._fewshot import FEWSHOT_SEEDS, list_tasks, load_fewshot, load_full_train

__all__ = ["FEWSHOT_SEEDS", "list_tasks", "load_fewshot", "load_full_train"]
