"""Quality against wall-clock: train the same model with each attention setting from the same
weights on the same data, evaluating as it goes (`train`), on a corpus or a recall task."""
