"""Quality of training with each attention setting: the data (`corpus`: byte-level or token-file
text with a train/val split by file; `recall`: MQAR and passkey batches) and the training loop
that evaluates small decoder LMs on it. Imports only torch, `scfa_kernels`, the implementation
registry and `e2e`.
"""
