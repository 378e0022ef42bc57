"""Training: tokenizer, corpus shards, pretraining, chat SFT, evaluation, export.

The pipeline in order: `tokenizer_train` -> `corpus` -> `pretrain` (with `data`, `optim`, `ddp`)
-> `sft` -> `evaluate` -> `export`; `pipeline.run` chains them, `report` and `tracking` record a
run. Models are `chatworks.model.Llama`, the network the engine serves. See docs/training.md.
"""
