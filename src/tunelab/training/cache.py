"""The frozen-activation cache: what is frozen is computed once, on disk, and reused.

When a Plan leaves the embeddings and blocks `[0, k)` frozen, their output for an example never
changes, so it is computed once (eval mode, no grad) and every epoch, every evaluation and every later
run that needs the same thing reads it back instead. Gradual unfreezing lowers k epoch by epoch: one
capture pass stores the input of every block k the schedule will need.

Keys (training/cache_keys.py). An entry is identified by a hash of: the split's token ids (the data, the
tokenizer and `max_length` all end up there; for an image split, its pixel tensor), the tokenizer settings,
the prefix weights and architecture config
(embeddings + blocks `[0, k)`; not the head, so strategies with different heads share entries), k,
the storage dtype and the compute precision. Change any part and a new entry is built; nothing is ever
served from a stale entry.

Storage. One flat file per entry, `(sum of lengths, H)` rows in fp32 or bf16, example i at rows
`[offset_i, offset_i + len_i)` with no padding, so the attention mask is implied by the lengths. An image
split's examples all have the same shape (a convolutional block's `(C, H, W)` input): one row of C*H*W each,
the shape in the entry's meta.json.
Batches are read with positioned reads straight into the padded batch tensor: data larger than RAM
works, the OS page cache keeps hot entries in memory, and the process's own RSS stays at one batch
(a memory map would count every touched page as ours). Entries are built in a temporary folder and
renamed into place, so a crash never leaves a half-written entry under a final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Optional, Protocol

import numpy as np
import torch

from tunelab.atomic import atomic_dir
from tunelab.data.encoding import EncodedSplit, iterate_batches
from tunelab.errors import ModelError
from tunelab.models.prefix import capture_block_inputs, embedding_module
from tunelab.models.task_model import TaskModel
from tunelab.paths import activation_cache_dir
from tunelab.training.cache_keys import FORMAT_VERSION, CacheKey, example_rows, hash_split_inputs, prefix_hashes

if TYPE_CHECKING:
    from tunelab.config.schema import TrainConfig

__all__ = ["ActivationCache", "CacheStats", "activation_cache_for", "CacheUnsupported"]

StoreDtype = Literal["fp32", "bf16"]
_TORCH = {"fp32": torch.float32, "bf16": torch.bfloat16}
_NUMPY = {"fp32": np.float32, "bf16": np.int16}  # numpy has no bf16: its bits travel as int16

@dataclass
class CacheStats:
    computed_examples: int = 0   # examples run through a frozen prefix to fill entries
    built_entries: int = 0
    reused_entries: int = 0
    bytes_written: int = 0
    build_seconds: float = 0.0
    served_batches: int = 0      # batches that read their frozen prefix from an entry
    build_processes: int = 1     # processes of this machine that built entries together (torchrun)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "build_seconds": round(self.build_seconds, 3)}


# -- storage ----------------------------------------------------------------------------------------
class CachedPrefixStore:
    """One entry: hidden states entering block k for every example of one split."""

    def __init__(self, path: Path, lengths: np.ndarray, hidden_size: int, dtype: StoreDtype,
                 shape: Optional[tuple[int, ...]] = None) -> None:
        self.path, self.lengths, self.hidden_size, self.dtype = path, lengths, hidden_size, dtype
        self.shape = shape  # an image entry's per-example shape `(C, H, W)`, stored as one row
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._rows: Optional[np.ndarray] = None  # (rows, H), mapped on the first read

    def read(self, indices: torch.Tensor, width: int, out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """`(B, width, H)` hidden states of examples `indices`, zero after each example's length (an image
        entry: `(B, C, H, W)`, width 1). Copied from a memory map (the page cache), not read with a call per
        example: 0.46 against 0.78 ms a batch of 16."""
        if self._rows is None:
            self._rows = np.memmap(self.path / "hidden.bin", dtype=_NUMPY[self.dtype], mode="r",
                                   shape=(int(self.offsets[-1]), self.hidden_size))
        rows = np.empty((len(indices), width, self.hidden_size), dtype=_NUMPY[self.dtype])
        for j, i in enumerate(indices.tolist()):
            n, start = int(self.lengths[i]), int(self.offsets[i])
            rows[j, :n] = self._rows[start:start + n]
            rows[j, n:] = 0
        out = torch.from_numpy(rows).view(_TORCH[self.dtype]).to(out_dtype)
        return out if self.shape is None else out.view(len(indices), *self.shape)

    def close(self) -> None:
        self._rows = None  # the map closes with its last reference

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class _Writer:
    """Fills one entry's temporary folder (see `_entry_folder`, which renames it into place)."""

    def __init__(self, tmp: Path, key: CacheKey, lengths: np.ndarray, dtype: StoreDtype) -> None:
        self.tmp, self.key, self.lengths, self.dtype = tmp, key, lengths, dtype
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.fd: Optional[int] = os.open(self.tmp / "hidden.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        self.hidden_size = 0
        self.shape: Optional[tuple[int, ...]] = None
        self.written = 0

    def write(self, hidden: torch.Tensor, indices: torch.Tensor) -> None:
        """`hidden` `(B, T, H)` for split positions `indices`; only each example's real tokens are kept.
        Any other shape (an image block's `(B, C, H, W)`) is one row an example, its shape kept for reading."""
        if hidden.dim() != 3:
            self.shape = tuple(int(d) for d in hidden.shape[1:])
            hidden = hidden.reshape(hidden.shape[0], 1, -1)
        self.hidden_size = int(hidden.shape[-1])
        data = hidden.detach().to("cpu", _TORCH[self.dtype])
        data = (data.view(torch.int16) if self.dtype == "bf16" else data).numpy()
        row_bytes = self.hidden_size * data.itemsize
        for j, i in enumerate(indices.tolist()):
            chunk = np.ascontiguousarray(data[j, :int(self.lengths[i])])
            os.pwrite(self.fd, chunk.tobytes(), int(self.offsets[i]) * row_bytes)
            self.written += chunk.nbytes

    def finish(self) -> None:
        """Close the data file and write `meta.json`, whose presence is what makes an entry usable."""
        fd, self.fd = self.fd, None
        os.close(fd)
        meta = {"version": FORMAT_VERSION, "key": asdict(self.key), "examples": len(self.lengths),
                "rows": int(self.offsets[-1]), "hidden_size": self.hidden_size, "dtype": self.dtype,
                "shape": None if self.shape is None else list(self.shape)}
        (self.tmp / "meta.json").write_text(json.dumps(meta, indent=1))

    def release(self) -> None:
        """Close the data file if `finish` did not (the build failed)."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


@contextlib.contextmanager
def _entry_folder(final: Path) -> Iterator[Path]:
    """`atomic_dir` for one entry. When another process committed the same entry first, theirs is kept: the
    same key means the same data. Not fsync'd (it never was): an entry is recomputable, and syncing its
    hundreds of MB would slow every build."""
    built = False
    try:
        with atomic_dir(final, replace=False, fsync=False) as tmp:
            yield tmp
            built = True
    except FileExistsError:
        if not built:
            raise


def activation_cache_for(train: "TrainConfig", tokenizer: Any, max_length: int) -> Optional["ActivationCache"]:
    """The cache a run's config asks for (None with `train.cache: off`)."""
    if train.cache == "off":
        return None
    if getattr(tokenizer, "image_size", None) is not None:  # an image preprocessor: its resizing and
        settings = f"{type(tokenizer).__name__}|image_size={tokenizer.image_size}"  # normalising are in the pixels
    else:
        settings = (f"{type(tokenizer).__name__}|vocab={len(tokenizer)}|max_length={max_length}"
                    f"|pad={tokenizer.pad_token_id}")
    root = Path(train.cache_dir).expanduser() if train.cache_dir else activation_cache_dir()
    return ActivationCache(root, dtype=train.cache_dtype, tokenizer_settings=settings, compute=train.precision)


# -- the cache --------------------------------------------------------------------------------------
class Shard(Protocol):
    """The processes of one machine building entries together (training/distributed.py's Distributed)."""

    local_rank: int
    local_world_size: int

    def barrier(self) -> None: ...

    def from_machine_leader(self, item: Any) -> Any: ...


class CacheUnsupported(ModelError):
    """This model cannot be served from block k generically; the trainer recomputes instead."""


class ActivationCache:
    """Entries under `root`, shared by every run, trial and strategy that uses the same `root`.

    `tokenizer_settings` and `compute` are key parts the cache cannot see in the tensors it is given:
    the caller describes the tokenizer (class, vocabulary, max_length) and the precision of the prefix.
    """

    def __init__(self, root: Path, *, dtype: StoreDtype = "fp32", tokenizer_settings: str = "",
                 compute: str = "fp32") -> None:
        self.root, self.dtype, self.tokenizer_settings, self.compute = Path(root), dtype, tokenizer_settings, compute
        self.stats = CacheStats()
        self._token_hashes: dict[int, tuple[EncodedSplit, str]] = {}

    def key(self, split: EncodedSplit, start_block: int, model_hash: str) -> CacheKey:
        return CacheKey(tokens=self._tokens_of(split), tokenizer=self.tokenizer_settings, model=model_hash,
                        start_block=start_block, dtype=self.dtype, compute=self.compute)

    def ensure(self, model: TaskModel, split: EncodedSplit, starts: list[int], *, device: torch.device,
               batch_size: int, pad_id: int, autocast: Optional[contextlib.AbstractContextManager] = None,
               shard: Optional[Shard] = None) -> dict[int, CachedPrefixStore]:
        """Entries for `split` at every k in `starts`, building the missing ones in one pass; with `shard`
        (torchrun), the processes of one machine build them together, each every n-th batch.

        Raises CacheUnsupported when this model cannot be run from block k (checked numerically)."""
        hashes = prefix_hashes(model, starts)
        lengths = example_rows(split)
        keys = {k: self.key(split, k, hashes[k]) for k in starts}
        missing = {k: key for k, key in keys.items() if not (self.root / key.digest() / "meta.json").is_file()}
        if shard is not None:  # what the machine's first process found missing, so all build the same
            missing = shard.from_machine_leader(missing)
        self.stats.reused_entries += len(keys) - len(missing)
        if missing:
            self._build(model, split, missing, lengths, device, batch_size, pad_id, autocast, shard)
        return {k: self._open(self.root / key.digest(), lengths) for k, key in keys.items()}

    def summary(self) -> str:
        return " ".join(self.summary_phrases())

    def summary_phrases(self) -> list[str]:
        """The summary in the pieces a narrow terminal may break it between (never inside one)."""
        s = self.stats
        return [f"activation cache ({self.dtype}, {self.root}):",
                f"{s.built_entries} entries built from {s.computed_examples:,} examples in {s.build_seconds:.1f} s "
                f"({s.bytes_written / 2**20:,.0f} MiB{self._shared_build()}),", f"{s.reused_entries} reused"]

    def _shared_build(self) -> str:
        n = self.stats.build_processes
        return f"; this process's share, {n} processes built them together" if n > 1 else ""

    # -- internals ----------------------------------------------------------------------------------
    def _tokens_of(self, split: EncodedSplit) -> str:
        known = self._token_hashes.get(id(split))
        if known is None or known[0] is not split:
            known = (split, hash_split_inputs(split))  # the split is held so its id is never reused
            self._token_hashes[id(split)] = known
        return known[1]

    def _open(self, path: Path, lengths: np.ndarray) -> CachedPrefixStore:
        meta = json.loads((path / "meta.json").read_text())
        if meta["examples"] != len(lengths) or meta["rows"] != int(lengths.sum()):
            raise ModelError(f"activation cache entry {path} does not match its key; delete the folder")
        shape = meta.get("shape")  # image entries only
        return CachedPrefixStore(path, lengths, meta["hidden_size"], meta["dtype"],
                                 None if shape is None else tuple(shape))

    def _writers(self, entries: contextlib.ExitStack, missing: dict[int, CacheKey], lengths: np.ndarray,
                 shard: Optional[Shard]) -> dict[int, _Writer]:
        """One writer per missing entry. Sharded, the machine's first process makes the temporary folders and
        the others write their rows into the same files (at each example's own offset)."""
        if shard is None or shard.local_rank == 0:
            writers = {k: self._writer(entries, key, lengths) for k, key in missing.items()}
            if shard is not None:
                shard.from_machine_leader({k: w.tmp for k, w in writers.items()})
            return writers
        folders = shard.from_machine_leader(None)
        writers = {k: _Writer(folders[k], key, lengths, self.dtype) for k, key in missing.items()}
        for writer in writers.values():
            entries.callback(writer.release)
        return writers

    def _finish(self, writers: dict[int, _Writer], shard: Optional[Shard]) -> None:
        """Close the files; the leader writes the meta files once every process's rows are in."""
        if shard is not None:
            shard.barrier()  # pwrite is unbuffered: the machine's page cache holds every process's rows
        for writer in writers.values():
            self.stats.bytes_written += writer.written
            if shard is None or shard.local_rank == 0:
                writer.finish()
            else:
                writer.release()

    def _writer(self, entries: contextlib.ExitStack, key: CacheKey, lengths: np.ndarray) -> _Writer:
        """A writer for entry `key`, whose folder `entries` renames into place on exit (or removes)."""
        writer = _Writer(entries.enter_context(_entry_folder(self.root / key.digest())), key, lengths, self.dtype)
        entries.callback(writer.release)
        return writer

    def _build(self, model: TaskModel, split: EncodedSplit, missing: dict[int, CacheKey], lengths: np.ndarray,
               device: torch.device, batch_size: int, pad_id: int,
               autocast: Optional[contextlib.AbstractContextManager], shard: Optional[Shard] = None) -> None:
        started = time.perf_counter()
        starts = sorted(missing)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                check_served_forward(model, split, starts, device, pad_id)
                with contextlib.ExitStack() as entries:  # on an exception every entry's folder is removed
                    writers = self._writers(entries, missing, lengths, shard)
                    part, parts = (shard.local_rank, shard.local_world_size) if shard else (0, 1)
                    self.stats.build_processes = parts
                    for number, batch in enumerate(iterate_batches(split, batch_size, pad_id=pad_id, shuffle=False)):
                        if number % parts != part:
                            continue
                        moved = batch.to(device)
                        with autocast or contextlib.nullcontext():
                            captured = capture_block_inputs(model, starts, **moved.inputs)
                        for k, hidden in captured.items():
                            writers[k].write(hidden, batch.indices)
                        self.stats.computed_examples += len(batch)
                    self._finish(writers, shard)
                if shard is not None:
                    shard.barrier()  # the leader has renamed the entries into place
        finally:
            model.train(was_training)
        self.stats.built_entries += len(missing)
        self.stats.build_seconds += time.perf_counter() - started


def check_served_forward(model: TaskModel, split: EncodedSplit, starts: list[int], device: torch.device,
                         pad_id: int) -> None:
    """Serving from block k must give the model's own logits (fp32, eval): checked on a few examples,
    so an architecture whose embeddings do not feed block 0 directly falls back to recomputing."""
    try:
        embedding_module(model)
    except ModelError as err:
        raise CacheUnsupported(str(err)) from None
    batch = next(iterate_batches(split, 4, pad_id=pad_id, shuffle=False)).to(device)
    head = {} if batch.head is None else {"head": batch.head}  # a multi-task split's: its task's head
    reference = model(**batch.inputs, **head).float()
    captured = capture_block_inputs(model, starts, **batch.inputs)
    mask = batch.attention_mask  # (B, T): cached rows stop at each example's length (images: no mask)
    for k, hidden in captured.items():
        stored = hidden if mask is None else hidden * mask.unsqueeze(-1).to(hidden.dtype)
        served = model(**batch.inputs, prefix_hidden=stored, start_block=k, **head).float()
        if not torch.allclose(served, reference, atol=1e-4, rtol=1e-3):
            gap = float((served - reference).abs().max())
            raise CacheUnsupported(f"running this model from block {k} changes its logits by {gap:.2g}")
