"""MQAR and passkey batches: each answer checked by brute force against the sequence, loss only
at answers, power-law query distances, and impossible settings refused."""

from __future__ import annotations

import pytest
import torch

from scfa_bench.quality.recall import (
    FIRST_FILLER,
    IGNORE,
    PASSKEY_MARK,
    QUESTION_MARK,
    RecallError,
    RecallSpec,
    recall_batch,
    validate_recall,
)

MQAR = RecallSpec(task="mqar", seq_len=128, vocab=256, n_pairs=8, seed=1)
PASSKEY = RecallSpec(task="passkey", seq_len=64, vocab=40, passkey_digits=5, seed=1)


def test_mqar_answers_are_the_values_paired_with_their_keys_earlier() -> None:
    idx, targets, mask = recall_batch(MQAR, 16, step_seed=0)
    half = MQAR.vocab // 2
    assert idx.shape == targets.shape == mask.shape == (16, 128)
    assert torch.equal(mask, targets != IGNORE)
    assert (mask.sum(dim=1) == MQAR.n_pairs).all()
    for row, answers, where in zip(idx.tolist(), targets.tolist(), mask.tolist(), strict=True):
        keys, values = row[0 : 2 * MQAR.n_pairs : 2], row[1 : 2 * MQAR.n_pairs : 2]
        assert len(set(keys)) == MQAR.n_pairs and all(0 < k < half for k in keys)
        assert all(half <= v < MQAR.vocab for v in values)
        for t in (t for t, on in enumerate(where) if on):
            assert t >= 2 * MQAR.n_pairs  # queries come after the pairs
            first = row.index(row[t])  # brute force: the key's first appearance
            assert first < t and first % 2 == 0 and first < 2 * MQAR.n_pairs
            assert answers[t] == row[first + 1]
        # Every key is asked once.
        assert sorted(row[t] for t, on in enumerate(where) if on) == sorted(keys)


def test_mqar_query_distances_follow_a_decreasing_power_law() -> None:
    spec = RecallSpec(task="mqar", seq_len=512, vocab=1024, n_pairs=4, alpha=0.1, seed=0)
    _, _, mask = recall_batch(spec, 2000, step_seed=0)
    gaps = (mask.nonzero()[:, 1] - 2 * spec.n_pairs) // 2  # 0..(512 - 8) // 2 - 1 = 251
    # Per-gap frequency in widening bins (a power law's tail is thin: narrow bins there are noise).
    edges = torch.tensor([0, 1, 4, 16, 64, 252])
    counts = torch.bincount(torch.bucketize(gaps, edges, right=True) - 1, minlength=5)
    density = counts.double() / (edges[1:] - edges[:-1])
    assert (density[:-1] > density[1:]).all(), density
    assert density[0] > 20 * density[-1]  # far from uniform


def test_mqar_is_deterministic_per_step_seed() -> None:
    first, second = recall_batch(MQAR, 4, step_seed=7), recall_batch(MQAR, 4, step_seed=7)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], recall_batch(MQAR, 4, step_seed=8)[0])
    other_seed = RecallSpec(**{**MQAR.__dict__, "seed": 2})
    assert not torch.equal(first[0], recall_batch(other_seed, 4, step_seed=7)[0])


def test_passkey_answer_appears_exactly_once_before_the_question() -> None:
    idx, targets, mask = recall_batch(PASSKEY, 32, step_seed=0)
    digits = PASSKEY.passkey_digits
    question = PASSKEY.seq_len - digits
    assert torch.equal(mask, targets != IGNORE)
    assert (mask.sum(dim=1) == digits).all() and mask[:, question:].all()
    plants = set()
    for row, answers in zip(idx.tolist(), targets.tolist(), strict=True):
        key = answers[question:]
        assert all(0 <= d < 10 for d in key) and row[question] == QUESTION_MARK
        assert row[question + 1 :] == key[:-1]  # the digits read so far are teacher-forced
        context = row[:question]
        found = [i for i in range(len(context) - digits + 1) if context[i : i + digits] == key]
        assert len(found) == 1 and context[found[0] - 1] == PASSKEY_MARK
        plants.add(found[0])
        others = context[: found[0] - 1] + context[found[0] + digits :]
        assert all(FIRST_FILLER <= t < PASSKEY.vocab for t in others)
    assert len(plants) > 10  # planted at varying depths


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (RecallSpec(task="mqar", seq_len=256, vocab=256, n_pairs=4), "must exceed seq_len"),
        (RecallSpec(task="mqar", seq_len=64, vocab=128, n_pairs=17), "too large for seq_len"),
        (RecallSpec(task="mqar", seq_len=64, vocab=128, n_pairs=0), "at least 1"),
        (RecallSpec(task="passkey", seq_len=64, vocab=12), "expected more than 12"),
        (RecallSpec(task="passkey", seq_len=10, vocab=40, passkey_digits=5), "too short"),
        (RecallSpec(task="copy", seq_len=64, vocab=128), "expected one of"),  # type: ignore[arg-type]
    ],
)
def test_impossible_settings_are_refused(spec: RecallSpec, message: str) -> None:
    with pytest.raises(RecallError, match=message):
        validate_recall(spec)
    with pytest.raises(RecallError, match=message):
        recall_batch(spec, 1, step_seed=0)


def test_smallest_valid_settings_work() -> None:
    recall_batch(RecallSpec(task="mqar", seq_len=16, vocab=17, n_pairs=4), 2, step_seed=0)
    recall_batch(RecallSpec(task="passkey", seq_len=12, vocab=13, passkey_digits=5), 2, 0)
