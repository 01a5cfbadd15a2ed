"""`--engine torch`: LoRA training with PEFT + torch.distributed (DDP or FSDP2) launched through torchrun.

launch.py (run from TypeScript) checks the run config, starts torchrun and streams rank 0's events; loop.py is what
every rank runs. The data order, the learning-rate schedule, the loss normalisation and the checkpoint file are the
ORT engine's (sdk/src/training/), so both engines and every world size train the same adapter.
"""
