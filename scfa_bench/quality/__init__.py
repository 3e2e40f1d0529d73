"""Quality of training with each attention setting: the data (`corpus`: byte-level or token-file
text with a train/val split by file; `recall`: MQAR and passkey batches) and the training loop
(`train`) that trains the same small decoder LM with each setting from the same weights on the
same data, evaluating as it goes. Imports only torch, `scfa_kernels`, the implementation
registry and `e2e`.
"""
