"""The quality corpora: deterministic reading, a split by file that no other file moves, resumable
and seeded batches, token files, and clear errors for corpora that cannot be used."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from scfa_bench.quality.corpus import (
    TOKEN_BLOCK,
    Corpus,
    CorpusError,
    CorpusSpec,
    load_corpus,
)
from scfa_bench.quality.corpus_files import goes_to_val

SLICE = 1_000_000  # the "1 MB slice" quick runs use


def _folder(root: Path, names: list[str], size: int = 300) -> Path:
    """Files whose bytes say which file they are (so a split can be checked by content)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        line = f"<{name}>".encode()
        path.write_bytes((line * (size // len(line) + 1))[:size])
    return root


NAMES = [f"pkg{i % 3}/mod_{i:02d}.py" for i in range(40)]


def test_stdlib_slice_loads_deterministically() -> None:
    first = load_corpus(CorpusSpec(max_bytes=SLICE))
    second = load_corpus(CorpusSpec(max_bytes=SLICE))
    assert first.fingerprint == second.fingerprint
    assert torch.equal(first.train, second.train) and torch.equal(first.val, second.val)
    assert first.fingerprint["bytes"] == SLICE == first.train.numel() + first.val.numel()
    assert first.fingerprint["kind"] == "stdlib" and "python" in first.fingerprint
    assert first.val.numel() == round(SLICE * 0.1)
    assert first.vocab_size == 256 and first.bytes_per_token == 1.0
    assert first.train.dtype == torch.int64 and int(first.train.max()) < 256
    other = load_corpus(CorpusSpec(max_bytes=SLICE // 2))
    assert other.fingerprint["sha256"] != first.fingerprint["sha256"]


def _members(corpus: Corpus, names: list[str]) -> tuple[set[str], set[str]]:
    """Which files' bytes are in train and which in val."""
    train, val = bytes(corpus.train.to(torch.uint8)), bytes(corpus.val.to(torch.uint8))
    return {n for n in names if f"<{n}>".encode() in train}, {
        n for n in names if f"<{n}>".encode() in val
    }


def test_folder_train_and_val_are_disjoint_by_file(tmp_path: Path) -> None:
    corpus = load_corpus(CorpusSpec(kind="folder", path=str(_folder(tmp_path, NAMES))))
    in_train, in_val = _members(corpus, NAMES)
    assert in_val and in_train and not in_val & in_train
    assert in_val | in_train == set(NAMES)
    assert in_val == {n for n in NAMES if goes_to_val(n, 0.1)}
    assert corpus.fingerprint["files"] == len(NAMES)
    assert corpus.fingerprint["bytes"] == 300 * len(NAMES)
    assert corpus.fingerprint["kind"] == "folder" and "python" not in corpus.fingerprint


def test_split_does_not_move_when_files_are_added_or_created_in_another_order(
    tmp_path: Path,
) -> None:
    base = load_corpus(CorpusSpec(kind="folder", path=str(_folder(tmp_path / "a", NAMES))))
    other = _folder(tmp_path / "b", list(reversed(NAMES)))
    reordered = load_corpus(CorpusSpec(kind="folder", path=str(other)))
    assert reordered.fingerprint == {**base.fingerprint, "path": str(other)}
    assert torch.equal(reordered.train, base.train) and torch.equal(reordered.val, base.val)
    # Files added first in path order: every earlier file keeps its split.
    added = [f"aaa_{i}.py" for i in range(5)]
    grown = load_corpus(CorpusSpec(kind="folder", path=str(_folder(other, added))))
    grown_train, grown_val = _members(grown, NAMES)
    assert (grown_train, grown_val) == _members(base, NAMES)


def test_hidden_files_are_skipped(tmp_path: Path) -> None:
    root = _folder(tmp_path, [*NAMES, ".git/config", ".hidden"])
    assert load_corpus(CorpusSpec(kind="folder", path=str(root))).fingerprint["files"] == 40


def test_resumed_batches_equal_the_uninterrupted_stream(tmp_path: Path) -> None:
    corpus = load_corpus(CorpusSpec(kind="folder", path=str(_folder(tmp_path, NAMES))))
    # About 40 chunks of 256 per epoch: 12 steps of 8 cross two epoch boundaries.
    stream = list(itertools.islice(corpus.train_batches(256, 8, seed=3), 12))
    for start in (0, 1, 5, 11):
        resumed = next(corpus.train_batches(256, 8, seed=3, start_step=start))
        assert torch.equal(resumed[0], stream[start][0])
        assert torch.equal(resumed[1], stream[start][1])
    assert corpus.epochs_at(12, 256, 8) > 2  # the stream above crossed epochs


def test_batches_are_next_token_windows_and_depend_on_the_seed(tmp_path: Path) -> None:
    corpus = load_corpus(CorpusSpec(kind="folder", path=str(_folder(tmp_path, NAMES))))
    idx, targets = next(corpus.train_batches(64, 4, seed=0))
    assert idx.shape == targets.shape == (4, 64) and idx.dtype == torch.int64
    assert torch.equal(idx[:, 1:], targets[:, :-1])
    other, _ = next(corpus.train_batches(64, 4, seed=1))
    assert not torch.equal(idx, other)
    again, _ = next(corpus.train_batches(64, 4, seed=0))
    assert torch.equal(idx, again)


def test_an_epoch_visits_every_chunk_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(30):  # random bytes: every window occurs once, so its start can be found
        (tmp_path / f"f{i}").write_bytes(rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
    corpus = load_corpus(CorpusSpec(kind="folder", path=str(tmp_path)))
    seq_len = 100
    n_chunks = (corpus.train.numel() - seq_len) // seq_len
    starts = []
    text = corpus.train.unfold(0, seq_len, 1)
    for idx, _ in itertools.islice(corpus.train_batches(seq_len, 1, seed=0), n_chunks):
        starts.append(int((text == idx[0]).all(dim=1).nonzero()[0]))
    offsets = {s % seq_len for s in starts}
    assert len(offsets) == 1  # one shift per epoch
    assert sorted(s // seq_len for s in starts) == list(range(n_chunks))
    # Later epochs are shifted too: not the same windows again.
    later = list(itertools.islice(corpus.train_batches(seq_len, n_chunks, seed=0), 4))
    shifts = {int((text == idx[0]).all(dim=1).nonzero()[0]) % seq_len for idx, _ in later}
    assert len(shifts | offsets) > 1


def test_val_batches_are_fixed(tmp_path: Path) -> None:
    corpus = load_corpus(
        CorpusSpec(kind="folder", path=str(_folder(tmp_path, NAMES)), val_fraction=0.3)
    )
    first, second = corpus.val_batches(32, 4, 3), corpus.val_batches(32, 4, 3)
    assert len(first) == 3
    for (a, b), (c, d) in zip(first, second, strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)
        assert torch.equal(a[:, 1:], b[:, :-1])


def test_token_file_pair(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rng.integers(0, 1000, 5000, dtype=np.uint16).tofile(tmp_path / "train.bin")
    rng.integers(0, 1000, 700, dtype=np.uint16).tofile(tmp_path / "val.bin")
    corpus = load_corpus(CorpusSpec(kind="tokens", path=str(tmp_path), vocab=1000))
    assert corpus.train.numel() == 5000 and corpus.val.numel() == 700
    assert torch.equal(
        corpus.val, torch.from_numpy(np.fromfile(tmp_path / "val.bin", "<u2")).long()
    )
    assert corpus.bytes_per_token is None and corpus.vocab_size == 1000
    assert corpus.fingerprint["files"] == 2 and corpus.fingerprint["bytes"] == 2 * 5700
    by_file = load_corpus(CorpusSpec(kind="tokens", path=str(tmp_path / "train.bin"), vocab=1000))
    assert by_file.fingerprint["sha256"] == corpus.fingerprint["sha256"]


def test_single_token_file_is_split_by_hashed_blocks(tmp_path: Path) -> None:
    tokens = np.arange(40 * TOKEN_BLOCK, dtype=np.int64) % 50_000
    tokens.astype(np.uint16).tofile(tmp_path / "all.bin")
    corpus = load_corpus(CorpusSpec(kind="tokens", path=str(tmp_path / "all.bin"), vocab=50_000))
    val_blocks = [i for i in range(40) if goes_to_val(f"block {i}", 0.1)]
    assert corpus.val.numel() == len(val_blocks) * TOKEN_BLOCK > 0
    assert int(corpus.val[0]) == val_blocks[0] * TOKEN_BLOCK % 50_000


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (CorpusSpec(kind="folder", path="/nonexistent/corpus"), "not found"),
        (CorpusSpec(kind="tokens", path="/nonexistent/t.bin", vocab=10), "not found"),
    ],
)
def test_missing_corpus_is_a_clear_error(spec: CorpusSpec, message: str) -> None:
    with pytest.raises(CorpusError, match=message):
        load_corpus(spec)


def test_too_small_corpora_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="too small"):
        load_corpus(CorpusSpec(kind="folder", path=str(_folder(tmp_path / "one", ["a.py"]))))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no files"):
        load_corpus(CorpusSpec(kind="folder", path=str(tmp_path / "empty")))
    corpus = load_corpus(CorpusSpec(kind="folder", path=str(_folder(tmp_path / "ok", NAMES))))
    with pytest.raises(CorpusError, match=r"val split has .* too small for seq_len"):
        corpus.val_batches(100_000, 1, 1)
    with pytest.raises(CorpusError, match=r"train split has .* too small for seq_len"):
        next(corpus.train_batches(100_000, 1, 0))


def test_bad_token_files_and_settings_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "odd.bin").write_bytes(b"\x01\x00\x02")
    with pytest.raises(CorpusError, match=r"odd\.bin.*not a whole number"):
        load_corpus(CorpusSpec(kind="tokens", path=str(tmp_path / "odd.bin"), vocab=10))
    np.full(TOKEN_BLOCK * 40, 300, dtype=np.uint16).tofile(tmp_path / "big.bin")
    with pytest.raises(CorpusError, match="token id 300 >= vocab 256"):
        load_corpus(CorpusSpec(kind="tokens", path=str(tmp_path / "big.bin"), vocab=256))
    with pytest.raises(CorpusError, match="byte-level"):
        CorpusSpec(kind="folder", path="x", vocab=50_000)
    with pytest.raises(CorpusError, match="takes no path"):
        CorpusSpec(kind="stdlib", path="x")
    with pytest.raises(CorpusError, match="val_fraction"):
        CorpusSpec(val_fraction=1.0)
