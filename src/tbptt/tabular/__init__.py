"""The data door: your own sequences (CSV, Parquet, .npy/.npz) through ``tbptt train --data``.

One module per concept: ``io`` (reading files), ``panel`` (ids and time order), ``prepare``
(scaling, changes, missing values, categories: the fitted :class:`~tbptt.tabular.prepare.Spec`),
``dataset`` (a file read for a run and the defaults chosen from it), ``model`` (the network, loss
and metrics), ``job`` (streams for the Trainer), ``baselines`` (naive, seasonal naive, mean,
majority; the verdict), ``predict`` (one-step, horizon, classes), ``report`` (scores and plots),
``commands`` (the CLI's side). User guide: docs/data_files.md.
"""
