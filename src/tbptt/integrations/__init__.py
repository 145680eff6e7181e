"""Integrations: data-parallel training with ``torch.distributed`` and PyTorch Lightning 2.x.

- :mod:`tbptt.integrations.distributed`: ``DistributedEngine``, ``all_reduce_gradients``,
  ``broadcast_parameters``, ``init_distributed``, ``save_checkpoint``/``load_checkpoint``
  (torchrun; NCCL on GPUs, gloo on CPU). Needs only torch.
- :mod:`tbptt.integrations.lightning`: ``TBPTTModule``, a LightningModule base class that gives
  TBPTT(k1, k2) over stateful streams back to ``lightning.Trainer`` (needs the ``lightning``
  extra: ``pip install tbptt[lightning]``).

See ``docs/distributed.md``. The submodules are imported on demand, so importing this package
does not import Lightning.
"""
