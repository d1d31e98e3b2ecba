"""Command-line entry points, one small ``@hydra.main`` each."""

import datasets
import transformers

# The commands print their own progress (a training bar, a table); the libraries' per-file bars
# (saving prepared splits, loading weight shards) would bury it.
datasets.disable_progress_bars()
transformers.utils.logging.disable_progress_bar()
