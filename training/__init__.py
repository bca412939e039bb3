"""The PyTorch side every torch-using package shares: device and dtype resolution (``devices``), torchrun
processes (``distributed``), and the one training loop (``loop.fit``) with its config (``config``), data
(``batches``), optimiser and schedule (``optimizer``), weight average (``weight_average``), resume
(``resume``, ``checkpoints``, ``weights``) and scoring (``predict``).

Nothing is imported here: ``training.config``, ``training.devices`` and ``training.distributed`` stay
light enough for the CLI's start-up; the rest imports torch.
"""
