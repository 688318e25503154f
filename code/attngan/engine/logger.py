"""Readable console/file logs plus a machine-readable JSONL of every logged value."""
from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Mapping

from ..atomic import atomic_write_bytes

log = logging.getLogger('attngan')


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """Log to stderr (and ``log_file``) with timestamps; idempotent."""
    log.setLevel(level)
    fmt = logging.Formatter('%(asctime)s %(levelname)s %(message)s', '%H:%M:%S')
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in log.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(fmt)
        log.addHandler(h)
    if log_file is not None:
        for h in list(log.handlers):
            if isinstance(h, logging.FileHandler):
                log.removeHandler(h)
                h.close()
        fh = logging.FileHandler(log_file, encoding='utf-8')
        fh.setFormatter(fmt)
        log.addHandler(fh)
    return log


def close_file_logging() -> None:
    """Detach and close the log file handler (before its folder is removed)."""
    for h in list(log.handlers):
        if isinstance(h, logging.FileHandler):
            log.removeHandler(h)
            h.close()


def record_position(record: Mapping[str, Any]) -> int | None:
    """The training position (iterations done) a metrics record was logged at: ``step`` (DAMSM) or
    ``iteration`` (GAN)."""
    value = record.get('step', record.get('iteration'))
    return value if isinstance(value, int) else None


class MetricsWriter:
    """Appends one JSON object per call to ``metrics.jsonl``; optionally mirrors scalars to TensorBoard.

    resume_step: this run continues from a checkpoint taken after that many iterations. Records logged
    after it (by the run that stopped, between its checkpoint and a crash) are dropped from the file first,
    since the resumed run logs them again.
    """

    def __init__(self, path: str | Path, tensorboard_dir: str | Path | None = None,
                 resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            self._truncate(resume_step)
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.warning('TRAIN.TENSORBOARD is set but the tensorboard package is not installed '
                            '(pip install tensorboard); writing metrics.jsonl only')
            else:
                self._tb = SummaryWriter(str(tensorboard_dir))

    def _truncate(self, resume_step: int) -> None:
        lines = self.path.read_text(encoding='utf-8').splitlines()
        kept = []
        for line in lines:
            if not line.strip():
                continue
            try:
                pos = record_position(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash mid-write
                continue
            if pos is None or pos <= resume_step:
                kept.append(line)
        if len(kept) != len(lines):
            atomic_write_bytes(self.path, ''.join(k + '\n' for k in kept).encode('utf-8'))
            log.info('metrics.jsonl: dropped %d record(s) logged after the checkpoint (iteration %d)',
                     len(lines) - len(kept), resume_step)

    def write(self, record: Mapping[str, Any], step: int | None = None) -> None:
        clean = {k: (float(v) if hasattr(v, '__float__') and not isinstance(v, (int, str)) else v)
                 for k, v in record.items()}
        with open(self.path, 'a', encoding='utf-8') as f:
            f.write(json.dumps(clean) + '\n')
        if self._tb is not None and step is not None:
            for k, v in clean.items():
                if isinstance(v, float) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict]:
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]
